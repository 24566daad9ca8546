"""Several bot processes on one PostgreSQL database, as a district runs them behind one webhook address.

Two real ``python main.py run`` processes in webhook mode share one PostgreSQL schema, one data folder
and the fake Bot API; the test plays the load balancer and POSTs each update to the process of its
choice. What must hold:

* **a conversation is one conversation**, whichever process gets its updates: a step handled by one
  process is seen by the other at the next step; two updates of the same chat handled at the same
  moment by the two processes (an album of photos, lines typed in a burst, a double tap on “send”)
  run one after the other, each on the state the other committed: none is lost, none is applied
  twice, and no reply answers a state that had already moved on (the conversation's advisory lock,
  ``Dispatcher._mark``);
* **notices go out once**: with a fan-out under way in one process and a person's held notices
  released by the other, every notice is sent exactly once (``bot.engine.fanout``);
* the database lock is keyed by the chat, and an event waits for it before it reads the conversation.

SQLite serves one process per database file: these tests need ``TEST_DATABASE_URL``."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import re
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession, ClientTimeout
from sqlalchemy import text
from sqlmodel import Session, col, select

from bot.config import Settings
from bot.core import Ctx, Inbound, Registry, Reply, Services, load_registry
from bot.core.dispatcher import Dispatcher
from bot.engine.reminders import queue_notice
from bot.flows.incidents.models import Incident, IncidentAttachment
from bot.i18n import Translator
from storage.db import Database
from storage.models import Conversation, Notice, NoticeStatus, RuleSetting, School, utcnow
from storage.people import link_identity
from tests.crash_harness import ROOT, START_TIMEOUT, BotProcess, GatedTelegram, fake  # noqa: F401 (fixture)
from tests.fakes.telegram_server import ChatMessage
from tests.helpers import make_person, make_school

SECRET = "several-processes-secret-0123456789"
PUBLIC_URL = "https://truong.example/telegram/webhook"  # the address the TLS proxy serves
PRINCIPAL = 900
TEACHERS = [1001 + i for i in range(6)]
PHOTOS, LINES = 3, 2  # per teacher, sent at once
NOTICE_PEOPLE, NOTICE_BASE = 80, 30_000
HELD_UID = 29_999
APOLOGY = "Xin lỗi, hệ thống vừa gặp sự cố"


@pytest.fixture
def pg(db: Database) -> Database:
    if db.is_sqlite:
        pytest.skip("SQLite serves one process per database file; several processes need PostgreSQL")
    return db


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class WebhookBot(BotProcess):
    """``main.py run`` in webhook mode on a port of its own (behind the test's "load balancer")."""

    def __init__(self, fake: GatedTelegram, name: str, *, database_url: str, data_dir: Path, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.port = _free_port()
        super().__init__(fake, database_url=database_url, data_dir=data_dir, workdir=workdir,
                         extra_env={"TELEGRAM_WEBHOOK_URL": PUBLIC_URL, "TELEGRAM_WEBHOOK_SECRET": SECRET,
                                    "WEB_PORT": str(self.port), "QUIET_HOURS": "off"})
        self.http: ClientSession | None = None
        self.statuses: list[int] = []

    async def start(self) -> None:
        assert not self.alive(), "the bot is already running"
        log = self.log_path.open("ab")
        log.write(f"\n===== start {self.starts + 1} =====\n".encode())
        log.flush()
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "run"], cwd=self.workdir,
                                     env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.starts += 1
        await self.wait(lambda: "bot started with channels" in self.log_tail(400), START_TIMEOUT,
                        f"process {self.name} to start")
        self.http = ClientSession(timeout=ClientTimeout(total=60))

    def leads(self) -> bool:
        return "this process now runs the scheduler" in self.log_tail(2000)

    async def post(self, update: dict[str, Any]) -> int:
        """Deliver ``update`` to this process as Telegram would (it answers once the update is handled)."""
        assert self.http is not None
        async with self.http.post(f"http://127.0.0.1:{self.port}/telegram/webhook", data=json.dumps(update),
                                  headers={"Content-Type": "application/json",
                                           "X-Telegram-Bot-Api-Secret-Token": SECRET}) as resp:
            self.statuses.append(resp.status)
            return resp.status

    async def close(self) -> None:
        if self.http is not None:
            await self.http.close()
            self.http = None
        self.stop()


@pytest.fixture
async def bots(fake: GatedTelegram, pg: Database, db_url: str, settings: Settings,
               tmp_path: Path) -> AsyncIterator[list[WebhookBot]]:
    """Two processes (not started) on the test schema and one shared data folder; stopped at the end."""
    made = [WebhookBot(fake, name, database_url=db_url, data_dir=settings.data_dir, workdir=tmp_path / name)
            for name in ("A", "B")]
    try:
        yield made
    finally:
        for b in made:
            await b.close()


def _seed(s: Session) -> dict[str, Any]:
    """A school with the principal and the teachers linked to Telegram, every reminder rule off."""
    school = make_school(s)
    principal = make_person(s, school, "Trần Văn Đức", ["principal"])
    link_identity(s, person=principal, channel="telegram", external_id=str(PRINCIPAL), chat_id=str(PRINCIPAL))
    teachers = {}
    for uid in TEACHERS:
        p = make_person(s, school, f"Giáo viên {uid}", ["teacher"])
        link_identity(s, person=p, channel="telegram", external_id=str(uid), chat_id=str(uid))
        teachers[uid] = p.id
    for key in load_registry().rules:
        s.add(RuleSetting(school_id=school.id or 0, rule=key, enabled=False))
    s.flush()
    return {"school": school.id, "principal": principal.id, "teachers": teachers}


def _buttons(m: ChatMessage) -> list[str]:
    return [str(b.get("callback_data", "")) for row in m.inline_buttons for b in row]


def _photo(uid: int, i: int) -> bytes:
    return b"\xff\xd8\xff\xe0" + f" photo {i} of the broken fence, from {uid} ".encode() * 20


# -- one conversation, two processes -------------------------------------------------------------------
async def test_two_processes_serve_one_conversation_step_by_step(bots: list[WebhookBot], fake: GatedTelegram,
                                                                 pg: Database) -> None:
    ids = pg.run_sync(_seed)
    for b in bots:
        await b.start()
    teachers: dict[int, int] = ids["teachers"]

    async def report(n: int, uid: int) -> None:
        turn = iter(range(n, 10_000))

        def next_bot() -> WebhookBot:
            return bots[next(turn) % 2]  # every update of the chat to the other process than the last

        def since(after: int) -> list[ChatMessage]:
            return [x for x in fake.bot_messages(uid) if x.message_id > after]

        async def step(update: dict[str, Any], want: str) -> ChatMessage:
            after = fake.last_message_id(uid)
            bot = next_bot()
            assert await bot.post(update) == 200
            # (answered once handled, or after 20 s on a very busy machine: then the reply follows)
            return (await bot.wait(lambda: since(after), 60, f"the reply to {want} in chat {uid}"))[-1]  # type: ignore[no-any-return]

        # A user waits for each question before answering it: the steps alternate between processes.
        m = await step(fake.command_update(uid, "suco"), "/suco")
        assert "c:security" in _buttons(m), m.text
        m = await step(fake.callback_update(uid, "c:security", message_id=m.message_id), "the type")
        assert "c:urgent" in _buttons(m), m.text
        m = await step(fake.callback_update(uid, "c:urgent", message_id=m.message_id), "the urgency")
        m = await step(fake.text_update(uid, "Hàng rào phía sau"), "the place")
        m = await step(fake.text_update(uid, f"Hàng rào bị đổ ({uid})"), "the description")
        summary = m
        assert "c:send" in _buttons(summary), summary.text
        # Then an album and a burst of lines: the platform does not wait, the two processes get them
        # at the same moment.
        burst = [fake.media_update(uid, "photo", _photo(uid, i)) for i in range(PHOTOS)]
        burst += [fake.text_update(uid, f"Dòng thêm {j} của {uid}") for j in range(LINES)]
        after = fake.last_message_id(uid)
        assert await asyncio.gather(*[next_bot().post(u) for u in burst]) == [200] * len(burst)
        await bots[0].wait(lambda: len(since(after)) >= len(burst), 60, f"a reply to each of the burst in chat {uid}")
        replies = since(after)
        received = sorted(int(mm[1]) for x in replies if (mm := re.match(r"📎 Đã nhận (\d+) tệp", x.text)))
        assert received == list(range(1, PHOTOS + 1)), f"chat {uid}: {[x.text[:60] for x in replies]}"
        assert sum("Đã thêm vào phần mô tả." in x.text for x in replies) == LINES, [x.text[:60] for x in replies]
        # A double tap on “✅ Send report”, each tap to another process.
        last = [x for x in fake.bot_messages(uid) if "c:send" in _buttons(x)][-1]
        taps = [fake.callback_update(uid, "c:send", message_id=last.message_id) for _ in range(2)]
        after = fake.last_message_id(uid)
        assert await asyncio.gather(*[next_bot().post(u) for u in taps]) == [200, 200]
        await bots[0].wait(lambda: len(since(after)) >= 3, 60, f"the answers to both taps in chat {uid}")
        replies = [x.text for x in since(after)]
        assert sum(t.startswith("✅ Đã gửi báo cáo SC-") for t in replies) == 1, replies
        assert sum(t.startswith("Nút này không còn hiệu lực") for t in replies) == 1, replies

    await asyncio.gather(*[report(n, uid) for n, uid in enumerate(TEACHERS)])

    def state(s: Session) -> tuple[list[Incident], dict[int, list[IncidentAttachment]], list[Conversation]]:
        incs = list(s.exec(select(Incident).order_by(col(Incident.id))).all())
        files = {i.id or 0: list(s.exec(select(IncidentAttachment).where(IncidentAttachment.incident_id == i.id)))
                 for i in incs}
        return incs, files, list(s.exec(select(Conversation)).all())

    incs, files, convs = pg.run_sync(state)
    by_reporter = {pid: [i for i in incs if i.reporter_id == pid] for pid in teachers.values()}
    assert all(len(v) == 1 for v in by_reporter.values()), {k: len(v) for k, v in by_reporter.items()}
    assert sorted(i.seq for i in incs) == list(range(1, len(TEACHERS) + 1))
    for uid, pid in teachers.items():
        inc = by_reporter[pid][0]
        assert sorted(f.sha256 for f in files[inc.id or 0]) == sorted(
            hashlib.sha256(_photo(uid, i)).hexdigest() for i in range(PHOTOS))
        lines = inc.description.split("\n")
        assert lines[0] == f"Hàng rào bị đổ ({uid})"
        assert sorted(lines[1:]) == [f"Dòng thêm {j} của {uid}" for j in range(LINES)]
    assert all(c.flow is None for c in convs)
    # The principal got exactly one card per report (with its photos).
    cards = [m for m in fake.bot_messages(PRINCIPAL) if any(p.endswith(":ack") for p in _buttons(m))]
    assert sorted(m.text.split("SC-")[1][:9] for m in cards) == sorted(i.number[3:] for i in incs)
    for uid in [PRINCIPAL, *TEACHERS]:
        assert not [m.text for m in fake.bot_messages(uid) if APOLOGY in m.text]
    # Nothing more in a teacher's chat than one answer per step, a reply per item of the burst, the
    # receipt, and “that button is no longer valid” with the menu.
    for uid in TEACHERS:
        assert len(fake.bot_messages(uid)) == 5 + PHOTOS + LINES + 3, fake.texts(uid)
    # Both processes served updates.
    assert all(b.statuses and set(b.statuses) == {200} for b in bots)


# -- the lock itself ---------------------------------------------------------------------------------
async def test_an_event_waits_for_its_chats_lock_before_reading_the_conversation(
        runtime: Any, pg: Database) -> None:
    """Another process holding the chat's lock (and changing the conversation under it) holds the
    event back; once it commits, the event reads the conversation as it was left. Another chat's
    event is not held back."""
    cast = runtime.enrol({"the teacher": ("Nguyễn Thị Vân", ["teacher"]),
                          "another teacher": ("Lê Thị Hoa", ["teacher"])})
    teacher, other = cast["the teacher"], cast["another teacher"]

    keys = itertools.count(1)

    def inbound(who: Any, **kw: Any) -> Inbound:
        return Inbound(channel="test", user_id=str(who.chat), chat_id=str(who.chat), update_key=f"u{next(keys)}", **kw)

    await runtime.dispatcher.handle(inbound(teacher, command="suco"))
    conv = pg.run_sync(lambda s: s.exec(select(Conversation).where(Conversation.chat_id == str(teacher.chat))).one())
    assert (conv.flow, conv.state) == ("incident", "kind")

    def waiting() -> int:
        with pg.engine.connect() as c:
            return int(c.execute(text(
                "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND NOT l.granted AND l.classid = :k "
                "AND a.application_name = current_setting('application_name')"),
                {"k": Dispatcher.CHAT_LOCK}).scalar() or 0)

    with pg.engine.connect() as holder:  # "the other process", in the middle of a step of this chat
        holder.execute(text("SELECT pg_advisory_xact_lock(:k, hashtext(concat(current_schema(), ':', CAST(:key AS text))))"),
                       {"k": Dispatcher.CHAT_LOCK, "key": f"test:{teacher.chat}"})
        holder.execute(text("UPDATE conversation SET flow = NULL, state = NULL WHERE chat_id = :c"),
                       {"c": str(teacher.chat)})
        task = asyncio.ensure_future(runtime.dispatcher.handle(inbound(teacher, payload="c:security")))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while not waiting():
            assert not task.done(), "the event did not wait for its chat's lock"
            assert loop.time() < deadline, "the event never asked for its chat's lock"
            await asyncio.sleep(0.02)
        # another chat is not held back
        await asyncio.wait_for(runtime.dispatcher.handle(inbound(other, command="suco")), 20)
        assert not task.done()
        holder.commit()
    replies = await asyncio.wait_for(task, 20)
    # The conversation as the other process left it: no workflow open, so the tap is stale.
    assert [o.reply.text for o in replies][0] == "Nút này không còn hiệu lực. Mời anh/chị chọn lại từ menu."


# -- notices go out once ---------------------------------------------------------------------------------
class _IdleFanOut:
    """Notices are only queued here; the bot processes send them."""

    async def drain(self, *, max_rounds: int = 0) -> int:
        return 0


def _queue_notices(s: Session, settings: Settings, school_id: int) -> None:
    school = s.get(School, school_id)
    assert school is not None
    ctx = Ctx(session=s, services=Services(settings=settings, registry=Registry(), fanout=_IdleFanOut()),
              inbound=Inbound(channel="scheduler", user_id="", chat_id="", update_key=""), person=None,
              school=school, tr=Translator("vi", settings.tz), now=utcnow())
    for i in range(NOTICE_PEOPLE):
        p = make_person(s, school, f"Giáo viên {i:03d}", ["teacher"])
        link_identity(s, person=p, channel="telegram", external_id=str(NOTICE_BASE + i), chat_id=str(NOTICE_BASE + i))
        assert queue_notice(ctx, rule="processes_test", person=p, period="2026-12", school_id=school_id,
                            make=lambda tr, i=i: Reply(f"🔔 Nhắc việc số {i:03d}"))


def _held_notice(s: Session, school_id: int) -> None:
    """A person whose notice waits (held) until they next write."""
    school = s.get(School, school_id)
    assert school is not None
    p = make_person(s, school, "Phạm Văn Giữ", ["teacher"])
    link_identity(s, person=p, channel="telegram", external_id=str(HELD_UID), chat_id=str(HELD_UID))
    s.add(Notice(key=f"processes_test|{p.id}|held", school_id=school_id, rule="processes_test", person_id=p.id,
                 period="held", status=NoticeStatus.HELD, payload={"text": "🔔 Nhắc việc đang chờ"},
                 created_at=utcnow()))


async def test_notices_go_out_once_with_two_processes(bots: list[WebhookBot], fake: GatedTelegram, pg: Database,
                                                      settings: Settings) -> None:
    ids = pg.run_sync(_seed)
    pg.run_sync(lambda s: _held_notice(s, ids["school"]))
    for b in bots:
        await b.start()
    leader = await bots[0].wait(lambda: next((b for b in bots if b.leads()), None), 30, "a process to lead")
    follower = bots[1] if leader is bots[0] else bots[0]
    # The leader's scheduler sends the notices (25 a second); meanwhile the person with a held
    # notice writes to the other process, which releases it and drains the queue too.
    pg.run_sync(lambda s: _queue_notices(s, settings, ids["school"]))

    def counts() -> dict[int, int]:
        return {i: sum(1 for t in fake.texts(NOTICE_BASE + i) if t == f"🔔 Nhắc việc số {i:03d}")
                for i in range(NOTICE_PEOPLE)}

    await leader.wait(lambda: sum(counts().values()) >= 10, 30, "the fan-out to be under way")
    assert sum(counts().values()) < NOTICE_PEOPLE, "the fan-out ended before the other process drained"
    assert await follower.post(fake.text_update(HELD_UID, "chào")) == 200
    await leader.wait(lambda: "🔔 Nhắc việc đang chờ" in fake.texts(HELD_UID), 30, "the held notice")
    await leader.wait(lambda: all(counts().values()), 60, "every notice")

    def statuses(s: Session) -> set[str]:
        return {n.status for n in s.exec(select(Notice).where(Notice.rule == "processes_test")).all()}

    await leader.wait(lambda: pg.run_sync(statuses) == {"sent"}, 30, "every notice recorded as sent")
    twice = {i: n for i, n in counts().items() if n != 1}
    assert not twice, f"notices sent more than once: {twice}"
    assert fake.texts(HELD_UID).count("🔔 Nhắc việc đang chờ") == 1


async def test_a_live_claim_is_not_taken_back_and_a_dead_ones_is(runtime: Any, db: Database) -> None:
    """A fan-out's claim (``sending``) belongs to the process that made it. On PostgreSQL another
    process takes it back only once it is ``CLAIM_STALE`` old (its process died; a live one renews it
    while it sends); on SQLite (one process) every claim found at the start is a dead process's."""
    from bot.engine.fanout import CLAIM_STALE, SENDING, FanOut

    cast = runtime.enrol({"a": ("Nguyễn Thị Vân", ["teacher"]), "b": ("Lê Thị Hoa", ["teacher"]),
                          "c": ("Phạm Văn Giữ", ["teacher"])})
    now = utcnow()
    claims = {"fresh": now - CLAIM_STALE / 3, "stale": now - CLAIM_STALE * 2, "renewed": now - CLAIM_STALE * 2}

    def add(s: Session) -> dict[str, int]:
        ids = {}
        for (label, at), who in zip(claims.items(), ("a", "b", "c"), strict=True):
            n = Notice(key=f"claims|{label}", school_id=cast.school_id, rule="claims", person_id=cast[who].id,
                       status=SENDING, payload={"text": label}, not_before=at, created_at=now, attempts=1)
            s.add(n)
            s.flush()
            ids[label] = n.id or 0
        return ids

    ids = db.run_sync(add)
    fanout = FanOut(runtime)
    # the process sending "renewed" records another notice as sent and renews the claim of the rest
    db.run_sync(lambda s: fanout._finish(s, results=[], now=now, renew=[ids["renewed"]]))
    taken = db.run_sync(lambda s: fanout._recover(s, now=now))
    status = db.run_sync(lambda s: {label: s.get(Notice, i).status for label, i in ids.items()})  # type: ignore[union-attr]
    if db.is_sqlite:
        assert taken == 3 and set(status.values()) == {NoticeStatus.QUEUED}
    else:
        assert taken == 1 and status == {"fresh": SENDING, "stale": NoticeStatus.QUEUED, "renewed": SENDING}
