"""Hostile input, part 2: random sequences of inbound events against the real dispatcher.

A school with one person of every role (the demo school with every workflow's demo data), a
second school, a person who has left and strangers; each Hypothesis example walks a random
sequence of events: taps on the buttons the bot really sent (one's own, someone else's, stale
ones), forged payloads for every registered namespace, commands known and unknown, Unicode text of
any kind (also longer than the limit), contacts (own and others'), locations, files, empty events,
duplicate deliveries and long pauses. After every event: no reply is the generic apology of
``Dispatcher._failed`` (an exception was swallowed) or shows a traceback, and messages only go to
the sender or to linked chats. After every example: every conversation is in a real state of a
registered flow, every decided approval stage was decided by someone entitled to it, and the
audit chain verifies. ``HOSTILE_EXAMPLES=500`` runs a longer hunt.

Systematic companions: every payload namespace and every id-reading step gets ids no database
column holds (``²``, 11 and 20 digits), and the steps that read typed numbers get look-alike
numbers. Where a workflow owned by another helper still breaks, the case is a strict xfail naming
the line, and the random walk tolerates exactly that apology (``_known_bug``). Runs on SQLite and
(with ``TEST_DATABASE_URL``) PostgreSQL."""

from __future__ import annotations

import asyncio
import io
import itertools
import os
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from sqlmodel import Session, col, select

from bot.core import Contact, FileRef, Inbound, Outbound
from bot.demo import create_demo_school
from bot.engine import approvals
from bot.flows.accounts import cards as accounts
from bot.flows.articles import service as articles
from bot.flows.equipment import catalogue as equipment_store
from bot.flows.footage.demo import seed_cameras
from bot.flows.incidents import service as incidents
from bot.i18n import Translator
from bot.roles import Role
from bot.runtime import Runtime
from storage import audit
from storage.models import (
    Approval,
    ApprovalStage,
    ChannelIdentity,
    Conversation,
    Person,
    PersonStatus,
    School,
)
from storage.people import link_identity
from tests.conftest import FixedClock
from tests.fakes.telegram_server import BotApiError, parse_html
from tests.helpers import RecordingChannel, make_person, make_school

VI = Translator("vi")
APOLOGY = VI.t("Sorry, something went wrong on our side. Nothing you entered was lost; "
               "please try again, or type /huy to start over.")
_keys = itertools.count(1)


@dataclass
class World:
    rt: Runtime
    ch: RecordingChannel
    loop: asyncio.AbstractEventLoop
    clock: FixedClock
    users: list[str]                      # external ids that write to the bot (linked or not)
    phones: list[str]
    files: list[FileRef]
    commands: list[str]
    prefixes: list[str]
    texts: list[str]
    latest: dict[str, list[str]] = field(default_factory=dict)   # chat → payloads of its newest keyboard
    seen: dict[str, list[str]] = field(default_factory=dict)     # chat → every payload it was ever shown
    last_event: dict[str, Inbound] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)
    states: set[tuple[str, str]] = field(default_factory=set)    # (flow, state) pairs the walk reached
    known: list[str] = field(default_factory=list)                # apologies explained by a known bug

    def run(self, coro):  # type: ignore[no-untyped-def]
        return self.loop.run_until_complete(coro)


def _photo_bytes() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 24), (200, 30, 30)).save(buf, "JPEG")
    return buf.getvalue()


def _equipment_demo(s: Session, school: School) -> None:
    equipment_store.demo_seed(s, school)


