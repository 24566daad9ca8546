"""Crash safety: the bot runs as a real process (``python main.py run``) against the fake Bot API and is
killed with SIGKILL — its whole process group, ffmpeg included — in the middle of a workflow, of an
approval, of a clip extraction and of a reminder fan-out, then started again on the same database.

What must hold after the restart:

* a conversation resumes where it was (state and draft live in the database);
* a decision is taken exactly once, whether the kill came before or after it was committed, and
  however often Telegram hands the same tap out again;
* an approved clip whose extraction was never started (killed before) or was cut short (killed while
  ffmpeg ran) is not lost and never delivered half-written: a cut short is started again once, by
  itself, with a fresh progress message; cut short twice, it fails with a clear message to the
  requester and IT's retry button;
* no queued notice is lost; a notice can arrive twice only if it was the one in flight at the kill.

Everything is checked on the fake's records (calls, chats, uploaded bytes) and in the database.
Runs on SQLite and (with ``TEST_DATABASE_URL``) PostgreSQL."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import Session, select

from bot.config import Settings
from bot.core import Ctx, Inbound, Registry, Reply, Services, load_registry
from bot.engine.reminders import queue_notice
from bot.flows.footage.models import Camera, FootageRequest
from bot.i18n import Translator
from media.synth import make_archive
from storage import audit
from storage.db import Database
from storage.models import (
    Approval,
    ApprovalStage,
    Conversation,
    Notice,
    OutboxMessage,
    Person,
    RuleSetting,
    School,
    utcnow,
)
from storage.people import link_identity
from tests.crash_harness import BotProcess, GatedTelegram, bot, fake, hold_writes, process_group_members  # noqa: F401 (fixtures)
from tests.fakes.telegram_server import ChatMessage
from tests.helpers import make_person, make_school

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
TEACHER, PRINCIPAL, IT = 1001, 1002, 1003
PRINCIPAL_NAME = "Trần Văn Đức"
FANOUT_PEOPLE = 40
FANOUT_BASE_UID = 20_000


# -- shared set-up ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, datetime]:
    """16 minutes of synthetic Frigate recordings of camera ``cong``, ending two minutes ago (the bot
    runs on the real clock). Returns the folder and the recording's start (UTC)."""
    root = tmp_path_factory.mktemp("frigate")
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=18)
    make_archive(root, "cong", start, 16 * 60, segment_seconds=60, fps=2)
    return root, start


_RULE_KEYS: list[str] = []


def _rule_keys() -> list[str]:
    if not _RULE_KEYS:
        _RULE_KEYS.extend(load_registry().rules)
    return _RULE_KEYS


def _seed(s: Session, archive_root: Path, *, watermark: bool = False) -> dict[str, int]:
    """A school with a teacher, the principal and IT linked to Telegram, the gate camera, and every
    reminder rule switched off (so the only messages are the ones the test causes)."""
    school = make_school(s, settings={"footage_watermark": True} if watermark else {})
    assert school.id is not None
    people = {"teacher": make_person(s, school, "Nguyễn Thị Vân", ["teacher"]),
              "principal": make_person(s, school, PRINCIPAL_NAME, ["principal"]),
              "it": make_person(s, school, "Lê Văn Tin", ["it"])}
    for (_, person), uid in zip(people.items(), (TEACHER, PRINCIPAL, IT), strict=True):
        link_identity(s, person=person, channel="telegram", external_id=str(uid), chat_id=str(uid))
    cam = Camera(school_id=school.id, code="cong", name="Cổng chính", unit="Tổ bảo vệ",
                 source=f"frigate:{archive_root}")
    s.add(cam)
    for key in _rule_keys():
        s.add(RuleSetting(school_id=school.id, rule=key, enabled=False))
    s.flush()
    return {"school": school.id, "camera": cam.id or 0, **{k: p.id or 0 for k, p in people.items()}}


# -- talking to the bot through the fake -------------------------------------------------------------
def has_button(prefix: str) -> Callable[[ChatMessage], bool]:
    return lambda m: any(str(b.get("callback_data", "")).startswith(prefix)
                         for row in m.inline_buttons for b in row)


