"""Compliance calendar: reminder rules on APScheduler 3 (AsyncIOScheduler) in the bot process.

How it stays correct across restarts
------------------------------------
The scheduler does not fire "events" that could be lost. Every tick (``SCHEDULER_TICK_SECONDS``)
it asks each enabled rule of each school for its *current occurrence* — the latest time the rule
fell due that still matters (this month's quota nudge, this 15-day review period, today's 10:00
mailbox check …). The rule's function then calls :meth:`RuleRun.notify` for each person; every
notice has an idempotency key ``rule|person|period`` stored in the ``notice`` table in the same
transaction that queues the message. So:

* a restart — even after ``kill -9`` — never repeats a notice (the key exists);
* a notice that fell due while the bot was down is sent once at the next tick, if its period is
  still current; an occurrence whose period has passed is never sent late as a burst of copies;
* when a rule has handled its period completely, a ``done`` marker stops further work until the
  next period.

Quiet hours (``QUIET_HOURS``, default 21:00–06:30) hold non-urgent notices until they end; rules
can move their occurrences to the next Vietnamese working day (weekends and public holidays
skipped, :mod:`bot.workdays`).

Rules are declared by flow modules as ``RULES = [Rule(...), ...]`` (collected by the registry) and
each school can switch and tune them (``rule_setting`` table, ``/lich``).

With several bot processes on one PostgreSQL database, only the holder of a PostgreSQL advisory
lock schedules (:class:`Leadership`); when it dies its connection closes, the lock is released and
another process takes over at its next tick. SQLite has a single process, which always schedules.
"""

from __future__ import annotations

import asyncio
import calendar
import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import text
from sqlmodel import Session, col, select

from bot.core import Ctx, Dispatcher, Host, Reply
from bot.core.context import NoticeQueue
from bot.engine import approvals, waiting
from bot.i18n import N_, Translator
from bot.text import parse_id
from bot.workdays import is_working_day, school_days_off
from storage.models import Notice, NoticeStatus, Person, RuleSetting, School
from storage.people import people_with_roles

if TYPE_CHECKING:
    from storage.db import Database

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# Schedules: "when did this rule last fall due, and does that still matter?"
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Occurrence:
    period: str          # idempotency period, e.g. "2026-11", "2026-W48", "2026-11-23T10"
    at: datetime         # local time it fell due


def _at(d: date, hour: int, tz: Any) -> datetime:
    return datetime.combine(d, time(hour=max(0, min(23, int(hour)))), tzinfo=tz)


def _shift(d: date, working_days: bool, off: frozenset[date], *, first: date | None = None,
           last: date | None = None) -> date:
    """Move ``d`` to a working day when the rule counts in working days: forward, or — when that
    would leave its period (``first``..``last``, e.g. the month or the week) — back to the last
    working day before it, so no period loses its occurrence. A period with no working day at all
    keeps ``d``."""
    if not working_days:
        return d
    x = d
    while last is None or x <= last:
        if is_working_day(x, off):
            return x
        x += timedelta(days=1)
        if last is None and (x - d).days > 40:
            return d
    x = d - timedelta(days=1)
    while first is None or x >= first:
        if is_working_day(x, off):
            return x
        x -= timedelta(days=1)
        if first is None and (d - x).days > 40:
            break
    return d


class Schedule:
    """Base: subclasses compute the current occurrence and the next one (for ``/lich``)."""

    defaults: Mapping[str, Any] = {}
    periodic = True

    def occurrence(self, now: datetime, p: Mapping[str, Any], off: frozenset[date]) -> Occurrence | None:
        raise NotImplementedError

    def next_at(self, now: datetime, p: Mapping[str, Any], off: frozenset[date]) -> datetime | None:
        raise NotImplementedError

    def describe(self, tr: Translator, p: Mapping[str, Any]) -> str:
        raise NotImplementedError

    def period_now(self, now: datetime, p: Mapping[str, Any], off: frozenset[date]) -> Occurrence | None:
        """The occurrence of the period ``now`` falls in, whether or not it is due yet (``Chạy ngay``
        runs it early under the same key, so the scheduled run finds it done)."""
        return self.occurrence(now, p, off)


