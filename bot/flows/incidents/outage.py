"""``/ngungdichvu`` — the IT team (or BGH) announces a planned interruption of a system to everyone
(004 Điều 7.10, 10.4, 15.3): system → from → until → reason → confirm → one notice per person.

Each person's notice goes through the compliance calendar's fan-out
(:func:`bot.engine.reminders.queue_notice` with ``rule="outage"`` and ``period="outage:<id>"``): it is
recorded under its idempotency key in the same unit, so a retry or a restart never sends it twice;
people who have not linked a channel get it when they next write; the channel's rate limiter paces
the sending.

```mermaid
stateDiagram-v2
    [*] --> system: /ngungdichvu
    system --> start: a system button or typed
    start --> end: 21/11 8h00, or 17h30 (today)
    end --> reason: 10h00 (same day) or 22/11 17h00
    reason --> confirm
    confirm --> [*]: 📢 Send to everyone
```
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import col, select

from bot.core import Ctx, Flow, Inbound, Reply, Step, choice, choice_value, destinations, keyboard
from bot.engine.reminders import queue_notice
from bot.flows.incidents import service as incidents
from bot.flows.incidents.models import Outage
from bot.flows.incidents.report import parse_when
from bot.flows.incidents.settings import IncidentSettings
from bot.i18n import N_, Translator
from bot.roles import Role
from bot.steps import Confirm
from bot.text import clean, parse_id
from storage.models import Person, PersonStatus

MAX_SYSTEM = 200
MAX_REASON = 500
MAX_DAYS = 14
MAX_AHEAD_DAYS = 90
CONFIRM = Confirm(send=N_("📢 Send to everyone"))


def _people(ctx: Ctx) -> list[Person]:
    assert ctx.person is not None
    return list(ctx.session.exec(select(Person).where(Person.school_id == ctx.person.school_id,
                                                      Person.status == PersonStatus.ACTIVE)
                                 .order_by(col(Person.id))))


def _window(tr: Translator, start: datetime, end: datetime) -> str:
    if tr.date(start) == tr.date(end):
        return tr.t("from {start} to {end} on {date}", start=tr.time(start), end=tr.time(end), date=tr.date(start))
    return tr.t("from {start} to {end}", start=tr.datetime(start), end=tr.datetime(end))


def notice_text(tr: Translator, outage: Outage, announcer: Person) -> str:
    return "\n".join([
        tr.t("📢 <b>Planned interruption: {system}</b>", system=outage.system),
        tr.t("When: {window}", window=_window(tr, outage.starts_at, outage.ends_at)),
        tr.t("Reason: {reason}", reason=outage.reason),
        tr.t("Announced by {name}. Please save your work before it starts.", name=incidents.person_label(tr, announcer)),
    ])


def start(ctx: Ctx) -> Step:
    """Offer the school's systems (a school setting) or a typed name."""
    systems = IncidentSettings.of(ctx.school).outage_systems[:12]
    return Step.goto("system", Reply(ctx.t("📢 <b>Announce a planned interruption</b>\nWhich system? Tap it or type "
                                           "its name."),
                                     buttons=keyboard(*[choice(s, f"s{i}") for i, s in enumerate(systems)],
                                                      per_row=2)))


def system(ctx: Ctx, msg: Inbound) -> Step:
    """A system button or a typed name."""
    systems = IncidentSettings.of(ctx.school).outage_systems[:12]
    value = choice_value(msg) or ""
    if value.startswith("s") and parse_id(value[1:]) is not None and int(value[1:]) < len(systems):
        name = systems[int(value[1:])]
    else:
        name = clean(msg.text or "")
    if not name or len(name) > MAX_SYSTEM:
        return Step.stay(Reply(ctx.t("Please tap a system or type its name (at most {max} characters).",
                                     max=MAX_SYSTEM)))
    ctx.data["system"] = name
    return Step.goto("start", Reply(ctx.t("From when? For example 21/11 8h00, or 17h30 for today.")))


def start_at(ctx: Ctx, msg: Inbound) -> Step:
    """The start: not in the past (a few minutes' grace), at most two weeks ahead."""
    when = parse_when(msg.text, today=ctx.today(), tz=ctx.tr.tz)
    if when is None:
        return Step.stay(Reply(ctx.t("I could not read that. Type it like 21/11 8h00, or 17h30 for today.")))
    if when < ctx.local_now() - timedelta(minutes=15):
        return Step.stay(Reply(ctx.t("That time has passed. From when will the system be interrupted?")))
    if when > ctx.local_now() + timedelta(days=MAX_AHEAD_DAYS):
        return Step.stay(Reply(ctx.t("That is too far ahead. Please announce it closer to the date.")))
    ctx.data["start"] = when.isoformat()
    return Step.goto("end", Reply(ctx.t("Until when? For example 10h00 (the same day) or 22/11 17h00.")))