async def push(bot: BotProcess, uid: int, update: dict[str, Any],
               expect: Callable[[ChatMessage], bool] | None = None, what: str = "a reply") -> ChatMessage:
    """Queue ``update`` and wait for the first new bot message in the user's chat matching ``expect``."""
    fake = bot.fake
    after = fake.last_message_id(uid)  # the user's own message (if any) is already recorded
    fake.push_update(update)

    def found() -> ChatMessage | None:
        return next((m for m in fake.bot_messages(uid)
                     if m.message_id > after and (expect is None or expect(m))), None)
    return await bot.wait(found, 30, what)  # type: ignore[no-any-return]


async def tap(bot: BotProcess, uid: int, payload: str, expect: Callable[[ChatMessage], bool] | None = None,
              what: str = "a reply") -> ChatMessage:
    """Tap the newest button carrying ``payload`` in the user's chat."""
    carrying = [m for m in bot.fake.bot_messages(uid) if has_button(payload)(m)]
    assert carrying, f"no message with a {payload!r} button in chat {uid}: {bot.fake.texts(uid)[-3:]}"
    return await push(bot, uid, bot.fake.callback_update(uid, payload, message_id=carrying[-1].message_id),
                      expect, what)


def _local(t: datetime) -> datetime:
    return t.astimezone(TZ)


async def ask_footage(bot: BotProcess, ids: dict[str, int], start: datetime, minutes: int) -> int:
    """The teacher asks for ``minutes`` of the gate camera from ``start``; returns the approval id."""
    fake = bot.fake
    local = _local(start)
    day = "today" if local.date() == _local(datetime.now(UTC)).date() else "yesterday"
    await push(bot, TEACHER, fake.command_update(TEACHER, "camera"), has_button("c:cam"), "camera buttons")
    await tap(bot, TEACHER, f"c:cam{ids['camera']}", has_button("c:today"), "the day question")
    await tap(bot, TEACHER, f"c:{day}", lambda m: not m.inline_buttons, "the time question")
    await push(bot, TEACHER, fake.text_update(TEACHER, f"{local.hour}h{local.minute:02d}"), has_button("c:1"),
               "the duration buttons")
    await push(bot, TEACHER, fake.text_update(TEACHER, f"{minutes} phút"), has_button("c:evidence"),
               "the purpose buttons")
    await tap(bot, TEACHER, "c:evidence", has_button("c:send"), "the summary")
    before = len(fake.with_button(PRINCIPAL, "ap:"))
    await tap(bot, TEACHER, "c:send", lambda m: not m.inline_buttons, "the request's receipt")
    cards = await bot.wait(lambda: fake.with_button(PRINCIPAL, "ap:")[before:], 20, "the principal's card")
    payload = next(str(b["callback_data"]) for row in cards[-1].inline_buttons for b in row
                   if str(b.get("callback_data", "")).endswith(":ok"))
    return int(payload.split(":")[1])


def decisions(db: Database, approval_id: int) -> list[Any]:
    return db.run_sync(lambda s: [e for e in audit.events(s, action="approval.decided")
                                  if e.subject == f"approval:{approval_id}"])


def approval_state(db: Database, approval_id: int) -> tuple[str, list[tuple[str, int | None]]]:
    def go(s: Session) -> tuple[str, list[tuple[str, int | None]]]:
        ap = s.get(Approval, approval_id)
        assert ap is not None
        stages = s.exec(select(ApprovalStage).where(ApprovalStage.approval_id == approval_id)).all()
        return ap.status, [(st.status, st.decided_by) for st in stages]
    return db.run_sync(go)


def footage(db: Database, **where: Any) -> FootageRequest:
    def go(s: Session) -> FootageRequest:
        q = select(FootageRequest)
        for k, v in where.items():
            q = q.where(getattr(FootageRequest, k) == v)
        return s.exec(q).one()
    return db.run_sync(go)


def answered(fake: GatedTelegram, update: dict[str, Any]) -> bool:
    """The bot answered the update's callback query: it has received the tap."""
    qid = update["callback_query"]["id"]
    return any(c.method.lower() == "answercallbackquery" and c.params.get("callback_query_id") == qid
               for c in fake.calls)


def footage_events(db: Database, req_id: int | None) -> list[str]:
    return db.run_sync(lambda s: [e.action for e in audit.events(s, subject=f"footage:{req_id}")])