@dataclass(frozen=True)
class Monthly(Schedule):
    """On ``day`` of every month at ``hour`` (the last day when the month is shorter); matters until
    the month ends."""

    day: int = 1
    hour: int = 8
    working_days: bool = True

    @property
    def defaults(self) -> Mapping[str, Any]:  # type: ignore[override]
        return {"day": self.day, "hour": self.hour}

    def _due(self, y: int, m: int, p: Mapping[str, Any], tz: Any, off: frozenset[date]) -> datetime:
        last = calendar.monthrange(y, m)[1]
        day = min(max(1, int(p.get("day", self.day))), last)
        d = _shift(date(y, m, day), self.working_days, off, first=date(y, m, 1), last=date(y, m, last))
        return _at(d, int(p.get("hour", self.hour)), tz)

    def occurrence(self, now: datetime, p: Mapping[str, Any], off: frozenset[date]) -> Occurrence | None:
        at = self._due(now.year, now.month, p, now.tzinfo, off)
        if now < at or at.month != now.month:
            return None
        return Occurrence(f"{now.year}-{now.month:02d}", at)

    def period_now(self, now: datetime, p: Mapping[str, Any], off: frozenset[date]) -> Occurrence | None:
        return Occurrence(f"{now.year}-{now.month:02d}", self._due(now.year, now.month, p, now.tzinfo, off))

    def next_at(self, now: datetime, p: Mapping[str, Any], off: frozenset[date]) -> datetime:
        at = self._due(now.year, now.month, p, now.tzinfo, off)
        if at > now:
            return at
        y, m = (now.year + 1, 1) if now.month == 12 else (now.year, now.month + 1)
        return self._due(y, m, p, now.tzinfo, off)

    def describe(self, tr: Translator, p: Mapping[str, Any]) -> str:
        return tr.t("monthly, on day {day} at {hour}:00", day=int(p.get("day", self.day)),
                    hour=int(p.get("hour", self.hour)))


@dataclass(frozen=True)
class Quarterly(Schedule):
    """On ``day`` of the first month of each quarter at ``hour``; matters until the quarter ends."""

    day: int = 1
    hour: int = 8
    working_days: bool = True

    @property
    def defaults(self) -> Mapping[str, Any]:  # type: ignore[override]
        return {"day": self.day, "hour": self.hour}

    def _due(self, y: int, q: int, p: Mapping[str, Any], tz: Any, off: frozenset[date]) -> datetime:
        m = 3 * q + 1
        day = min(max(1, int(p.get("day", self.day))), calendar.monthrange(y, m)[1])
        end = date(y, m + 2, calendar.monthrange(y, m + 2)[1])
        return _at(_shift(date(y, m, day), self.working_days, off, first=date(y, m, 1), last=end),
                   int(p.get("hour", self.hour)), tz)

    def occurrence(self, now: datetime, p: Mapping[str, Any], off: frozenset[date]) -> Occurrence | None:
        q = (now.month - 1) // 3
        at = self._due(now.year, q, p, now.tzinfo, off)
        if now < at:
            return None
        return Occurrence(f"{now.year}-Q{q + 1}", at)

    def period_now(self, now: datetime, p: Mapping[str, Any], off: frozenset[date]) -> Occurrence | None:
        q = (now.month - 1) // 3
        return Occurrence(f"{now.year}-Q{q + 1}", self._due(now.year, q, p, now.tzinfo, off))

    def next_at(self, now: datetime, p: Mapping[str, Any], off: frozenset[date]) -> datetime:
        q = (now.month - 1) // 3
        at = self._due(now.year, q, p, now.tzinfo, off)
        if at > now:
            return at
        y, q = (now.year + 1, 0) if q == 3 else (now.year, q + 1)
        return self._due(y, q, p, now.tzinfo, off)

    def describe(self, tr: Translator, p: Mapping[str, Any]) -> str:
        return tr.t("every 3 months, on day {day} of the quarter's first month at {hour}:00",
                    day=int(p.get("day", self.day)), hour=int(p.get("hour", self.hour)))


EPOCH = date(2026, 1, 5)  # a Monday: every-N-days periods are counted from it