def _seed(rt: Runtime) -> dict[str, object]:
    data_dir = rt.settings.data_dir

    def go(s):  # type: ignore[no-untyped-def]
        name = create_demo_school(s, extra_seeders=[accounts.demo_seed, articles.demo_seed, incidents.demo_seed,
                                                    _equipment_demo,
                                                    partial(seed_cameras, data_dir=data_dir)])
        school = s.exec(select(School).where(School.name == name)).one()
        people = list(s.exec(select(Person).where(Person.school_id == school.id)).all())
        for p in people:
            link_identity(s, person=p, channel="test", external_id=f"t{p.id}", chat_id=f"t{p.id}")
        other = make_school(s, "Trường Mầm non Hoa Sen", short_name="MN Hoa Sen")
        make_person(s, other, "Lê Thị Hoa", ["principal"], phone="+84911111111", link="o1")
        make_person(s, other, "Phạm Văn Nam", ["teacher", "it", "equipment"], phone="+84911111112", link="o2")
        make_person(s, school, "Hồ Văn Cũ", ["teacher", "principal"], phone="+84911111113", link="gone",
                    status=PersonStatus.LEFT)
        # someone holding every role: every handler's role gate lets them through to its own checks
        make_person(s, school, "Đỗ Văn Toàn", [r.value for r in Role], phone="+84911111114", link="all")
        by_role = {r: p.id for p in people for r in p.roles}
        return {"by_role": by_role, "people": [(p.id, p.full_name, p.phone) for p in people]}

    return rt.db.run_sync(go)


@pytest.fixture
def world(settings) -> Iterator[World]:  # type: ignore[no-untyped-def]
    loop = asyncio.new_event_loop()
    clock = FixedClock()
    rt = Runtime(settings.model_copy(update={"web_chat_enabled": False, "telegram_bot_token": ""}), clock=clock)
    ch = RecordingChannel()
    rt.sender.register(ch)
    loop.run_until_complete(asyncio.to_thread(rt.db.migrate))
    seeded = _seed(rt)
    by_role: dict[str, int] = seeded["by_role"]  # type: ignore[assignment]
    people: list[tuple[int, str, str]] = seeded["people"]  # type: ignore[assignment]

    # Approvals waiting in several shapes, so that cards (and their ap: payloads) exist from the start.
    def ask(stages: list[approvals.StageSpec]):  # type: ignore[no-untyped-def]
        def fn(ctx):  # type: ignore[no-untyped-def]
            approvals.request(ctx, kind="test", subject="test:hostile", title="Footage request",
                              fields=[("Camera", "Cổng chính")], stages=stages)
        return fn

    for stages in ([approvals.StageSpec(role="principal")],
                   [approvals.StageSpec(role="vice_principal"), approvals.StageSpec(role="principal")],
                   [approvals.StageSpec(person_id=by_role["it"])]):
        loop.run_until_complete(rt.dispatcher.run_unit(ask(stages), person_id=by_role["teacher"]))

    reg = rt.registry
    files = [rt.media.store_bytes(_photo_bytes(), kind="photo", mime="image/jpeg", file_name="a.jpg"),
             rt.media.store_bytes(b"%PDF-1.4 hostile", kind="document", mime="application/pdf", file_name="x.pdf"),
             rt.media.failed(kind="video", error="too_big", size=80 * 1024 * 1024, file_name="big.mp4",
                             mime="video/mp4")]
    flows_vi = [VI.t(f.title) for f in reg.flows.values()]
    texts = ["8h30", "8:00", "08.30", "7 giờ", "21/11", "23/11/2026", "hôm nay", "hôm qua", "từ 24/11 đến 28/11",
             "1", "2", "3", "5", "0", "-1", "999999", "5 phút", "cổng", "Cổng chính", "CONG CHINH", "Tổ 1",
             "van.nt@ngocthuy.edu.vn", "khong-phai-email", "Máy chiếu", "Phòng 201", "Màn hình bị vỡ",
             "https://ngocthuy.edu.vn/tin-tuc/1", "10/2026", "HK1 2026-2027", "có", "không", "0912 345 678",
             "K7QX-M2PD-9TRA", "huỷ", "menu", "vi", "en", *flows_vi, *[n for _, n, _ in people[:5]],
             "<b>đậm", "</i>", "a & b < c", "<script>alert(1)</script>", "&lt;b&gt;", "<a href='x'>y</a>",
             "Tổ <1>", "8h30 <i>", "²", "١٢", "３", "½", "99999999999", "9" * 3999, "1e3", "-0"]
    texts += [unicodedata.normalize("NFD", t) for t in texts[:12]]
    w = World(rt=rt, ch=ch, loop=loop, clock=clock,
              users=[f"t{pid}" for pid, _, _ in people] + ["o1", "o2", "gone", "all", "x1", "x2"],
              phones=[p for _, _, p in people if p] + ["+84911111111", "0999", "+1 202 555 0100", "", "abc"],
              files=files, commands=sorted(reg._by_command) + ["start"], prefixes=sorted(reg._by_prefix) + ["c"],
              texts=texts)
    _harvest(w, ch.sent)
    try:
        yield w
    finally:
        loop.run_until_complete(rt.stop())  # background jobs, the outbox clean-up, then the connections
        loop.close()