def videos(bot: BotProcess, uid: int) -> list[ChatMessage]:
    return [m for m in bot.fake.bot_messages(uid) if m.media_kind == "video"]


# -- (a) + (b): a workflow and an approval ---------------------------------------------------------------
async def test_workflow_and_approval_survive_sigkill(bot: BotProcess, db: Database,
                                                     archive: tuple[Path, datetime]) -> None:
    fake = bot.fake
    root, rec_start = archive
    ids = db.run_sync(lambda s: _seed(s, root))
    window = rec_start + timedelta(minutes=6)
    await bot.start()

    # (a) Killed between two answers of /camera: the next answer continues the same conversation.
    await push(bot, TEACHER, fake.command_update(TEACHER, "camera"), has_button("c:cam"))
    await tap(bot, TEACHER, f"c:cam{ids['camera']}", has_button("c:today"))
    day = "today" if _local(window).date() == _local(datetime.now(UTC)).date() else "yesterday"
    await tap(bot, TEACHER, f"c:{day}", lambda m: not m.inline_buttons, "the time question")
    bot.kill()
    conv = db.run_sync(lambda s: s.exec(select(Conversation).where(Conversation.chat_id == str(TEACHER))).one())
    assert (conv.flow, conv.state, conv.data.get("camera_id")) == ("footage", "time", ids["camera"])
    await bot.start()
    local = _local(window)
    prompt = await push(bot, TEACHER, fake.text_update(TEACHER, f"{local.hour}h{local.minute:02d}"))
    assert has_button("c:1")(prompt), f"the conversation did not resume: {prompt.text!r}"
    await push(bot, TEACHER, fake.text_update(TEACHER, "1"), has_button("c:evidence"))
    await tap(bot, TEACHER, "c:evidence", has_button("c:send"))
    before = len(fake.with_button(PRINCIPAL, "ap:"))
    await tap(bot, TEACHER, "c:send", lambda m: not m.inline_buttons)
    card = (await bot.wait(lambda: fake.with_button(PRINCIPAL, "ap:")[before:], 20, "the card"))[-1]
    ap1 = int(next(str(b["callback_data"]) for row in card.inline_buttons for b in row).split(":")[1])

    # (b1) The tap is handed out but the process dies before the decision is committed.
    tap1 = fake.callback_update(PRINCIPAL, f"ap:{ap1}:ok", message_id=card.message_id)
    with hold_writes(db):
        fake.push_update(tap1)
        await bot.wait(lambda: answered(fake, tap1), 20, "the bot to receive the tap")
        bot.kill()
    assert approval_state(db, ap1)[0] == "pending" and not decisions(db, ap1)
    await bot.start()
    fake.push_update(tap1, redeliver=True)  # Telegram hands out again what was not confirmed
    fake.push_update(tap1, redeliver=True)  # ... and a replayed copy must change nothing
    await push(bot, PRINCIPAL, fake.callback_update(PRINCIPAL, f"ap:{ap1}:ok", message_id=card.message_id),
               lambda m: f"#{ap1}" in m.text and PRINCIPAL_NAME in m.text, "“already approved by …”")
    assert approval_state(db, ap1) == ("approved", [("approved", ids["principal"])])
    assert len(decisions(db, ap1)) == 1
    await bot.wait(lambda: len(videos(bot, TEACHER)) >= 1, 40, "the first clip")
    await bot.wait(lambda: fake.with_button(PRINCIPAL, "fx:"), 20, "the principal's custody notice")

    # (b2) The decision is committed, and the process dies while its replies are being sent (so
    # the clip's extraction, which runs after them, was never started).
    ap2 = await ask_footage(bot, ids, window, 1)
    card2 = fake.with_button(PRINCIPAL, f"ap:{ap2}:")[-1]
    gate = fake.gate("sendMessage", lambda p: str(p.get("chat_id")) == str(PRINCIPAL) and f"#{ap2}" in p["text"])
    tap2 = fake.callback_update(PRINCIPAL, f"ap:{ap2}:ok", message_id=card2.message_id)
    fake.push_update(tap2)
    await bot.wait(lambda: gate.held, 20, "the reply to the principal")
    bot.kill()
    fake.open_gate(gate, deliver=False)
    assert approval_state(db, ap2) == ("approved", [("approved", ids["principal"])])
    assert len(decisions(db, ap2)) == 1
    req2 = footage(db, approval_id=ap2)
    assert req2.status == "approved" and req2.clip_path is None  # nothing started the cut
    await bot.start()
    fake.push_update(tap2, redeliver=True)
    await push(bot, PRINCIPAL, fake.callback_update(PRINCIPAL, f"ap:{ap2}:ok", message_id=card2.message_id),
               lambda m: f"#{ap2}" in m.text and PRINCIPAL_NAME in m.text, "“already approved by …”")
    assert len(decisions(db, ap2)) == 1
    assert approval_state(db, ap2) == ("approved", [("approved", ids["principal"])])

    # The clip of the second request is cut and delivered after the restart, exactly once.
    await bot.wait(lambda: len(videos(bot, TEACHER)) >= 2, 40, "the second clip")
    req1 = footage(db, approval_id=ap1)
    req2 = footage(db, approval_id=ap2)
    for req in (req1, req2):
        assert req.status == "delivered" and req.clip_sha256
        events = footage_events(db, req.id)
        assert events.count("footage.extracted") == 1 and events.count("footage.delivered") == 1, events
    delivered = videos(bot, TEACHER)
    assert len(delivered) == 2
    assert sorted(m.file.sha256 for m in delivered if m.file) == sorted([req1.clip_sha256 or "", req2.clip_sha256 or ""])
    assert all(m.protected for m in delivered)
    assert db.run_sync(lambda s: audit.verify(s)).ok


