"""The compliance calendar: schedules, idempotent notices across restarts, quiet hours, working
days, ``/lich`` through the real python-telegram-bot, the fan-out queue (429 for one chat, the
pace, Zalo's closed window) and one scheduler per PostgreSQL database across processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time as time_mod
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import select

from bot.core import Reply
from bot.engine.reminders import (
    DailyAt,
    EveryNDays,
    Monthly,
    Quarterly,
    Rule,
    RuleRun,
    Scheduler,
    Weekly,
    in_quiet_hours,
    queue_notice,
)
from bot.runtime import Runtime
from storage.models import ChannelIdentity, Notice, RuleSetting, School
from tests.fakes.tg_harness import payloads
from tests.helpers import RecordingChannel, inbound, make_person, make_school

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
NO_OFF: frozenset[date] = frozenset()


def local(*a: int) -> datetime:
    return datetime(*a, tzinfo=TZ)


# -- schedules ------------------------------------------------------------------------------------
def test_monthly_occurrence_is_current_only_in_its_month() -> None:
    m = Monthly(day=20, hour=8)
    p = dict(m.defaults)
    assert m.occurrence(local(2026, 11, 19, 23), p, NO_OFF) is None
    assert m.occurrence(local(2026, 11, 20, 8), p, NO_OFF).period == "2026-11"
    assert m.occurrence(local(2026, 11, 30, 23), p, NO_OFF).period == "2026-11"
    assert m.occurrence(local(2026, 12, 1, 9), p, NO_OFF) is None  # last month's no longer matters
    assert m.next_at(local(2026, 12, 25, 9), p, NO_OFF) == local(2027, 1, 20, 8)
    # day 31 in February is its last day; 2026-12-20 is a Sunday: moved to Monday the 21st
    assert Monthly(day=31, working_days=False).occurrence(local(2027, 2, 28, 9), {"day": 31, "hour": 8},
                                                          NO_OFF).at.day == 28
    assert m.occurrence(local(2026, 12, 20, 9), p, NO_OFF) is None
    assert m.occurrence(local(2026, 12, 21, 8), p, NO_OFF).at == local(2026, 12, 21, 8)


def test_working_day_shift_skips_tet_2027() -> None:
    # Tết Nguyên đán 2027 falls on Saturday 6 February; the package lists the days off around it.
    import holidays

    vn = holidays.country_holidays("VN", years=2027)
    feb = sorted(d for d in vn if d.month == 2)
    assert date(2027, 2, 6) in feb
    m = Monthly(day=8, hour=8)
    occ = m.next_at(local(2027, 1, 20, 9), dict(m.defaults), NO_OFF)
    first_working = date(2027, 2, 8)
    while first_working in vn or first_working.weekday() >= 5:
        first_working += timedelta(days=1)
    assert occ.date() == first_working and occ.date() > date(2027, 2, 8) - timedelta(days=1)


def test_every_15_days_weekly_quarterly_daily() -> None:
    e = EveryNDays(days=15, hour=8, working_days=False)
    a = e.occurrence(local(2026, 11, 22, 9), dict(e.defaults), NO_OFF)
    b = e.occurrence(local(2026, 11, 30, 23), dict(e.defaults), NO_OFF)
    c = e.occurrence(local(2026, 12, 1, 8), dict(e.defaults), NO_OFF)
    assert a is not None and b is not None and c is not None
    assert a.period == b.period and c.period != a.period
    assert (date.fromisoformat(c.period) - date.fromisoformat(a.period)).days == 15
    w = Weekly(weekday=0, hour=8)
    assert w.occurrence(local(2026, 11, 23, 7), dict(w.defaults), NO_OFF) is None
    assert w.occurrence(local(2026, 11, 29, 22), dict(w.defaults), NO_OFF).period == "2026-W48"
    q = Quarterly(day=1, hour=8)
    assert q.occurrence(local(2026, 11, 22, 9), dict(q.defaults), NO_OFF).period == "2026-Q4"
    assert q.next_at(local(2026, 11, 22, 9), dict(q.defaults), NO_OFF).date() == date(2027, 1, 4)  # 1–3 Jan off
    d = DailyAt(hours=(8, 10, 14, 16))
    assert d.occurrence(local(2026, 11, 23, 7, 59), dict(d.defaults), NO_OFF) is None
    assert d.occurrence(local(2026, 11, 23, 11), dict(d.defaults), NO_OFF).period == "2026-11-23T10"
    assert d.occurrence(local(2026, 11, 22, 11), dict(d.defaults), NO_OFF) is None  # Sunday
    assert d.occurrence(local(2026, 11, 23, 11), dict(d.defaults), frozenset({date(2026, 11, 23)})) is None


def test_quiet_hours_wrap_around_midnight() -> None:
    w = (time(21, 0), time(6, 30))
    assert in_quiet_hours(w, time(21, 0)) and in_quiet_hours(w, time(2, 0)) and in_quiet_hours(w, time(6, 29))
    assert not in_quiet_hours(w, time(6, 30)) and not in_quiet_hours(w, time(20, 59))
    assert not in_quiet_hours(None, time(2, 0))
    assert in_quiet_hours((time(12, 0), time(13, 0)), time(12, 30))


# -- the engine -----------------------------------------------------------------------------------
SENT: list[str] = []


def _monthly_fn(run: RuleRun) -> None:
    for p in run.recipients():
        run.notify(p, lambda tr: Reply(tr.t("OK.") + " monthly-test"))


TEST_RULE = Rule(key="test_monthly", title="Test", schedule=Monthly(day=20, hour=8), fn=_monthly_fn,
                 roles=("teacher",))


@pytest.fixture
def rt(runtime, clock):
    runtime.registry.add_rule(TEST_RULE)
    ch = runtime.test_channel

    def seed(s):
        school = make_school(s)
        return {"school": school.id,
                "t1": make_person(s, school, "Nguyễn Thị Vân", ["teacher"], link="t1").id,
                "t2": make_person(s, school, "Lê Thị Hoa", ["teacher"], link="t2").id,
                "p": make_person(s, school, "Trần Văn Đức", ["principal"], link="p1").id}

    ids = runtime.db.run_sync(seed)
    return runtime, ch, ids, clock


async def tick(runtime: Runtime) -> None:
    sched = Scheduler(runtime)
    try:
        await sched.tick()
    finally:
        sched.leadership.release()
    await runtime.dispatcher.drain()


def _monthly(ch: RecordingChannel) -> list[str]:
    return [o.chat_id for o in ch.sent if "monthly-test" in o.reply.text]


async def test_notice_missed_while_down_is_sent_once_at_start(rt) -> None:
    runtime, ch, ids, clock = rt
    # The bot was down on the 20th at 08:00; it starts on Monday the 23rd at 09:00: sent once now.
    await tick(runtime)
    assert sorted(_monthly(ch)) == ["t1", "t2"]
    await tick(runtime)
    # a second process on the same database after a crash: the keys are in the database
    other = Runtime(runtime.settings, clock=clock, db=runtime.db, registry=runtime.registry)
    ch2 = RecordingChannel()
    other.sender.register(ch2)
    await tick(other)
    assert sorted(_monthly(ch)) == ["t1", "t2"] and _monthly(ch2) == []
    keys = runtime.db.run_sync(lambda s: [n.key for n in s.exec(select(Notice).where(Notice.rule == "test_monthly"))])
    assert sorted(keys) == sorted([f"test_monthly|{ids['t1']}|2026-11", f"test_monthly|{ids['t2']}|2026-11",
                                   "test_monthly|-|done:2026-11"])


async def test_a_period_that_passed_while_down_is_not_sent_late(rt) -> None:
    runtime, ch, ids, clock = rt
    clock.t = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)  # 09:00 on 1 December: November's nudge is moot
    await tick(runtime)
    assert _monthly(ch) == []


async def test_quiet_hours_hold_then_send(rt) -> None:
    runtime, ch, ids, clock = rt
    clock.t = datetime(2026, 11, 22, 15, 0, tzinfo=UTC)  # Sunday 22:00
    await tick(runtime)
    assert _monthly(ch) == []
    clock.t = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)  # Monday 07:00
    await tick(runtime)
    assert sorted(_monthly(ch)) == ["t1", "t2"]


async def test_switched_off_and_tuned_per_school(rt) -> None:
    runtime, ch, ids, clock = rt

    def off(s):
        s.add(RuleSetting(school_id=ids["school"], rule="test_monthly", enabled=False, params={}))
    runtime.db.run_sync(off)
    await tick(runtime)
    assert _monthly(ch) == []

    def tuned(s):
        row = s.get(RuleSetting, (ids["school"], "test_monthly"))
        row.enabled, row.params = True, {"day": 25, "roles": ["principal"]}
        s.add(row)
    runtime.db.run_sync(tuned)
    await tick(runtime)
    assert _monthly(ch) == []  # due on the 25th now
    clock.advance(days=2)
    await tick(runtime)
    assert _monthly(ch) == ["p1"]


async def test_fan_out_429_for_one_chat_does_not_hold_the_others(rt) -> None:
    runtime, ch, ids, clock = rt
    calls: list[str] = []
    original = ch.send

    async def flaky(out):
        from bot.core import RetryLater

        calls.append(out.chat_id)
        if out.chat_id == "t1" and calls.count("t1") == 1:
            raise RetryLater(30)
        return await original(out)
    ch.send = flaky  # type: ignore[method-assign]

    def queue(ctx):
        from storage.models import Person

        for pid in (ids["t1"], ids["t2"], ids["p"]):
            queue_notice(ctx, rule="outage", person=ctx.session.get(Person, pid), period="outage:1",
                         make=lambda tr: Reply("fan-out-test"))
    await runtime.dispatcher.run_unit(queue)
    await runtime.dispatcher.drain()
    got = [o.chat_id for o in ch.sent if o.reply.text == "fan-out-test"]
    assert sorted(got) == ["p1", "t2"]
    row = runtime.db.run_sync(lambda s: s.exec(select(Notice).where(Notice.person_id == ids["t1"])).one())
    assert row.status == "queued" and row.not_before == clock.t + timedelta(seconds=30)
    await tick(runtime)
    assert [o.chat_id for o in ch.sent if o.reply.text == "fan-out-test"].count("t1") == 0  # still waiting
    clock.advance(seconds=31)
    await tick(runtime)
    await tick(runtime)
    got = [o.chat_id for o in ch.sent if o.reply.text == "fan-out-test"]
    assert sorted(got) == ["p1", "t1", "t2"]


async def test_fan_out_keeps_the_pace(rt) -> None:
    runtime, ch, ids, clock = rt
    runtime.fanout.rates["test"] = 20.0
    stamps: list[tuple[str, float]] = []
    original = ch.send

    async def timed(out):
        stamps.append((out.chat_id, time_mod.monotonic()))
        return await original(out)
    ch.send = timed  # type: ignore[method-assign]

    def seed(s):
        school = s.get(School, ids["school"])
        return [make_person(s, school, f"Người {i}", ["teacher"], link=f"x{i}").id for i in range(10)]
    people = runtime.db.run_sync(seed)

    def queue(ctx):
        from storage.models import Person

        for pid in people + [ids["t1"]]:
            queue_notice(ctx, rule="outage", person=ctx.session.get(Person, pid), period="o:1",
                         make=lambda tr: Reply("pace"))
        queue_notice(ctx, rule="outage", person=ctx.session.get(Person, ids["t1"]), period="o:2",
                     make=lambda tr: Reply("pace"))
    await runtime.dispatcher.run_unit(queue)
    await runtime.dispatcher.drain()
    assert len(stamps) == 12
    gaps = [b[1] - a[1] for a, b in zip(stamps, stamps[1:], strict=False)]
    assert min(gaps) >= 1 / 20 * 0.9  # never faster than the channel's rate
    t1 = [t for chat, t in stamps if chat == "t1"]
    assert len(t1) == 2 and t1[1] - t1[0] >= 0.95  # one message a second per chat


async def test_closed_zalo_window_holds_the_notice_until_they_write(runtime, clock) -> None:
    zalo = RecordingChannel(name="zalo_oa")
    runtime.sender.register(zalo)

    def seed(s):
        school = make_school(s)
        p = make_person(s, school, "Đỗ Thị Lan", ["teacher"])
        s.add(ChannelIdentity(person_id=p.id, channel="zalo_oa", external_id="z1", chat_id="z1",
                              last_seen_at=clock.t - timedelta(days=8)))
        return p.id
    pid = runtime.db.run_sync(seed)

    def queue(ctx):
        from storage.models import Person

        queue_notice(ctx, rule="outage", person=ctx.session.get(Person, pid), period="o:1",
                     make=lambda tr: Reply("held-test"))
    await runtime.dispatcher.run_unit(queue)
    await runtime.dispatcher.drain()
    assert zalo.sent == []
    assert runtime.db.run_sync(lambda s: s.exec(select(Notice)).one().status) == "held"
    await runtime.dispatcher.handle(inbound("z1", channel="zalo_oa", text="chào"))
    await runtime.dispatcher.drain()
    assert [o.reply.text for o in zalo.sent].count("held-test") == 1
    assert runtime.db.run_sync(lambda s: s.exec(select(Notice)).one().status) == "sent"


# -- /lich through the real python-telegram-bot -----------------------------------------------------
async def test_lich_shows_my_reminders_and_the_principal_tunes_the_calendar(telegram) -> None:
    tg = telegram
    people = tg.enrol({"the teacher": ("Nguyễn Thị Vân", ["teacher"]),
                       "the principal": ("Trần Văn Đức", ["principal"]),
                       "the IT officer": ("Lê Văn Tin", ["it"])})
    teacher, principal = people["the teacher"].chat, people["the principal"].chat
    await tg.command(teacher, "lich")
    mine = (await tg.last(teacher)).text
    assert "Quét" in mine or "mã độc" in mine  # the weekly malware scan concerns everyone
    assert "Kiểm tra tiến trình" not in mine and "⚙️" not in mine
    await tg.command(teacher, "lich", "cài đặt")
    assert "Hiệu trưởng" in (await tg.last(teacher)).text
    await tg.command(principal, "lich")
    assert "⚙️" in str(payloads(await tg.last(principal))) or "c:settings" in payloads(await tg.last(principal))
    await tg.tap(principal, "c:settings")
    assert "c:r:process_check" in payloads(await tg.last(principal))
    await tg.tap(principal, "c:r:process_check")
    await tg.tap(principal, "c:day")
    await tg.send(principal, "40")
    assert "28" in (await tg.last(principal)).text
    await tg.send(principal, "5")
    await tg.tap(principal, "c:hour")
    await tg.send(principal, "14h30")
    await tg.tap(principal, "c:roles")
    await tg.tap(principal, "c:ro:guard_lead")
    await tg.tap(principal, "c:ro-done")
    await tg.tap(principal, "c:back")
    await tg.tap(principal, "c:done")
    row = tg.seed(lambda s: s.get(RuleSetting, (1, "process_check")))
    assert row.params == {"day": 5, "hour": 14, "roles": ["it", "guard_lead"]}
    assert row.updated_by == people["the principal"].id
    # a teacher replaying the principal's buttons changes nothing
    await tg.tap(teacher, "c:r:process_check")
    row2 = tg.seed(lambda s: s.get(RuleSetting, (1, "process_check")))
    assert row2.params == row.params


# -- one scheduler per database ----------------------------------------------------------------------
LEADER_SCRIPT = textwrap.dedent("""
    import asyncio, sys
    from storage.db import Database
    from bot.engine.reminders import Leadership

    async def main():
        lead = Leadership(Database(sys.argv[1]))
        while True:
            print("leader" if await lead.check() else "follower", flush=True)
            await asyncio.sleep(0.2)

    asyncio.run(main())