def _harvest(w: World, outs: list[Outbound]) -> None:
    for out in outs:
        payloads = [b.payload for row in out.reply.buttons for b in row]
        if payloads:
            w.latest[out.chat_id] = payloads
            w.seen.setdefault(out.chat_id, []).extend(payloads)


# -- drawing events ---------------------------------------------------------------------------
# An event is drawn as a fixed-shape tuple and only then read against the current state (which buttons
# each chat was shown), so Hypothesis sees the same kind of data whatever the bot answered.
KINDS = (["own_tap"] * 12 + ["stale_tap"] * 2 + ["other_tap"] * 3 + ["command"] * 4 + ["text"] * 6
         + ["hostile_text"] * 2 + ["forged"] * 3 + ["contact", "location", "file", "empty", "duplicate", "huge",
                                                     "unknown_command", "pause"])
junk = st.lists(st.sampled_from(list("0123456789:abcokn-_") + ["²", "١", "٣", "9" * 11, "0" * 20, "ạ"]),
                max_size=12).map("".join)
EVENT = st.tuples(st.integers(0, 10**6), st.sampled_from(KINDS), st.integers(0, 10**6), st.integers(0, 10**6),
                  st.text(max_size=120), st.lists(junk, max_size=3).map(":".join), st.booleans())
ARGS = ["", "", "abc", "K7QX-M2PD-9TRA", "12"]
CAPTIONS = [None, "ảnh hiện trường", "8h30"]
LENGTHS = [3999, 4000, 4001, 20_000]


def _pick(items: list[str], i: int) -> str:
    return items[i % len(items)]


def _event(ev: tuple[int, str, int, int, str, str, bool], w: World, cast: list[str]) -> Inbound | None:
    u, kind, i, j, text, tail, flag = ev
    user = _pick(cast, u)
    base: dict[str, Any] = {"channel": "test", "user_id": user, "chat_id": user, "update_key": f"h{next(_keys)}",
            "display_name": "Người thử", "at": w.clock.now()}
    if kind == "own_tap" and w.latest.get(user):
        return Inbound(payload=_pick(w.latest[user], i), **base)
    if kind == "stale_tap" and w.seen.get(user):
        return Inbound(payload=_pick(w.seen[user], i), **base)
    if kind == "other_tap":
        chats = sorted(c for c in w.seen if c != user and w.seen[c])
        if chats:
            return Inbound(payload=_pick(w.seen[_pick(chats, i)], j), **base)
    if kind == "command":
        return Inbound(command=_pick(w.commands, i), args=text if flag else _pick(ARGS, j), **base)
    if kind == "unknown_command":
        return Inbound(command=("x" + "".join(c for c in text if c.isascii() and c.isalnum()))[:32].lower(), **base)
    if kind == "forged":
        payload = f"{_pick(w.prefixes, i)}:{tail}"
        while len(payload.encode()) > 64:
            payload = payload[:-1]
        return Inbound(payload=payload, **base)
    if kind == "text":
        return Inbound(text=_pick(w.texts, i), **base)
    if kind == "hostile_text":
        return Inbound(text=text or None, **base)
    if kind == "huge":
        return Inbound(text="ạ" * LENGTHS[i % len(LENGTHS)], **base)
    if kind == "contact":
        owner = [user, user, "someone-else", None][j % 4]
        return Inbound(contact=Contact(phone=_pick(w.phones, i), user_id=owner, first_name="A"), forwarded=flag,
                       **base)
    if kind == "location":
        return Inbound(location=(21.0285, 105.8542), **base)
    if kind == "file":
        return Inbound(files=(w.files[i % len(w.files)],), text=CAPTIONS[j % len(CAPTIONS)], **base)
    if kind == "duplicate" and user in w.last_event:
        return w.last_event[user]  # the same update delivered twice
    if kind == "pause":
        w.clock.advance(hours=25 if flag else 0.5)
        return None
    return Inbound(**base)  # an empty event (a sticker, a service message)