# -- (c): a clip extraction ----------------------------------------------------------------------------
ORIGINAL_PROGRESS = "⏳ Đang trích xuất đoạn phim của đề nghị #{id}…"


def sent_texts(fake: GatedTelegram, uid: int, since: int) -> list[str]:
    """The texts of the messages sent (not edited) to ``uid`` since call number ``since``."""
    return [str(c.params.get("text") or c.params.get("caption") or "") for c in fake.calls[since:]
            if c.method.lower() in ("sendmessage", "sendvideo") and str(c.params.get("chat_id")) == str(uid)]


async def start_cut_and_kill(bot: BotProcess, db: Database, ids: dict[str, int], start: datetime,
                             clips: Path) -> FootageRequest:
    """The teacher asks for six minutes, the principal approves; killed while ffmpeg cuts."""
    fake = bot.fake
    ap = await ask_footage(bot, ids, start, 6)
    await tap(bot, PRINCIPAL, f"ap:{ap}:ok", lambda m: f"#{ap}" in m.text)
    req = footage(db, approval_id=ap)
    await bot.wait(lambda: any("⏳" in t and f"#{req.id}" in t for t in fake.texts(TEACHER)), 30, "⏳")
    await bot.wait(lambda: process_group_members(bot.pid, "ffmpeg"), 30, "ffmpeg to run")
    bot.kill()
    assert not process_group_members(bot.pid, "ffmpeg")
    assert footage(db, id=req.id).status == "extracting"
    left = [p.relative_to(clips) for p in clips.rglob("*") if p.is_file()]
    assert left and all(str(p).startswith(f".request-{req.id}.partial/") for p in left), left  # half-written
    return req


