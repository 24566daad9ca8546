"""“Chạy ngay”: a reminder rule's occurrence of this period, on demand, under the scheduler's own
idempotency keys — sent once, never again by a second request or by the scheduled tick of the same
period; the next period still runs. Through the real runtime (dispatcher, fan-out, recording
channel) and the test clock, on SQLite and PostgreSQL; and ``main.py calendar --run-now``."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime

import pytest
from sqlmodel import select

from bot.core import Reply
from bot.engine.calendar_file import render
from bot.engine.calendar_file import run_now as cli_run_now
from bot.engine.reminders import Monthly, Rule, RuleRun, RunNowStatus, Scheduler, rule_status, run_now
from bot.i18n import Translator
from bot.runtime import Runtime
from storage.models import AuditEvent, Notice, RuleSetting
from tests.helpers import make_person, make_school

VI = Translator("vi", "Asia/Ho_Chi_Minh")


def _fn(run: RuleRun) -> None:
    for p in run.recipients():
        run.notify(p, lambda tr: Reply(f"run-now-test {run.rule.key} {run.period}"))


#: due on the 25th at 08:00; the test clock starts on Monday 23 November 2026, 09:00 in Hà Nội
LATER = Rule(key="t_later", title="Test", schedule=Monthly(day=25, hour=8), fn=_fn, roles=("teacher",))
#: due on the 20th: already due (and not yet sent) when the clock starts
DUE = Rule(key="t_due", title="Test", schedule=Monthly(day=20, hour=8), fn=_fn, roles=("teacher",))
#: nobody holds the role at first
NOBODY = Rule(key="t_nobody", title="Test", schedule=Monthly(day=25, hour=8), fn=_fn, roles=("accountant",))


@pytest.fixture
def rt(runtime, clock):
    for rule in (LATER, DUE, NOBODY):
        runtime.registry.add_rule(rule)

    def seed(s):
        school = make_school(s)
        return {"school": school.id,
                "t1": make_person(s, school, "Nguyễn Thị Vân", ["teacher"], link="t1").id,
                "t2": make_person(s, school, "Lê Thị Hoa", ["teacher"], link="t2").id,
                "p": make_person(s, school, "Trần Văn Đức", ["principal"], link="p1").id}

    return runtime, runtime.test_channel, runtime.db.run_sync(seed), clock


async def tick(runtime: Runtime) -> None:
    sched = Scheduler(runtime)
    try:
        await sched.tick()
    finally:
        sched.leadership.release()
    await runtime.dispatcher.drain()


async def now(runtime: Runtime, school: int, key: str, person: int | None = None):
    result = await run_now(runtime.dispatcher, school, key, person_id=person)
    await runtime.dispatcher.drain()  # the fan-out sends what the unit queued
    return result


def sent(ch, rule: str, period: str) -> list[str]:
    return sorted(o.chat_id for o in ch.sent if o.reply.text == f"run-now-test {rule} {period}")


async def test_run_now_sends_the_period_once_and_the_scheduled_tick_sends_nothing_more(rt) -> None:
    runtime, ch, ids, clock = rt
    r = await now(runtime, ids["school"], "t_later", ids["p"])
    assert r.status == RunNowStatus.SENT and r.period == "2026-11" and (r.sent, r.people) == (2, 2)
    assert sent(ch, "t_later", "2026-11") == ["t1", "t2"]
    assert "2 " in r.message(VI) and "Test" in r.message(VI)

    again = await now(runtime, ids["school"], "t_later", ids["p"])
    assert again.status == RunNowStatus.ALREADY and again.sent == 0
    assert "đã chạy cho kỳ này" in again.message(VI)
    await tick(runtime)
    clock.t = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)  # the scheduled time: 25 November, 09:00
    await tick(runtime)
    assert sent(ch, "t_later", "2026-11") == ["t1", "t2"]  # still once each

    clock.t = datetime(2026, 12, 25, 2, 0, tzinfo=UTC)  # the next period runs as scheduled
    await tick(runtime)
    assert sent(ch, "t_later", "2026-12") == ["t1", "t2"]
    after = await now(runtime, ids["school"], "t_later")
    assert after.status == RunNowStatus.ALREADY and sent(ch, "t_later", "2026-12") == ["t1", "t2"]

    keys = runtime.db.run_sync(lambda s: sorted(n.key for n in s.exec(select(Notice).where(Notice.rule == "t_later"))))
    assert keys == sorted([f"t_later|{ids['t1']}|2026-11", f"t_later|{ids['t2']}|2026-11", "t_later|-|done:2026-11",
                           f"t_later|{ids['t1']}|2026-12", f"t_later|{ids['t2']}|2026-12", "t_later|-|done:2026-12"])
    audits = runtime.db.run_sync(lambda s: [(a.actor_id, a.details.get("sent")) for a in s.exec(
        select(AuditEvent).where(AuditEvent.action == "calendar.rule_run_now"))])
    assert audits == [(ids["p"], 2)]  # only the run that sent something is a run


async def test_run_now_requests_at_once_with_the_tick_send_once(rt) -> None:
    import asyncio

    runtime, ch, ids, clock = rt
    results = await asyncio.gather(*(run_now(runtime.dispatcher, ids["school"], "t_due") for _ in range(3)),
                                   tick(runtime))
    await runtime.dispatcher.drain()
    statuses = sorted(r.status for r in results[:3])
    assert statuses.count(RunNowStatus.SENT) <= 1 and set(statuses) <= {RunNowStatus.SENT, RunNowStatus.ALREADY}
    assert sent(ch, "t_due", "2026-11") == ["t1", "t2"]


async def test_run_now_racing_the_schedulers_open_transaction_answers_already(rt) -> None:
    """PostgreSQL, several processes: the scheduler has written this period's keys but not committed
    when "run now" writes the same ones. The request waits on the unique key, fails, runs again and
    finds the period done: nothing twice."""
    import asyncio
    import threading

    from sqlalchemy import text

    from bot.core import Inbound
    from bot.engine.reminders import run_rule

    runtime, ch, ids, clock = rt
    if runtime.db.is_sqlite:
        pytest.skip("SQLite has one writer at a time: the units cannot overlap")
    written, release = threading.Event(), threading.Event()

    def scheduler_unit(s):
        ctx = runtime.dispatcher.make_ctx(s, Inbound(channel="scheduler", user_id="", chat_id="", update_key=""),
                                          None, None)
        run_rule(ctx, ids["school"], DUE)
        written.set()
        assert release.wait(30)

    other = asyncio.create_task(asyncio.to_thread(runtime.db.run_sync, scheduler_unit))
    assert await asyncio.to_thread(written.wait, 30)
    request = asyncio.create_task(run_now(runtime.dispatcher, ids["school"], "t_due"))

    def waiting(s) -> int:
        return int(s.execute(text("SELECT count(*) FROM pg_locks WHERE NOT granted")).scalar() or 0)

    for _ in range(500):  # until the request waits on the scheduler's uncommitted key
        if await asyncio.to_thread(runtime.db.run_sync, waiting) or request.done():
            break
        await asyncio.sleep(0.02)
    assert not request.done()
    release.set()
    await other
    result = await request
    assert result.status == RunNowStatus.ALREADY
    await runtime.fanout.drain()
    await runtime.dispatcher.drain()
    assert sent(ch, "t_due", "2026-11") == ["t1", "t2"]


async def test_run_now_after_the_scheduler_sent_it_sends_nothing(rt) -> None:
    runtime, ch, ids, clock = rt
    await tick(runtime)  # the 20th's occurrence is due: the scheduler sends it
    assert sent(ch, "t_due", "2026-11") == ["t1", "t2"]
    r = await now(runtime, ids["school"], "t_due")
    assert r.status == RunNowStatus.ALREADY and sent(ch, "t_due", "2026-11") == ["t1", "t2"]


async def test_a_due_occurrence_run_now_then_the_tick(rt) -> None:
    runtime, ch, ids, clock = rt
    r = await now(runtime, ids["school"], "t_due")
    assert r.status == RunNowStatus.SENT and r.sent == 2
    await tick(runtime)
    await tick(runtime)
    assert sent(ch, "t_due", "2026-11") == ["t1", "t2"]  # t_later's own period stays its own: not due yet either
    assert runtime.db.run_sync(lambda s: len(s.exec(select(Notice).where(Notice.rule == "t_later")).all())) == 0


async def test_nobody_to_remind_before_the_due_day_leaves_the_period_to_the_schedule(rt) -> None:
    runtime, ch, ids, clock = rt
    r = await now(runtime, ids["school"], "t_nobody")
    assert r.status == RunNowStatus.SENT and r.sent == 0 and "không ai" in r.message(VI)

    def hire(s):
        from storage.models import School

        make_person(s, s.get(School, ids["school"]), "Phạm Thu Hà", ["accountant"], link="a1")
    runtime.db.run_sync(hire)
    clock.t = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
    await tick(runtime)  # the scheduled run still checks: the accountant hired meanwhile is reminded
    assert sent(ch, "t_nobody", "2026-11") == ["a1"]


async def test_disabled_unknown_and_quiet_hours(rt) -> None:
    runtime, ch, ids, clock = rt
    runtime.db.run_sync(lambda s: s.add(RuleSetting(school_id=ids["school"], rule="t_later", enabled=False,
                                                    params={})))
    off = await now(runtime, ids["school"], "t_later")
    assert off.status == RunNowStatus.DISABLED and not off.ok and "đang tắt" in off.message(VI)
    unknown = await now(runtime, ids["school"], "no_such_rule")
    assert unknown.status == RunNowStatus.UNKNOWN and "no_such_rule" in unknown.message(VI)
    other_school = await now(runtime, ids["school"] + 999, "t_due")
    assert other_school.status == RunNowStatus.UNKNOWN

    clock.t = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)  # 22:00: quiet hours
    quiet = await now(runtime, ids["school"], "t_due")
    assert quiet.status == RunNowStatus.QUIET and quiet.sent == 0
    assert "06:30" in quiet.message(VI, quiet=runtime.settings.quiet_window())
    assert ch.sent == []
    clock.t = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)  # 08:00 the next morning: the period is still open
    r = await now(runtime, ids["school"], "t_due")
    assert r.status == RunNowStatus.SENT and sent(ch, "t_due", "2026-11") == ["t1", "t2"]


async def test_rule_status_gives_schedule_next_and_last_run(rt) -> None:
    runtime, ch, ids, clock = rt
    await now(runtime, ids["school"], "t_later")

    def status(s):
        return {st.key: st for st in rule_status(s, runtime.registry, ids["school"], clock.now(), VI)}

    st = runtime.db.run_sync(status)
    later, due = st["t_later"], st["t_due"]
    assert later.enabled and later.schedule == Monthly(day=25).describe(VI, {"day": 25, "hour": 8})
    assert later.next_at == datetime(2026, 11, 25, 8, 0, tzinfo=VI.tz)
    assert later.last_at == clock.now() and later.last_period == "2026-11" and later.last_sent == 2
    assert later.period == "2026-11" and later.done_this_period
    assert due.last_at is None and not due.done_this_period and due.last_sent == 0
    assert "process_check" in st and "articles.deadline" in st and not st["articles.deadline"].periodic


# -- /lich through the real python-telegram-bot ------------------------------------------------------
async def test_lich_run_now_button_sends_once_and_refuses_a_forged_tap(telegram) -> None:
    from tests.fakes.tg_harness import payloads

    tg = telegram
    people = tg.enrol({"the teacher": ("Nguyễn Thị Vân", ["teacher"]),
                       "the principal": ("Trần Văn Đức", ["principal"])})
    teacher, principal = people["the teacher"].chat, people["the principal"].chat

    def scans(chat) -> int:
        return sum(t.startswith("🛡") for t in tg.texts(chat))  # the weekly malware scan (002 Điều 9.2)

    def notices() -> int:
        return tg.seed(lambda s: len(s.exec(select(Notice).where(Notice.rule == "malware_scan")).all()))

    # a teacher forging the principal's buttons runs nothing
    await tg.command(teacher, "lich")
    await tg.tap(teacher, "c:run")
    await tg.tap(teacher, "c:r:malware_scan")
    await tg.tap(teacher, "c:run")
    await tg.rt.dispatcher.drain()
    assert notices() == 0 and scans(teacher) == 0

    await tg.command(principal, "lich", "cài đặt")
    await tg.tap(principal, "c:r:malware_scan")
    assert "c:run" in payloads(await tg.last(principal))
    await tg.tap(principal, "c:run")
    await tg.rt.dispatcher.drain()
    assert any("Đã chạy" in t and "2 người" in t for t in tg.texts(principal))
    assert scans(teacher) == 1 and scans(principal) == 1
    await tg.tap(principal, "c:run")
    await tg.rt.dispatcher.drain()
    assert any("đã chạy cho kỳ này" in t for t in tg.texts(principal))
    await tg.tick()
    assert scans(teacher) == 1 and scans(principal) == 1 and notices() == 3  # 2 notices + the period's marker
    audit = tg.seed(lambda s: [a.actor_id for a in s.exec(select(AuditEvent).where(
        AuditEvent.action == "calendar.rule_run_now"))])
    assert audit == [people["the principal"].id]


# -- the command line ---------------------------------------------------------------------------------
async def test_cli_run_now_prints_the_outcome_in_vietnamese(rt) -> None:
    runtime, ch, ids, clock = rt
    args = dict(school_name=None, tr=VI, clock=clock)
    ok, lines = cli_run_now(runtime.db, runtime.registry, runtime.settings, "t_later", **args)
    assert ok and "2 nhắc việc" in lines[0] and "Bot đang chạy" in lines[1]
    # queued in the database: the running bot's fan-out sends them
    assert runtime.db.run_sync(lambda s: sorted(n.status for n in s.exec(
        select(Notice).where(Notice.rule == "t_later", Notice.person_id != None))))  == ["queued", "queued"]  # noqa: E711
    await runtime.fanout.drain()
    assert sent(ch, "t_later", "2026-11") == ["t1", "t2"]
    ok, lines = cli_run_now(runtime.db, runtime.registry, runtime.settings, "t_later", **args)
    assert ok and "đã chạy cho kỳ này" in lines[0]
    ok, lines = cli_run_now(runtime.db, runtime.registry, runtime.settings, "nope", **args)
    assert not ok and "nope" in lines[0] and "t_later" in lines[1]
    await tick(runtime)
    assert sent(ch, "t_later", "2026-11") == ["t1", "t2"]
    ok, lines = render(runtime.db, runtime.registry, school_name=None, tr=VI, now=clock.now())
    line = next(x for x in lines if "t_later" in x)
    assert "lần chạy trước" in line and "23/11/2026" in line
    assert "chưa chạy" in next(x for x in lines if "t_nobody" in x)


def test_calendar_run_now_command_end_to_end(tmp_path) -> None:
    env = {**os.environ, "DATA_DIR": str(tmp_path / "data"), "DATABASE_URL": f"sqlite:///{tmp_path / 'c.db'}"}
    env = {k: v for k, v in env.items() if not k.startswith(("TELEGRAM_", "ZALO_", "QUIET_HOURS"))}
    env["QUIET_HOURS"] = "off"  # whatever the hour the test runs at
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def main(*a: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "main.py", *a], cwd=root, env=env, capture_output=True, text=True,
                              timeout=120)

    assert main("demo", "--no-serve", "--no-recordings").returncode == 0
    first = main("calendar", "--run-now", "malware_scan")
    assert first.returncode == 0, first.stderr
    assert "Quét" in first.stdout or "mã độc" in first.stdout
    second = main("calendar", "--run-now", "malware_scan")
    assert second.returncode == 0 and "đã chạy cho kỳ này" in second.stdout
    unknown = main("calendar", "--run-now", "khong_co")
    assert unknown.returncode == 1 and "khong_co" in unknown.stderr and "Traceback" not in unknown.stderr
    listing = main("calendar")
    assert "lần chạy trước" in next(x for x in listing.stdout.splitlines() if "malware_scan" in x)