def _conversation(w: World, chat: str) -> tuple[str | None, str | None]:
    def go(s):  # type: ignore[no-untyped-def]
        conv = s.exec(select(Conversation).where(Conversation.channel == "test", Conversation.chat_id == chat)).first()
        return (conv.flow, conv.state) if conv is not None else (None, None)
    return w.rt.db.run_sync(go)


def _odd_number(s: str) -> bool:
    """A "digit" int() refuses or reads differently (``²``, ``١``), or an id beyond a database integer."""
    return any(c.isdigit() and not c.isascii() for c in s) or re.search(r"\d{11,}", s) is not None


def _known_bug(msg: Inbound, flow: str | None) -> str | None:
    """The strict-xfail bug (tests below) that explains an apology for this event, if any: a payload or a
    typed answer carrying an odd number, where such a bug is known and not fixed yet."""
    if msg.text and flow == "equipment_use" and _odd_number(msg.text) and KNOWN_NUMERIC:
        return KNOWN_NUMERIC["equipment_use qty"]
    if not msg.payload or not _odd_number(msg.payload):
        return None
    prefix = msg.payload.split(":", 1)[0]
    if prefix in KNOWN:
        return KNOWN[prefix]
    if prefix == "c" and flow in KNOWN_STEPS:
        return KNOWN_STEPS[flow]
    return None


async def _deliver(w: World, msg: Inbound) -> None:
    duplicate = w.last_event.get(msg.user_id) is msg
    flow_before, _ = await asyncio.to_thread(_conversation, w, msg.chat_id)
    before = len(w.ch.sent)
    outs = await w.rt.dispatcher.handle(msg)
    await w.rt.dispatcher.drain()
    sent = w.ch.sent[before:]
    flow, state = await asyncio.to_thread(_conversation, w, msg.chat_id)
    if flow and state:
        w.states.add((flow, state))
    what = f"{msg.user_id}: text={msg.text!r:.80} command={msg.command!r} payload={msg.payload!r} " \
           f"contact={msg.contact!r} files={len(msg.files)} location={msg.location}"
    w.log.append(what)
    if duplicate:
        assert outs == [], f"a duplicate delivery was answered again: {what}"
    linked = await w.rt.db.run(lambda s: {i.chat_id for i in s.exec(select(ChannelIdentity).where(
        ChannelIdentity.channel == "test", ChannelIdentity.active == True)).all()})  # noqa: E712
    for out in sent:
        if APOLOGY in out.reply.text and (reason := _known_bug(msg, flow_before)) is not None:
            w.known.append(reason)
            continue
        assert APOLOGY not in out.reply.text, "the dispatcher swallowed an exception on:\n" + "\n".join(w.log[-8:])
        assert "Traceback" not in out.reply.text and "Exception" not in out.reply.text, what
        try:  # safe HTML, as Telegram will parse it: what people typed is escaped, tags are balanced
            parse_html(out.reply.text)
        except BotApiError as exc:
            raise AssertionError(f"{exc} in a reply to {what}:\n{out.reply.text[:500]}") from None
        assert out.chat_id == msg.chat_id or out.chat_id in linked, (out.chat_id, what)
    _harvest(w, sent)
    w.last_event[msg.user_id] = msg