async def test_clip_extraction_killed_while_ffmpeg_runs(bot: BotProcess, db: Database, settings: Settings,
                                                        archive: tuple[Path, datetime]) -> None:
    fake = bot.fake
    root, rec_start = archive
    # The watermark makes ffmpeg re-encode six minutes: long enough to be caught at work.
    ids = db.run_sync(lambda s: _seed(s, root, watermark=True))
    clips = settings.data_dir / "media" / "clips" / str(ids["school"])
    await bot.start()
    req = await start_cut_and_kill(bot, db, ids, rec_start + timedelta(minutes=2), clips)

    since = len(fake.calls)
    await bot.start()
    # The interrupted cut is started again by itself, once, and the clip is delivered.
    await bot.wait(lambda: videos(bot, TEACHER), 60, "the clip after the automatic restart")
    told = sent_texts(fake, TEACHER, since)
    progress = [t for t in told if "⏳" in t]
    # A fresh message says it is cut again; the old "Đang trích xuất…" is not sent once more.
    assert len(progress) == 1 and "khởi động lại" in progress[0] and f"#{req.id}" in progress[0], told
    assert ORIGINAL_PROGRESS.format(id=req.id) not in told
    assert not [t for t in told if "Xin lỗi" in t], told                 # no failure was announced
    assert not fake.with_button(IT, f"fx:{req.id}:retry")                # nor offered to IT
    done = footage(db, id=req.id)
    video = videos(bot, TEACHER)
    assert len(video) == 1 and video[0].file is not None
    assert (done.status, done.attempts, done.resumes) == ("delivered", 2, 1)
    assert done.clip_path and done.error == ""
    assert video[0].file.sha256 == done.clip_sha256 == hashlib.sha256(Path(done.clip_path).read_bytes()).hexdigest()
    assert 355 <= (done.clip_duration or 0) <= 365
    assert sorted(p.name for p in clips.iterdir()) == [f"request-{req.id}.mp4"]  # no stray work folder
    actions = footage_events(db, req.id)
    assert actions.count("footage.resumed") == 1 and "footage.failed" not in actions, actions
    assert actions.count("footage.extracted") == 1 and actions.count("footage.delivered") == 1, actions
    assert db.run_sync(lambda s: audit.verify(s)).ok


async def test_clip_extraction_killed_twice_fails_clearly(bot: BotProcess, db: Database, settings: Settings,
                                                          archive: tuple[Path, datetime]) -> None:
    fake = bot.fake
    root, rec_start = archive
    ids = db.run_sync(lambda s: _seed(s, root, watermark=True))
    clips = settings.data_dir / "media" / "clips" / str(ids["school"])
    await bot.start()
    req = await start_cut_and_kill(bot, db, ids, rec_start + timedelta(minutes=2), clips)

    # Started again after the restart ... and killed again while ffmpeg runs.
    since = len(fake.calls)
    await bot.start()
    await bot.wait(lambda: [t for t in sent_texts(fake, TEACHER, since) if "khởi động lại" in t], 30,
                   "the message that the clip is cut again")
    await bot.wait(lambda: process_group_members(bot.pid, "ffmpeg"), 30, "ffmpeg to run again")
    bot.kill()
    assert (footage(db, id=req.id).status, footage(db, id=req.id).resumes) == ("extracting", 1)

    since = len(fake.calls)
    await bot.start()
    warning = await bot.wait(lambda: next(iter(fake.with_button(IT, f"fx:{req.id}:retry")), None), 30,
                             "IT's retry button")
    assert f"#{req.id}" in warning.text and "hai lần" in warning.text
    told = await bot.wait(lambda: [t for t in sent_texts(fake, TEACHER, since) if f"#{req.id}" in t], 20,
                          "the requester to be told")
    assert len(told) == 1 and "hai lần" in told[0] and "thử lại" in told[0], told
    assert not [t for t in sent_texts(fake, TEACHER, since) if "⏳" in t]  # no stale progress before it
    after = footage(db, id=req.id)
    assert (after.status, after.error, after.resumes, after.clip_path) == ("failed", "interrupted", 2, None)
    assert not videos(bot, TEACHER)
    assert list(clips.iterdir()) == []  # no partial output, no stray work folder
    actions = footage_events(db, req.id)
    assert actions.count("footage.resumed") == 1 and actions.count("footage.failed") == 1, actions
    failed = db.run_sync(lambda s: [e.details for e in audit.events(s, action="footage.failed")])
    assert failed == [{"error": "interrupted"}]
    assert db.run_sync(lambda s: audit.verify(s)).ok


# -- (d): a reminder fan-out -----------------------------------------------------------------------------
class _IdleFanOut:
    """A fan-out that is never run here: notices are only queued (the bot process sends them)."""

    async def drain(self, *, max_rounds: int = 0) -> int:
        return 0