@dataclass(frozen=True)
class EveryNDays(Schedule):
    """Every ``days`` days at ``hour`` (counted from a fixed Monday); each period matters until the
    next one starts."""

    days: int = 15
    hour: int = 8
    working_days: bool = True

    @property
    def defaults(self) -> Mapping[str, Any]:  # type: ignore[override]
        return {"days": self.days, "hour": self.hour}

    def _start(self, k: int, n: int) -> date:
        return EPOCH + timedelta(days=k * n)

    def occurrence(self, now: datetime, p: Mapping[str, Any], off: frozenset[date]) -> Occurrence | None:
        n = max(1, int(p.get("days", self.days)))
        hour = int(p.get("hour", self.hour))
        k = (now.date() - EPOCH).days // n
        for kk in (k, k - 1):
            start = self._start(kk, n)
            at = _at(_shift(start, self.working_days, off), hour, now.tzinfo)
            if at <= now:
                return Occurrence(start.isoformat(), at)
        return None

    def period_now(self, now: datetime, p: Mapping[str, Any], off: frozenset[date]) -> Occurrence | None:
        n = max(1, int(p.get("days", self.days)))
        start = self._start((now.date() - EPOCH).days // n, n)
        return Occurrence(start.isoformat(), _at(_shift(start, self.working_days, off),
                                                 int(p.get("hour", self.hour)), now.tzinfo))

    def next_at(self, now: datetime, p: Mapping[str, Any], off: frozenset[date]) -> datetime:
        n = max(1, int(p.get("days", self.days)))
        hour = int(p.get("hour", self.hour))
        k = (now.date() - EPOCH).days // n
        for kk in (k, k + 1, k + 2):
            at = _at(_shift(self._start(kk, n), self.working_days, off), hour, now.tzinfo)
            if at > now:
                return at
        return _at(self._start(k + 2, n), hour, now.tzinfo)

    def describe(self, tr: Translator, p: Mapping[str, Any]) -> str:
        return tr.t("every {days} days at {hour}:00", days=int(p.get("days", self.days)),
                    hour=int(p.get("hour", self.hour)))


@dataclass(frozen=True)
class Weekly(Schedule):
    """On ``weekday`` (0 = Monday) at ``hour``; matters until the week ends."""

    weekday: int = 0
    hour: int = 8
    working_days: bool = True

    @property
    def defaults(self) -> Mapping[str, Any]:  # type: ignore[override]
        return {"weekday": self.weekday, "hour": self.hour}

    def _due(self, monday: date, p: Mapping[str, Any], tz: Any, off: frozenset[date]) -> datetime:
        d = monday + timedelta(days=max(0, min(6, int(p.get("weekday", self.weekday)))))
        return _at(_shift(d, self.working_days, off, first=monday, last=monday + timedelta(days=6)),
                   int(p.get("hour", self.hour)), tz)

    def occurrence(self, now: datetime, p: Mapping[str, Any], off: frozenset[date]) -> Occurrence | None:
        monday = now.date() - timedelta(days=now.weekday())
        at = self._due(monday, p, now.tzinfo, off)
        if now < at:
            return None
        iso = monday.isocalendar()
        return Occurrence(f"{iso.year}-W{iso.week:02d}", at)

    def period_now(self, now: datetime, p: Mapping[str, Any], off: frozenset[date]) -> Occurrence | None:
        monday = now.date() - timedelta(days=now.weekday())
        iso = monday.isocalendar()
        return Occurrence(f"{iso.year}-W{iso.week:02d}", self._due(monday, p, now.tzinfo, off))

    def next_at(self, now: datetime, p: Mapping[str, Any], off: frozenset[date]) -> datetime:
        monday = now.date() - timedelta(days=now.weekday())
        at = self._due(monday, p, now.tzinfo, off)
        return at if at > now else self._due(monday + timedelta(days=7), p, now.tzinfo, off)

    def describe(self, tr: Translator, p: Mapping[str, Any]) -> str:
        wd = int(p.get("weekday", self.weekday))
        day = tr.date(date(2026, 1, 5) + timedelta(days=wd), "EEEE")
        return tr.t("every week on {day} at {hour}:00", day=day, hour=int(p.get("hour", self.hour)))


@dataclass(frozen=True)
class DailyAt(Schedule):
    """At each of ``hours`` on working days (or every day); each slot matters until the next."""

    hours: tuple[int, ...] = (8,)
    working_days: bool = True

    @property
    def defaults(self) -> Mapping[str, Any]:  # type: ignore[override]
        return {"hours": list(self.hours)}

    def _hours(self, p: Mapping[str, Any]) -> list[int]:
        raw = p.get("hours", self.hours)
        try:
            return sorted({max(0, min(23, int(h))) for h in raw}) or list(self.hours)
        except (TypeError, ValueError):
            return list(self.hours)

    def occurrence(self, now: datetime, p: Mapping[str, Any], off: frozenset[date]) -> Occurrence | None:
        if self.working_days and not is_working_day(now.date(), off):
            return None
        due = [h for h in self._hours(p) if h <= now.hour]
        if not due:
            return None
        return Occurrence(f"{now.date().isoformat()}T{due[-1]:02d}", _at(now.date(), due[-1], now.tzinfo))

    def period_now(self, now: datetime, p: Mapping[str, Any], off: frozenset[date]) -> Occurrence | None:
        """The slot under way, or before the first slot of a working day, that day's first one
        (none on a day off)."""
        occ = self.occurrence(now, p, off)
        if occ is not None or (self.working_days and not is_working_day(now.date(), off)):
            return occ
        h = self._hours(p)[0]
        return Occurrence(f"{now.date().isoformat()}T{h:02d}", _at(now.date(), h, now.tzinfo))

    def next_at(self, now: datetime, p: Mapping[str, Any], off: frozenset[date]) -> datetime | None:
        d = now.date()
        for _ in range(40):
            if not self.working_days or is_working_day(d, off):
                for h in self._hours(p):
                    at = _at(d, h, now.tzinfo)
                    if at > now:
                        return at
            d += timedelta(days=1)
        return None

    def describe(self, tr: Translator, p: Mapping[str, Any]) -> str:
        hours = ", ".join(f"{h}:00" for h in self._hours(p))
        if self.working_days:
            return tr.t("on working days at {hours}", hours=hours)
        return tr.t("every day at {hours}", hours=hours)


@dataclass(frozen=True)
class Continuous(Schedule):
    """Checked at every tick: the rule keeps its own deadlines (articles, equipment changes,
    incidents) and gives each notice its own key."""

    periodic = False

    @property
    def defaults(self) -> Mapping[str, Any]:  # type: ignore[override]
        return {}

    def occurrence(self, now: datetime, p: Mapping[str, Any], off: frozenset[date]) -> Occurrence | None:
        return Occurrence("", now)

    def next_at(self, now: datetime, p: Mapping[str, Any], off: frozenset[date]) -> datetime | None:
        return None

    def describe(self, tr: Translator, p: Mapping[str, Any]) -> str:
        return tr.t("when a deadline approaches")


# ---------------------------------------------------------------------------------------------
# Rules
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rule:
    """A reminder rule. ``fn(run)`` is called at every tick while an occurrence is current and
    calls ``run.notify(...)`` for each person; keys make repeated calls harmless."""

    key: str
    title: str                                   # msgid
    schedule: Schedule
    fn: Callable[[RuleRun], None]
    roles: tuple[str, ...] = ()                  # default recipients, see RuleRun.recipients
    regulation: str = ""                         # e.g. "000 Điều 5.2"
    urgent: bool = False                         # ignores quiet hours
    enabled: bool = True
    order: int = 100


@dataclass
class RuleRun:
    ctx: Ctx
    rule: Rule
    school: School
    params: dict[str, Any]
    occurrence: Occurrence
    deferred: bool = False
    notified: int = 0
    days_off: frozenset[date] = field(default_factory=frozenset)
    reached: set[int] = field(default_factory=set)   # people notified by this run

    @property
    def session(self) -> Session:
        return self.ctx.session

    @property
    def period(self) -> str:
        return self.occurrence.period

    @property
    def now(self) -> datetime:
        return self.ctx.now

    def local_now(self) -> datetime:
        return self.ctx.local_now()

    def today(self) -> date:
        return self.ctx.today()

    def param(self, name: str, default: Any = None) -> Any:
        return self.params.get(name, default)

    def recipients(self, roles: Iterable[str] | None = None) -> list[Person]:
        """Active people holding any of the rule's roles (or ``params["roles"]`` when the school
        changed them), plus anyone named in ``params["people"]``."""
        wanted = list(self.params.get("roles") or roles or self.rule.roles)
        if "*" in wanted:  # everyone on the staff list
            people = list(self.session.exec(select(Person).where(Person.school_id == self.school.id)
                                            .order_by(col(Person.id))))
            people = [p for p in people if p.is_active]
        else:
            people = people_with_roles(self.session, school_id=self.school.id or 0, roles=wanted) if wanted else []
        extra_ids = [int(i) for i in self.params.get("people") or [] if parse_id(str(i)) is not None]
        if extra_ids:
            have = {p.id for p in people}
            for p in self.session.exec(select(Person).where(col(Person.id).in_(extra_ids))).all():
                if p.id not in have and p.is_active and p.school_id == self.school.id:
                    people.append(p)
        return people

    def quiet_now(self) -> bool:
        return in_quiet_hours(self.ctx.settings.quiet_window(), self.local_now().time())

    def key_for(self, person_id: int | None, key: str | None = None) -> str:
        return notice_key(self.rule.key, person_id, self.period if key is None else key)

    def already(self, person: Person | int | None, key: str | None = None) -> bool:
        pid = person.id if isinstance(person, Person) else person
        k = self.key_for(pid, key)
        return self.session.exec(select(Notice.id).where(Notice.key == k)).first() is not None

    def notify(self, person: Person, make: Callable[[Translator], Reply], *, key: str | None = None,
               urgent: bool = False) -> bool:
        """Send ``make(tr)`` to ``person`` once per key (default: this rule's period).

        Returns True when the notice was queued now. During quiet hours a non-urgent notice is
        held (the period is not marked done, so the next tick after the quiet hours sends it)."""
        if not person.is_active:
            return False
        if self.already(person, key):
            return False
        if not (urgent or self.rule.urgent) and self.quiet_now():
            self.deferred = True
            return False
        queued = queue_notice(self.ctx, rule=self.rule.key, person=person,
                              period=self.period if key is None else key, make=make, school_id=self.school.id)
        if queued:
            self.notified += 1
            if person.id is not None:
                self.reached.add(person.id)
        return queued


def notice_key(rule: str, person_id: int | None, period: str) -> str:
    k = f"{rule}|{person_id if person_id is not None else '-'}|{period}"
    if len(k) > 240:  # keep the key bounded whatever a rule puts in it
        k = k[:170] + "#" + hashlib.sha256(k.encode()).hexdigest()
    return k


def in_quiet_hours(window: tuple[time, time] | None, t: time) -> bool:
    if window is None:
        return False
    start, end = window
    if start <= end:
        return start <= t < end
    return t >= start or t < end


def queue_notice(ctx: Ctx, *, rule: str, person: Person, period: str, make: Callable[[Translator], Reply],
                 school_id: int | None = None) -> bool:
    """Record the notice under its idempotency key, in the caller's unit; False if it already exists.

    With a runtime the notice is queued and sent by the fan-out worker (:mod:`bot.engine.fanout`) within
    the platforms' limits once the unit has committed; a person who cannot be reached now gets it
    when they next write. Without one (plain unit tests) it is sent with the unit's messages."""
    key = notice_key(rule, person.id, period)
    if ctx.session.exec(select(Notice.id).where(Notice.key == key)).first() is not None:
        return False
    from bot.engine.fanout import reply_to_payload

    reply = make(ctx.translator_for(person))
    n = Notice(key=key, school_id=school_id if school_id is not None else person.school_id, rule=rule,
               person_id=person.id, period=period, created_at=ctx.now, payload=reply_to_payload(reply))
    fanout = ctx.services.fanout
    if fanout is not None:
        n.status = NoticeStatus.QUEUED
        _kick(ctx, fanout)
    elif ctx.send_to(person, reply):
        n.status, n.sent_at = NoticeStatus.SENT, ctx.now
    else:
        n.status = NoticeStatus.HELD
    ctx.session.add(n)
    ctx.session.flush()
    return True


def _kick(ctx: Ctx, fanout: NoticeQueue) -> None:
    if getattr(ctx, "_fanout_kicked", False):
        return
    ctx._fanout_kicked = True  # type: ignore[attr-defined]

    async def go() -> None:
        await fanout.drain()

    ctx.later(go)


HELD_MAX_AGE = timedelta(days=7)


def release_held(ctx: Ctx) -> int:
    """Person-seen hook: a person just wrote, so their held notices can go out now (at most a week
    old; older ones are dropped as no longer relevant)."""
    person = ctx.person
    if person is None or person.id is None:
        return 0
    if ctx.session.info.get(Dispatcher.HELD_HINT) is False:
        # The dispatcher's identity query, a moment ago in this unit, found none held: nothing to
        # read. A notice another process holds in between is released at the person's next
        # message — as it would be if a read here had just missed it.
        return 0
    rows = ctx.session.exec(select(Notice).where(Notice.person_id == person.id,
                                                 Notice.status == NoticeStatus.HELD)
                            .order_by(col(Notice.id))).all()
    n = 0
    for row in rows:
        if ctx.now - row.created_at > HELD_MAX_AGE:
            row.status = NoticeStatus.UNREACHABLE
        else:
            row.status, row.not_before = NoticeStatus.QUEUED, None
            n += 1
        ctx.session.add(row)
    if n:
        fanout = ctx.services.fanout
        if fanout is not None:
            _kick(ctx, fanout)
        else:
            from bot.engine.fanout import payload_to_reply

            for row in rows:
                if row.status == NoticeStatus.QUEUED and ctx.send_to(person, payload_to_reply(row.payload)):
                    row.status, row.sent_at = NoticeStatus.SENT, ctx.now
    return n


def run_rule(ctx: Ctx, school_id: int, rule: Rule) -> RuleRun | None:
    """One rule for one school, in the caller's unit. Returns the run (None when nothing was due)."""
    school = ctx.session.get(School, school_id)
    if school is None:
        return None
    setting = ctx.session.get(RuleSetting, (school_id, rule.key))
    if not (setting.enabled if setting is not None else rule.enabled):
        return None
    params: dict[str, Any] = {**rule.schedule.defaults, **(setting.params if setting is not None else {})}
    off = school_days_off(school.settings)
    occ = rule.schedule.occurrence(ctx.local_now(), params, off)
    if occ is None:
        return None
    done = notice_key(rule.key, None, "done:" + occ.period)
    if rule.schedule.periodic and ctx.session.exec(select(Notice.id).where(Notice.key == done)).first():
        return None
    ctx.school = school
    run = RuleRun(ctx, rule, school, params, occ, days_off=off)
    rule.fn(run)
    if rule.schedule.periodic and not run.deferred:
        ctx.session.add(Notice(key=done, school_id=school_id, rule=rule.key, period=occ.period,
                               status=NoticeStatus.DONE, created_at=ctx.now, sent_at=ctx.now))
        ctx.session.flush()
        if run.notified:
            log.info("rule %s period %s: %d notices", rule.key, occ.period, run.notified)
    return run


def rule_params(session: Session, school_id: int, rule: Rule) -> tuple[bool, dict[str, Any]]:
    setting = session.get(RuleSetting, (school_id, rule.key))
    enabled = setting.enabled if setting is not None else rule.enabled
    return enabled, {**rule.schedule.defaults, **(setting.params if setting is not None else {})}


def set_rule(ctx: Ctx, school_id: int, rule: Rule, *, enabled: bool | None = None,
             params: Mapping[str, Any] | None = None) -> RuleSetting:
    setting = ctx.session.get(RuleSetting, (school_id, rule.key))
    if setting is None:
        setting = RuleSetting(school_id=school_id, rule=rule.key, enabled=rule.enabled, params={})
    if enabled is not None:
        setting.enabled = enabled
    if params:
        setting.params = {**(setting.params or {}), **dict(params)}
    setting.updated_by = ctx.person.id if ctx.person else None
    setting.updated_at = ctx.now
    ctx.session.add(setting)
    ctx.session.flush()
    ctx.audit("calendar.rule_changed", f"rule:{rule.key}", enabled=setting.enabled, params=setting.params)
    return setting


# ---------------------------------------------------------------------------------------------
# "Chạy ngay": this period's occurrence on demand, and each rule's state (console, CLI, /lich)
# ---------------------------------------------------------------------------------------------
class RunNowStatus(StrEnum):
    SENT = "sent"            # ran: ``sent`` notices queued (0: nobody needed one)
    ALREADY = "already"      # this period's occurrence had already been handled: nothing sent
    QUIET = "quiet"          # quiet hours: held back (the period stays open)
    DISABLED = "disabled"    # the school switched the rule off
    UNKNOWN = "unknown"      # no such rule (or no such school)
    NO_PERIOD = "no_period"  # nothing falls due now (a day off for a working-days rule)


@dataclass(frozen=True)
class RunNowResult:
    """What :func:`run_now` did, for the console, the CLI and ``/lich`` to show."""

    status: RunNowStatus
    rule: str
    title: str = ""              # msgid
    period: str = ""
    due_at: datetime | None = None
    sent: int = 0                # notices queued by this run
    people: int = 0              # distinct people they go to

    @property
    def ok(self) -> bool:
        return self.status in (RunNowStatus.SENT, RunNowStatus.ALREADY)

    def message(self, tr: Translator, *, quiet: tuple[time, time] | None = None) -> str:
        title = tr.t(self.title) if self.title else self.rule
        if self.status == RunNowStatus.UNKNOWN:
            return tr.t("There is no reminder “{rule}”.", rule=self.rule)
        if self.status == RunNowStatus.DISABLED:
            return tr.t("“{rule}” is switched off for this school: switch it on first.", rule=title)
        if self.status == RunNowStatus.NO_PERIOD:
            return tr.t("“{rule}” has nothing due today (not a working day).", rule=title)
        if self.status == RunNowStatus.ALREADY:
            return tr.t("“{rule}” has already run for this period: nothing more was sent.", rule=title)
        if self.status == RunNowStatus.QUIET:
            end = quiet[1].strftime("%H:%M") if quiet else ""
            return tr.t("It is quiet hours: “{rule}” was not sent. Run it again after {time}.", rule=title,
                        time=end)
        if self.sent == 0:
            return tr.t("“{rule}” ran now: nobody needed a reminder this time.", rule=title)
        return tr.t("“{rule}” ran now: {n} reminders to {people} people. The scheduled run of this period "
                    "will not send them again.", rule=title, n=self.sent, people=self.people)


def run_rule_now(ctx: Ctx, school_id: int, rule_key: str) -> RunNowResult:
    """Run, in the caller's unit, the occurrence of the period ``ctx.now`` falls in — due yet or not —
    under the scheduler's keys: notices ``rule|person|period`` and the period's ``done`` marker. So
    the scheduled tick of that period, a second "run now" and a replay send nothing more.

    A period that is not due yet and needed no notice is left open (the scheduled run checks again
    then). Quiet hours hold non-urgent notices as they do for the scheduler. Audited
    (``calendar.rule_run_now``) with the person of ``ctx`` as actor."""
    rule = ctx.registry.rules.get(rule_key)
    school = ctx.session.get(School, school_id)
    if rule is None or school is None:
        return RunNowResult(RunNowStatus.UNKNOWN, rule_key)
    enabled, params = rule_params(ctx.session, school_id, rule)
    if not enabled:
        return RunNowResult(RunNowStatus.DISABLED, rule.key, rule.title)
    off = school_days_off(school.settings)
    now = ctx.local_now()
    occ = rule.schedule.period_now(now, params, off)
    if occ is None:
        return RunNowResult(RunNowStatus.NO_PERIOD, rule.key, rule.title)
    base = RunNowResult(RunNowStatus.ALREADY, rule.key, rule.title, occ.period, occ.at)
    periodic = rule.schedule.periodic
    done = notice_key(rule.key, None, "done:" + occ.period)
    if periodic and ctx.session.exec(select(Notice.id).where(Notice.key == done)).first() is not None:
        return base
    ctx.school = school
    run = RuleRun(ctx, rule, school, params, occ, days_off=off)
    rule.fn(run)
    people = len(run.reached)
    if run.deferred:
        return replace(base, status=RunNowStatus.QUIET, sent=run.notified, people=people)
    if periodic and (run.notified or occ.at <= now):
        ctx.session.add(Notice(key=done, school_id=school_id, rule=rule.key, period=occ.period,
                               status=NoticeStatus.DONE, created_at=ctx.now, sent_at=ctx.now))
        ctx.session.flush()
    ctx.audit("calendar.rule_run_now", f"rule:{rule.key}", period=occ.period, sent=run.notified, people=people)
    log.info("rule %s period %s run now: %d notices", rule.key, occ.period, run.notified)
    return replace(base, status=RunNowStatus.SENT, sent=run.notified, people=people)


async def run_now(dispatcher: Dispatcher, school_id: int, rule_key: str, *, person_id: int | None = None,
                  channel: str = "console") -> RunNowResult:
    """:func:`run_rule_now` in a unit of its own (the console); its notices go out through the fan-out
    as the scheduler's do. Two requests at once (or one with the scheduler's tick) cannot both write a
    key: the loser's unit fails on the unique key and is run again, finding the period done."""
    from sqlalchemy.exc import IntegrityError

    out: list[RunNowResult] = []

    def unit(ctx: Ctx) -> None:
        out.append(run_rule_now(ctx, school_id, rule_key))

    for attempt in range(2):
        out.clear()
        try:
            await dispatcher.run_unit(unit, person_id=person_id, channel=channel, school_id=school_id)
            break
        except IntegrityError:
            if attempt:
                raise
    return out[-1]


@dataclass(frozen=True)
class RuleStatus:
    """One rule of a school as the console's *Lịch nhắc việc* page shows it."""

    key: str
    title: str                   # msgid
    schedule: str                # in words, translated
    enabled: bool
    periodic: bool
    regulation: str
    roles: tuple[str, ...]
    params: dict[str, Any]
    next_at: datetime | None     # local time
    last_at: datetime | None     # when it last ran or sent something (UTC, from the notice records)
    last_period: str             # the period of that run
    last_sent: int               # notices of that period
    period: str                  # the period now falls in ("" for a rule keeping its own deadlines)
    done_this_period: bool       # "Chạy ngay" would send nothing


def rule_status(session: Session, registry: Any, school_id: int, now: datetime, tr: Translator,
                *, history_days: int = 400) -> list[RuleStatus]:
    """Every rule of the registry for one school, in calendar order: schedule in words, on/off, next
    run, last run and what it sent (from the ``notice`` rows of the last ``history_days``). A few
    grouped queries whatever the number of rules. ``now`` is aware (any zone)."""
    from sqlalchemy import func

    school = session.get(School, school_id)
    if school is None:
        return []
    local = now.astimezone(tr.tz)
    off = school_days_off(school.settings)
    rules = sorted(registry.rules.values(), key=lambda r: (r.order, r.key))
    settings = {r.rule: r for r in session.exec(select(RuleSetting).where(RuleSetting.school_id == school_id))}
    since = now - timedelta(days=history_days)
    last: dict[str, tuple[datetime, str, int]] = {}
    rows = session.exec(select(Notice.rule, Notice.period, func.max(Notice.created_at), func.count(col(Notice.person_id)))
                        .where(Notice.school_id == school_id, col(Notice.created_at) >= since)
                        .group_by(col(Notice.rule), col(Notice.period))).all()
    for rule_key, period_, when, count in rows:
        if rule_key not in last or when > last[rule_key][0]:
            last[rule_key] = (when, period_, int(count))
    periods: dict[str, str] = {}
    info: list[tuple[Rule, bool, dict[str, Any]]] = []
    for rule in rules:
        row = settings.get(rule.key)
        enabled = row.enabled if row is not None else rule.enabled
        params = {**rule.schedule.defaults, **(row.params if row is not None else {})}
        info.append((rule, enabled, params))
        occ = rule.schedule.period_now(local, params, off) if rule.schedule.periodic else None
        if occ is not None:
            periods[rule.key] = occ.period
    done_keys = {notice_key(k, None, "done:" + p): k for k, p in periods.items()}
    done = set()
    if done_keys:
        done = {done_keys[k] for k in session.exec(select(Notice.key).where(col(Notice.key).in_(list(done_keys))))}
    out = []
    for rule, enabled, params in info:
        at: datetime | None = None
        period, n = "", 0
        if rule.key in last:
            at, period, n = last[rule.key]
        out.append(RuleStatus(
            key=rule.key, title=rule.title, schedule=rule.schedule.describe(tr, params), enabled=enabled,
            periodic=rule.schedule.periodic, regulation=rule.regulation,
            roles=tuple(params.get("roles") or rule.roles), params=params,
            next_at=rule.schedule.next_at(local, params, off) if enabled else None,
            last_at=at, last_period=period if rule.schedule.periodic else "",
            last_sent=n, period=periods.get(rule.key, ""), done_this_period=rule.key in done))
    return out


# ---------------------------------------------------------------------------------------------
# Periodic jobs that are not per-person notices
# ---------------------------------------------------------------------------------------------
#: (job id, function run in one database unit) — the engine's own, every tick before the workflows'
#: jobs (:attr:`bot.core.Workflow.jobs`, e.g. footage's clip retention) and the rules.
TICK_JOBS: list[tuple[str, Callable[[Ctx], None]]] = [
    ("approvals", approvals.tick),
    ("waiting cards", waiting.sweep),  # cards kept for people who have linked meanwhile
]


# ---------------------------------------------------------------------------------------------
# One scheduler per database
# ---------------------------------------------------------------------------------------------
LEADER_LOCK_KEY = 7318202


class Leadership:
    """Decides whether this process schedules. PostgreSQL: a session-level advisory lock, keyed by
    the schema in use, held on a dedicated connection (released by the server when the holder dies).
    SQLite: always."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._conn: Any = None
        self.leader = db.is_sqlite

    def _try(self) -> bool:
        if self.db.is_sqlite:
            return True
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT 1"))
                return True
            except Exception:
                log.warning("lost the scheduler lock connection; trying again")
                self._release()
        conn = self.db.engine.connect()
        try:
            got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k, hashtext(current_schema()))"),
                                    {"k": LEADER_LOCK_KEY}).scalar())
            conn.commit()
        except Exception:
            conn.close()
            raise
        if got:
            self._conn = conn
        else:
            conn.close()
        return got

    async def check(self) -> bool:
        was = self.leader
        try:
            self.leader = await asyncio.to_thread(self._try)
        except Exception:
            log.exception("scheduler lock check failed")
            self.leader = False
        if self.leader and not was:
            log.info("this process now runs the scheduler")
        return self.leader

    def _release(self) -> None:
        if self._conn is not None:
            try:
                # The connection would go back to the pool still holding the session-level lock:
                # unlock, and close the underlying connection for good.
                self._conn.execute(text("SELECT pg_advisory_unlock(:k, hashtext(current_schema()))"),
                                   {"k": LEADER_LOCK_KEY})
            except Exception:
                pass
            try:
                self._conn.invalidate()
                self._conn.close()
            except Exception:
                pass
            self._conn = None

    def release(self) -> None:
        self._release()
        self.leader = self.db.is_sqlite


async def purge_expired_messages(runtime: Host) -> int:
    """Delete from the chats the messages sent with ``Reply(delete_after=…)`` whose time has come
    (temporary passwords …). Each is marked first, so a restart never deletes twice."""
    from bot.core import MessageRef
    from storage.models import SentMessage

    now = runtime.services.clock.now()

    def due(s: Session) -> list[tuple[int, str, str, str]]:
        rows = s.exec(select(SentMessage).where(col(SentMessage.delete_at).is_not(None),
                                                col(SentMessage.delete_at) <= now,
                                                col(SentMessage.deleted_at).is_(None)).limit(500)).all()
        for r in rows:
            r.deleted_at = now
            s.add(r)
        return [(r.id or 0, r.channel, r.chat_id, r.message_id) for r in rows]

    rows = await runtime.db.run(due)
    n = 0
    for _id, channel, chat_id, message_id in rows:
        adapter = runtime.sender.adapters.get(channel)
        if adapter is None:
            continue
        try:
            if await adapter.delete(MessageRef(channel, chat_id, message_id)):
                n += 1
        except Exception:
            log.warning("could not delete an expired message on %s", channel)
    return n


def _rule_unit(school_id: int, rule: Rule) -> Callable[[Ctx], None]:
    def unit(ctx: Ctx) -> None:
        run_rule(ctx, school_id, rule)
    return unit


class Scheduler:
    def __init__(self, runtime: Host) -> None:
        self.runtime = runtime
        self.scheduler = AsyncIOScheduler(timezone=runtime.settings.tz)
        self.leadership = Leadership(runtime.db)
        self.ticks = 0

    @property
    def rules(self) -> Sequence[Rule]:
        return sorted(self.runtime.services.registry.rules.values(), key=lambda r: (r.order, r.key))

    async def tick(self) -> None:
        if not await self.leadership.check():
            return
        self.ticks += 1
        dispatcher = self.runtime.dispatcher
        jobs = [*TICK_JOBS, *((job.key, job.fn) for job in self.runtime.services.registry.jobs.values())]
        for name, fn in jobs:
            try:
                await dispatcher.run_unit(fn, channel="scheduler")
            except Exception:
                log.exception("scheduled job %s failed", name)
        # the channels' own (bot.runtime.ScheduledChannel): e.g. keeping the Zalo OA token pair alive
        for name, job in getattr(self.runtime, "channel_jobs", ()):
            try:
                await job()
            except Exception:
                log.exception("scheduled job %s failed", name)
        try:
            await purge_expired_messages(self.runtime)
        except Exception:
            log.exception("deleting expired messages failed")
        try:
            await self.runtime.sender.recover()  # messages a process that died left unsent
        except Exception:
            log.exception("sending the outbox left by an interrupted run failed")
        schools: list[int] = await self.runtime.db.run(
            lambda s: [i for i in s.exec(select(School.id)).all() if i is not None])
        for school_id in schools:
            for rule in self.rules:
                try:
                    await dispatcher.run_unit(_rule_unit(school_id, rule), channel="scheduler")
                except Exception:
                    log.exception("reminder rule %s failed for school %s", rule.key, school_id)
        try:
            fanout = self.runtime.services.fanout
            if fanout is not None:
                await fanout.drain()  # notices that waited (429, a restart, quiet chats)
        except Exception:
            log.exception("fan-out failed")

    def start(self) -> None:
        # Misfires are coalesced with a generous grace time (APScheduler's default of one second
        # would silently skip a tick when the event loop is busy).
        self.scheduler.add_job(self.tick, "interval", seconds=self.runtime.settings.scheduler_tick_seconds,
                               id="tick", coalesce=True, max_instances=1, misfire_grace_time=300,
                               replace_existing=True)
        self.scheduler.start()

    def stop(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        self.leadership.release()


__all__ = ["Continuous", "DailyAt", "EveryNDays", "Leadership", "Monthly", "Notice", "Occurrence", "Quarterly",
           "Rule", "RuleRun", "RuleStatus", "RunNowResult", "RunNowStatus", "Schedule", "Scheduler", "TICK_JOBS",
           "Weekly", "in_quiet_hours", "notice_key", "queue_notice", "release_held", "rule_params", "rule_status",
           "run_now", "run_rule", "run_rule_now", "set_rule", "N_"]