def _check_state(w: World) -> None:
    reg = w.rt.registry

    def go(s):  # type: ignore[no-untyped-def]
        for conv in s.exec(select(Conversation)).all():
            if conv.flow is None:
                assert conv.state is None, (conv.chat_id, conv.state)
                continue
            flow = reg.flows.get(conv.flow)
            assert flow is not None, (conv.chat_id, conv.flow)
            assert conv.state in flow.states, (conv.chat_id, conv.flow, conv.state)
        for stage in s.exec(select(ApprovalStage)).all():
            ap = s.get(Approval, stage.approval_id)
            assert ap is not None
            if stage.status not in ("approved", "rejected"):
                continue
            assert stage.decided_by is not None
            who = s.get(Person, stage.decided_by)
            assert who is not None and who.school_id == ap.school_id, (ap.id, stage.idx, stage.decided_by)
            if stage.person_id is not None:
                entitled = who.id == stage.person_id
            else:
                entitled = (who.id in (stage.extra_ids or []) or (stage.role is not None and stage.role in who.roles)
                            or (stage.by_delegation and who.id == stage.delegate_id))
            assert entitled, f"approval {ap.id} stage {stage.idx} decided by person {who.id} ({who.roles})"
        for ap in s.exec(select(Approval)).all():
            statuses = [st_.status for st_ in s.exec(select(ApprovalStage).where(
                ApprovalStage.approval_id == ap.id)).all()]
            if ap.status == "approved":
                assert all(x in ("approved", "skipped") for x in statuses), (ap.id, statuses)
            if ap.status == "rejected":
                assert "rejected" in statuses, (ap.id, statuses)
            if ap.status == "pending":
                assert statuses.count("pending") == 1, (ap.id, statuses)
        result = audit.verify(s)
        assert result.ok, result

    w.rt.db.run_sync(go)


def test_random_event_sequences_never_break_the_dispatcher(world: World, db_url: str) -> None:
    hunt = int(os.environ.get("HOSTILE_EXAMPLES", 0))
    examples = hunt or (60 if db_url.startswith("sqlite") else 25)

    # In the suite the walk is derandomized (the same events every run, so a red run always means a bug and
    # can be replayed); HOSTILE_EXAMPLES=N hunts with fresh random walks.
    @settings(max_examples=examples, deadline=None, derandomize=not hunt, database=None,
              suppress_health_check=list(HealthCheck))
    @given(cast=st.lists(st.integers(0, 10**6), min_size=1, max_size=3),
           events=st.lists(EVENT, min_size=5, max_size=40))
    def walk(cast: list[int], events: list[tuple[int, str, int, int, str, str, bool]]) -> None:
        world.log.clear()
        people = [_pick(world.users, c) for c in cast]  # a few people per example, so workflows get deep
        for ev in events:
            msg = _event(ev, world, people)
            if msg is not None:
                world.run(_deliver(world, msg))
        _check_state(world)

    walk()
    # the walk really went places: many workflow steps were reached, things were decided and recorded
    assert world.rt.dispatcher.processed > examples
    assert len(world.states) >= 10, sorted(world.states)
    assert world.rt.db.run_sync(lambda s: len(list(audit.events(s)))) > 5


# -- the forged-payload matrix: every namespace, ids no database can hold ------------------------
# "²" passes str.isdigit() but int() refuses it; 11 digits pass a "len <= 12" check but not PostgreSQL's
# integer; 20 digits do not fit SQLite's either.
ODD_IDS = ("²", "99999999999", "99999999999999999999")
ACTIONS = ("ok", "no", "note", "keep", "retry", "ack", "done", "up", "cam", "fwd", "pub", "1", "tb1")
# Namespaces whose handler still lets such an id reach int() or the database would be listed here as
# strict xfails; every handler now reads ids with bot.text.parse_id, so none is.
KNOWN: dict[str, str] = {}


def _prefixes() -> list[str]:
    from bot.core import load_registry

    return sorted(load_registry()._by_prefix)


def _chats_by_role(w: World) -> dict[str, str]:
    """role → the chat of the demo school's person holding it (first one by id)."""
    def go(s):  # type: ignore[no-untyped-def]
        out: dict[str, str] = {}
        for ident in s.exec(select(ChannelIdentity).where(ChannelIdentity.channel == "test")
                            .order_by(col(ChannelIdentity.person_id))).all():
            p = s.get(Person, ident.person_id)
            if ident.chat_id.startswith("t") and p is not None and p.status == PersonStatus.ACTIVE:
                for r in p.roles:
                    out.setdefault(r, ident.chat_id)
        return out
    return w.rt.db.run_sync(go)