""")


def _start(url: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", LEADER_SCRIPT, url], stdout=subprocess.PIPE, text=True,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _wait_for(proc: subprocess.Popen[str], word: str, timeout: float = 30.0) -> list[str]:
    seen: list[str] = []
    deadline = time_mod.monotonic() + timeout
    assert proc.stdout is not None
    while time_mod.monotonic() < deadline:
        line = proc.stdout.readline().strip()
        if not line:
            break
        seen.append(line)
        if line == word:
            return seen
    raise AssertionError(f"never saw {word!r}; saw {seen[-5:]}")


def test_two_processes_on_postgresql_one_schedules_and_the_other_takes_over(db, db_url) -> None:
    if db.is_sqlite:
        pytest.skip("SQLite serves one process; the advisory lock is PostgreSQL's")
    first = _start(db_url)
    second = None
    try:
        _wait_for(first, "leader")
        second = _start(db_url)
        seen = _wait_for(second, "follower")
        seen += [second.stdout.readline().strip() for _ in range(3)]  # type: ignore[union-attr]
        assert "leader" not in seen
        first.send_signal(signal.SIGKILL)  # the holder dies: the server releases its lock
        first.wait(10)
        _wait_for(second, "leader")
    finally:
        for p in (first, second):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(10)


def test_calendar_file_loads_all_or_nothing(sqlite_db, tmp_path) -> None:
    from bot.core import load_registry
    from bot.engine.calendar_file import load_file, render
    from bot.i18n import Translator

    tr = Translator("vi")
    reg = load_registry()
    sqlite_db.run_sync(lambda s: make_school(s))
    bad = tmp_path / "bad.toml"
    bad.write_text('[footage_review]\ndays = 200\n[nope]\nenabled = true\n[malware_scan]\nweekday = 2\n',
                   encoding="utf-8")
    ok, lines = load_file(sqlite_db, reg, bad, school_name=None, tr=tr)
    assert not ok and any("footage_review" in line and "90" in line for line in lines)
    assert any("nope" in line for line in lines)
    assert sqlite_db.run_sync(lambda s: s.exec(select(RuleSetting)).all()) == []  # nothing saved
    good = tmp_path / "lich.toml"
    good.write_text('[footage_review]\ndays = 10\nroles = ["guard_lead"]\n[mailbox_check]\nenabled = true\n'
                    'hours = [16, 8]\n', encoding="utf-8")
    ok, lines = load_file(sqlite_db, reg, good, school_name="Trường Tiểu học Ngọc Thụy", tr=tr)
    assert ok
    rows = {r.rule: r for r in sqlite_db.run_sync(lambda s: s.exec(select(RuleSetting)).all())}
    assert rows["footage_review"].params == {"days": 10, "roles": ["guard_lead"]}
    assert rows["mailbox_check"].enabled and rows["mailbox_check"].params == {"hours": [8, 16]}
    ok, lines = render(sqlite_db, reg, school_name=None, tr=tr)
    assert ok and any("footage_review" in line and "10 ngày" in line for line in lines)


def test_calendar_command_end_to_end(tmp_path) -> None:
    env = {**os.environ, "DATA_DIR": str(tmp_path / "data"), "DATABASE_URL": f"sqlite:///{tmp_path / 'c.db'}"}
    env = {k: v for k, v in env.items() if not k.startswith(("TELEGRAM_", "ZALO_"))}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run([sys.executable, "main.py", "demo", "--no-serve", "--no-recordings"], cwd=root, env=env,
                   check=True, capture_output=True, timeout=120)
    f = tmp_path / "lich.toml"
    f.write_text("[process_check]\nday = 3\n", encoding="utf-8")
    out = subprocess.run([sys.executable, "main.py", "calendar", "--load", str(f)], cwd=root, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "process_check" in out.stdout and "ngày 3" in out.stdout