def _seed_notices(s: Session, settings: Settings, school_id: int) -> list[int]:
    """``FANOUT_PEOPLE`` teachers on Telegram, each with one queued notice (``bot.engine.reminders.queue_notice``)."""
    school = s.get(School, school_id)
    assert school is not None
    ctx = Ctx(session=s, services=Services(settings=settings, registry=Registry(), fanout=_IdleFanOut()),
              inbound=Inbound(channel="scheduler", user_id="", chat_id="", update_key=""), person=None,
              school=school, tr=Translator("vi", settings.tz), now=utcnow())
    people: list[Person] = []
    for i in range(FANOUT_PEOPLE):
        p = make_person(s, school, f"Giáo viên {i:02d}", ["teacher"])
        link_identity(s, person=p, channel="telegram", external_id=str(FANOUT_BASE_UID + i),
                      chat_id=str(FANOUT_BASE_UID + i))
        people.append(p)
    for i, p in enumerate(people):
        assert queue_notice(ctx, rule="crash_test", person=p, period="2026-11", school_id=school_id,
                            make=_notice(i))
    return [p.id or 0 for p in people]


def _notice(i: int) -> Callable[[Translator], Reply]:
    return lambda tr: Reply(f"🔔 Nhắc việc kiểm thử số {i:02d}")


def _notice_counts(bot: BotProcess) -> dict[int, int]:
    return {i: sum(1 for t in bot.fake.texts(FANOUT_BASE_UID + i) if t == f"🔔 Nhắc việc kiểm thử số {i:02d}")
            for i in range(FANOUT_PEOPLE)}