async def _tap_all(w: World, user: str, payloads: list[str]) -> list[str]:
    """Send each payload from ``user``; return those answered with the apology."""
    failures = []
    for p in payloads:
        before = len(w.ch.sent)
        await w.rt.dispatcher.handle(Inbound(channel="test", user_id=user, chat_id=user,
                                             update_key=f"m{next(_keys)}", payload=p))
        if any(APOLOGY in o.reply.text for o in w.ch.sent[before:]):
            failures.append(p)
    return failures


@pytest.mark.parametrize("prefix", [pytest.param(p, id=p, marks=[pytest.mark.xfail(strict=True, reason=KNOWN[p])]
                                                 if p in KNOWN else []) for p in _prefixes()])
def test_forged_payloads_with_impossible_ids(world: World, prefix: str) -> None:
    payloads = [f"{prefix}:{i}:{a}" for i in ODD_IDS for a in ACTIONS]
    payloads += [f"{prefix}:{k}:{i}" for i in ODD_IDS for k in ("g", "m", "v")] + [f"{prefix}:{i}" for i in ODD_IDS]
    payloads = [p for p in payloads if len(p.encode()) <= 64]
    failures = world.run(_tap_all(world, "all", payloads))  # "all" holds every role
    failures += world.run(_tap_all(world, "o2", payloads[:8]))  # someone of another school
    assert not failures, failures[:12]


# Steps that read an index or an id from a ``c:`` value: the flow is started by its menu button, then its
# first step (and the step after the first offered button) gets the impossible values.
STEP_CASES = {
    "footage": ["cam"], "delegation": ["p", "end"], "profile": ["u"], "calendar": ["wd", "r"],
    "equipment": ["i", "o"], "equipment_report": ["p"], "outage": ["s"], "accounts": ["a"],
    "accounts_admin": ["p"], "accounts_staff": ["p"], "equipment_use": ["k", "u"], "incident": ["cam", "a"],
    "articles": ["r", "u"],
}
KNOWN_STEPS: dict[str, str] = {}


@pytest.mark.parametrize("flow", [pytest.param(f, id=f, marks=[pytest.mark.xfail(strict=True, reason=KNOWN_STEPS[f])]
                                               if f in KNOWN_STEPS else []) for f in STEP_CASES])
def test_step_buttons_with_impossible_values(world: World, flow: str) -> None:
    # the person holding every role, except where the flow needs someone with data of their own
    user = _chats_by_role(world)["teacher"] if flow == "accounts" else "all"
    failures: list[str] = []

    async def start() -> None:
        await world.rt.dispatcher.handle(Inbound(channel="test", user_id=user, chat_id=user,
                                                 update_key=f"s{next(_keys)}", payload=f"m:{flow}"))

    async def go() -> None:
        for pre in STEP_CASES[flow]:
            for v in ODD_IDS:
                await start()
                failures.extend(await _tap_all(world, user, [f"c:{pre}{v}"]))
                await start()
                before = len(world.ch.sent)
                offered = [b.payload for o in world.ch.sent[before - 3:] for row in o.reply.buttons for b in row
                           if o.chat_id == user and b.payload.startswith("c:")]
                if offered:  # one step deeper
                    await world.rt.dispatcher.handle(Inbound(channel="test", user_id=user, chat_id=user,
                                                             update_key=f"s{next(_keys)}", payload=offered[0]))
                    failures.extend(await _tap_all(world, user, [f"c:{pre}{v}"]))

    world.run(go())
    assert not failures, sorted(set(failures))