def end_at(ctx: Ctx, msg: Inbound) -> Step:
    """The end: after the start (a bare time means the start's day), at most two weeks later."""
    begin = datetime.fromisoformat(ctx.data["start"])
    when = parse_when(msg.text, today=begin.date(), tz=ctx.tr.tz)
    if when is None:
        return Step.stay(Reply(ctx.t("I could not read that. Type it like 10h00, or 22/11 17h00.")))
    if when <= begin:
        return Step.stay(Reply(ctx.t("The end must come after the start ({start}). Until when?",
                                     start=ctx.tr.datetime(begin))))
    if when - begin > timedelta(days=MAX_DAYS):
        return Step.stay(Reply(ctx.t("An interruption of more than {n} days? Please check the dates.", n=MAX_DAYS)))
    ctx.data["end"] = when.isoformat()
    return Step.goto("reason", Reply(ctx.t("Why? For example: upgrading the server, scheduled maintenance.")))


def reason(ctx: Ctx, msg: Inbound) -> Step:
    """The reason, then the summary with the number of people it reaches."""
    text = clean(msg.text or "")
    if not text or len(text) > MAX_REASON:
        return Step.stay(Reply(ctx.t("Please give the reason in at most {max} characters.", max=MAX_REASON)))
    ctx.data["reason"] = text
    return _summary(ctx)


def _summary(ctx: Ctx) -> Step:
    start_l, end_l = datetime.fromisoformat(ctx.data["start"]), datetime.fromisoformat(ctx.data["end"])
    n = len([p for p in _people(ctx) if ctx.person is None or p.id != ctx.person.id])
    lines = [ctx.t("<b>Planned interruption: {system}</b>", system=ctx.data["system"]),
             ctx.t("When: {window}", window=_window(ctx.tr, start_l, end_l)),
             ctx.t("Reason: {reason}", reason=ctx.data["reason"]), "",
             ctx.tn("Send this notice to {n} person of the school?", "Send this notice to the {n} people of the school?",
                    n)]
    return CONFIRM.ask(ctx, "\n".join(lines))


def _send(ctx: Ctx) -> Step:
    """Record the outage and queue one notice per person (idempotent per person and outage)."""
    person, school = ctx.person, ctx.school
    assert person is not None and school is not None and school.id is not None
    outage = Outage(school_id=school.id, system=ctx.data["system"], starts_at=datetime.fromisoformat(ctx.data["start"]),
                    ends_at=datetime.fromisoformat(ctx.data["end"]), reason=ctx.data["reason"],
                    announced_by=person.id, created_at=ctx.now)
    ctx.session.add(outage)
    ctx.session.flush()
    queued = waiting = 0
    for p in _people(ctx):
        if p.id == person.id:
            continue
        reachable = bool(destinations(ctx.session, p))

        def make(tr: Translator) -> Reply:
            return Reply(notice_text(tr, outage, person))

        if queue_notice(ctx, rule="outage", person=p, period=f"outage:{outage.id}", make=make, school_id=school.id):
            queued += 1
            waiting += 0 if reachable else 1
    outage.recipients = queued
    ctx.session.add(outage)
    ctx.audit("outage.announced", f"outage:{outage.id}", system=outage.system, start=outage.starts_at.isoformat(),
              end=outage.ends_at.isoformat(), recipients=queued, held=waiting)
    text = ctx.tn("📢 The notice is on its way to {n} person.", "📢 The notice is on its way to {n} people.", queued)
    if waiting:
        text += "\n" + ctx.tn("{n} of them has not linked the assistant yet and will get it on their next message.",
                              "{n} of them have not linked the assistant yet and will get it on their next message.",
                              waiting)
    return Step.done(Reply(text))


confirm = CONFIRM.step(_send)


FLOW = Flow(
    name="outage",
    command="ngungdichvu",
    title=N_("Announce an interruption"),
    description=N_("Announce a planned interruption of a system to everyone (IT)"),
    icon="📢",
    start=start,
    states={"system": system, "start": start_at, "end": end_at, "reason": reason, "confirm": confirm},
    roles=frozenset({Role.IT, Role.PRINCIPAL, Role.VICE_PRINCIPAL}),
    order=60,
)