async def test_fanout_killed_midway_loses_nothing(bot: BotProcess, db: Database, settings: Settings,
                                                  archive: tuple[Path, datetime]) -> None:
    ids = db.run_sync(lambda s: _seed(s, archive[0]))
    person_ids = db.run_sync(lambda s: _seed_notices(s, settings, ids["school"]))
    index = {pid: i for i, pid in enumerate(person_ids)}

    def by_status(s: Session) -> dict[str, set[int]]:
        out: dict[str, set[int]] = {}
        for n in s.exec(select(Notice).where(Notice.rule == "crash_test")).all():
            out.setdefault(n.status, set()).add(index[n.person_id or 0])
        return out

    await bot.start()
    await bot.wait(lambda: sum(_notice_counts(bot).values()) >= FANOUT_PEOPLE // 4, 30, "the fan-out to be under way")
    bot.kill()
    sent_before = _notice_counts(bot)
    at_kill = db.run_sync(by_status)
    assert sum(sent_before.values()) < FANOUT_PEOPLE, "the kill came after the fan-out"
    sending = at_kill.get("sending", set())
    if not db.is_sqlite:
        # Another process might still be sending them: a restarted process takes the rows of a dead one
        # back once their claim is stale (bot.engine.fanout.CLAIM_STALE). The kill was that long ago.
        from sqlalchemy import text

        from bot.engine.fanout import CLAIM_STALE
        db.run_sync(lambda s: s.execute(text("UPDATE notice SET not_before = :t WHERE status = 'sending'"),
                                        {"t": utcnow() - 2 * CLAIM_STALE}))

    await bot.start()
    await bot.wait(lambda: all(_notice_counts(bot).values()), 40, "every notice")
    await bot.wait(lambda: set(db.run_sync(by_status)) == {"sent"}, 20, "every notice recorded as sent")
    counts = _notice_counts(bot)
    duplicated = {i for i, n in counts.items() if n > 1}
    assert all(n >= 1 for n in counts.values())  # none lost
    assert max(counts.values()) <= 2
    # Only a notice that was being sent at the kill may arrive twice, and the fan-out has one
    # message in flight per channel at a time, recording each as soon as it went out.
    assert duplicated <= sending, (duplicated, sending)
    assert len(duplicated) <= len(sending)
    assert len(duplicated) <= 1, f"{len(duplicated)} notices were sent twice"


# -- what a kill must not lose: an update handed out, messages of a committed event ---------------------
class LostUpdate(AssertionError):
    """An update Telegram handed out before the kill was never handled."""


class LostReplies(AssertionError):
    """Messages of an event committed before the kill were never sent."""


async def test_update_handed_out_but_not_handled_at_the_kill_is_not_lost(
        bot: BotProcess, db: Database, db_url: str, archive: tuple[Path, datetime]) -> None:
    if not db_url.startswith("sqlite"):
        pytest.skip("channel behaviour: one database is enough")
    fake = bot.fake
    root, rec_start = archive
    ids = db.run_sync(lambda s: _seed(s, root))
    window = _local(rec_start + timedelta(minutes=6))
    day = "today" if window.date() == _local(datetime.now(UTC)).date() else "yesterday"
    await bot.start()
    await push(bot, TEACHER, fake.command_update(TEACHER, "camera"), has_button("c:cam"))
    question = await tap(bot, TEACHER, f"c:cam{ids['camera']}", has_button("c:today"))
    answer = fake.callback_update(TEACHER, f"c:{day}", message_id=question.message_id)
    uid = answer["update_id"]

    def polls_since(n: int) -> list[int]:
        return [int(c.params.get("offset") or 0) for c in fake.calls[n:] if c.method.lower() == "getupdates"]

    with hold_writes(db):  # handed out, but it cannot be committed
        fake.push_update(answer)
        await bot.wait(lambda: uid in fake.delivered, 20, "the answer to be handed out")
        handed = len(fake.calls)
        # The bot keeps polling (other chats' updates are not held up) without confirming it.
        await bot.wait(lambda: len(polls_since(handed)) >= 2, 20, "two more getUpdates")
        bot.kill()
    confirmed = polls_since(0)
    assert all(offset <= uid for offset in confirmed), f"confirmed before it was handled: {confirmed}"
    conv = db.run_sync(lambda s: s.exec(select(Conversation).where(Conversation.chat_id == str(TEACHER))).one())
    assert (conv.flow, conv.state) == ("footage", "date")
    since = len(fake.bot_messages(TEACHER))
    await bot.start()  # Telegram hands the unconfirmed answer out again
    asked = await bot.wait(lambda: [m for m in fake.bot_messages(TEACHER)[since:] if not m.inline_buttons], 20,
                           "the time question, answering the day chosen before the kill")
    reply = await push(bot, TEACHER, fake.text_update(TEACHER, f"{window.hour}h{window.minute:02d}"))
    if not has_button("c:1")(reply):
        raise LostUpdate(f"the day chosen before the kill was lost: {[m.text for m in asked]!r}, then {reply.text!r}")
    # Once handled, it is confirmed.
    await bot.wait(lambda: any(o > uid for o in polls_since(0)), 20, "the answer to be confirmed")


async def test_messages_of_a_committed_decision_are_sent_after_a_kill(
        bot: BotProcess, db: Database, db_url: str, archive: tuple[Path, datetime]) -> None:
    if not db_url.startswith("sqlite"):
        pytest.skip("dispatcher behaviour: one database is enough")
    fake = bot.fake
    root, rec_start = archive
    ids = db.run_sync(lambda s: _seed(s, root))
    await bot.start()
    ap = await ask_footage(bot, ids, rec_start + timedelta(minutes=6), 1)
    card = fake.with_button(PRINCIPAL, f"ap:{ap}:")[-1]
    gate = fake.gate("sendMessage", lambda p: str(p.get("chat_id")) == str(PRINCIPAL) and f"#{ap}" in p["text"])
    fake.push_update(fake.callback_update(PRINCIPAL, f"ap:{ap}:ok", message_id=card.message_id))
    await bot.wait(lambda: gate.held, 20, "the reply to the principal")
    bot.kill()
    fake.open_gate(gate, deliver=False)
    assert approval_state(db, ap)[0] == "approved"
    await bot.start()
    await bot.wait(lambda: videos(bot, TEACHER), 40, "the clip")  # the restarted bot has done its work
    after = fake.message(PRINCIPAL, card.message_id)
    told = [t for t in fake.texts(TEACHER) if f"#{ap}" in t and PRINCIPAL_NAME in t]
    if after is None or has_button(f"ap:{ap}:")(after) or not told:
        raise LostReplies(f"card still open: {after is not None and has_button(f'ap:{ap}:')(after)}; "
                          f"requester told: {bool(told)}")
    assert len(told) == 1, told  # sent from the outbox once, not doubled
    await bot.wait(lambda: not db.run_sync(lambda s: s.exec(select(OutboxMessage)).all()), 20,
                   "the outbox to be emptied")  # every row deleted once its message went out