# Steps that read a number (or a date, an address) from typed text, reached by their real path (found by
# exploring the demo school's workflows), then sent look-alike numbers: non-decimal digits, other scripts,
# signs, 11 and 3,999 digits, markup.
NUMERIC_PROBES = ("²", "١٢", "３", "½", "-1", "0", "99999999999", "9" * 3999, "1e3", "<b>2</b>")
NUMERIC_STEPS = {
    "footage duration": ("footage", ["c:cam1", "c:today", "t:8h00"], "duration"),
    "equipment quantity": ("equipment", ["t:2", "c:new"], "quantity"),
    "equipment_use qty": ("equipment_use", ["c:borrow", "t:2", "t:8h00"], "qty"),
    "calendar day": ("calendar", ["c:settings", "c:r:footage_review", "c:day"], "day"),
    "calendar hour": ("calendar", ["c:settings", "c:r:footage_review", "c:hour"], "hour"),
    "delegation range": ("delegation", ["c:p2"], "range"),
    "profile email": ("profile", ["c:email"], "email"),
    "equipment_repair desc": ("equipment_repair", ["t:2", "c:repair"], "desc"),
}
KNOWN_NUMERIC: dict[str, str] = {}


@pytest.mark.parametrize("case", [pytest.param(c, id=c.replace(" ", "-"), marks=[
    pytest.mark.xfail(strict=True, reason=KNOWN_NUMERIC[c])] if c in KNOWN_NUMERIC else []) for c in NUMERIC_STEPS])
def test_typed_look_alike_numbers(world: World, case: str) -> None:
    flow, path, state = NUMERIC_STEPS[case]
    user = "all"

    async def send(**kw: str) -> None:
        await world.rt.dispatcher.handle(Inbound(channel="test", user_id=user, chat_id=user,
                                                 update_key=f"n{next(_keys)}", **kw))  # type: ignore[arg-type]

    async def reach() -> None:
        await send(command="huy")
        await send(payload=f"m:{flow}")
        for p in path:
            await (send(text=p[2:]) if p.startswith("t:") else send(payload=p))
        assert _conversation(world, user) == (flow, state), f"the path {path} no longer reaches {flow}/{state}"

    async def go() -> list[str]:
        failures = []
        await reach()
        for probe in NUMERIC_PROBES:
            before = len(world.ch.sent)
            await send(text=probe)
            if any(APOLOGY in o.reply.text for o in world.ch.sent[before:]):
                failures.append(probe[:12])
            if _conversation(world, user) != (flow, state):
                await reach()
        return failures

    assert world.run(go()) == []


def test_harness_sees_the_apology(world: World) -> None:
    """The checks above would notice a swallowed exception: a step that raises is answered with
    the apology, which this harness recognises."""
    from bot.core import Flow, Reply, Step

    def boom(ctx, msg):  # type: ignore[no-untyped-def]
        raise RuntimeError("boom")

    reg = world.rt.registry
    reg.flows["boom"] = Flow(name="boom", title="Boom", start=lambda ctx: Step.goto("s", Reply("?")),
                             states={"s": boom}, in_menu=False)
    user = world.users[0]
    world.run(world.rt.dispatcher.handle(Inbound(channel="test", user_id=user, chat_id=user,
                                                 update_key=f"b{next(_keys)}", payload="m:boom")))
    fails = world.run(_tap_all(world, user, ["c:x"]))
    del reg.flows["boom"]
    assert fails == ["c:x"]


def test_harness_sees_inconsistent_state(world: World) -> None:
    """The end-of-example checks would notice a stage decided by someone without the right, and a
    conversation in a state its flow does not have."""
    _check_state(world)  # the seeded world is consistent

    def forge_decision(s: Session) -> None:
        stage = s.exec(select(ApprovalStage).where(ApprovalStage.role == "principal")).first()
        teacher = s.exec(select(Person).where(Person.full_name == "Nguyễn Thị Vân")).one()
        assert stage is not None
        stage.status, stage.decided_by = "approved", teacher.id
        s.add(stage)

    world.rt.db.run_sync(forge_decision)
    with pytest.raises(AssertionError, match="decided by person"):
        _check_state(world)

    def undo_and_break_conversation(s: Session) -> None:
        stage = s.exec(select(ApprovalStage).where(ApprovalStage.status == "approved")).one()
        stage.status, stage.decided_by = "pending", None
        s.add(stage)
        s.add(Conversation(channel="test", chat_id="nowhere", flow="profile", state="no-such-state"))

    world.rt.db.run_sync(undo_and_break_conversation)
    with pytest.raises(AssertionError, match="no-such-state"):
        _check_state(world)
