"""``/uyquyen`` — the principal delegates approvals to a vice principal for a date range
(seed 004 Điều 12.1), or ends a delegation early. Approvals created inside the range go to the
delegate and are recorded as decided by delegation; the delegate gets nothing else of the
principal's rights.

```mermaid
stateDiagram-v2
    [*] --> current: a delegation is active or planned
    [*] --> pick: none
    current --> pick: new
    current --> [*]: end early / close
    pick --> range: vice principal chosen
    range --> confirm: dates chosen or typed
    confirm --> [*]: confirmed
```
"""

from __future__ import annotations

from datetime import date

from sqlmodel import col, select

from bot.core import Ctx, Flow, Inbound, Reply, Step, Workflow, choice, choice_value, keyboard
from bot.engine import approvals
from bot.i18n import N_, Translator
from bot.roles import Role
from bot.steps import TOO_LONG, Confirm, PersonPicker, RangeQuestion
from bot.text import parse_id
from storage.models import Delegation, Person
from storage.people import people_with_role

MAX_DAYS = 92
PICKER = PersonPicker(none=N_("Please choose a vice principal from the buttons."), label=lambda p: p.full_name)
RANGE = RangeQuestion(errors={TOO_LONG: N_("A delegation can last at most {n} days.")}, max_days=MAX_DAYS)
CONFIRM = Confirm(send=N_("✅ Confirm"), send_value="yes", cancel_value="no", cancelled=N_("Nothing was changed."))


def _open_delegations(ctx: Ctx) -> list[Delegation]:
    assert ctx.person is not None
    return list(ctx.session.exec(select(Delegation).where(
        Delegation.school_id == ctx.person.school_id, col(Delegation.ended_at).is_(None),
        col(Delegation.end_date) >= ctx.today()).order_by(col(Delegation.start_date))))


def _describe(ctx: Ctx, d: Delegation, tr: Translator | None = None) -> str:
    tr = tr or ctx.tr
    delegate = ctx.session.get(Person, d.delegate_id)
    return tr.t("{name}: from {start} to {end}", name=delegate.full_name if delegate else "?",
                start=tr.date(d.start_date), end=tr.date(d.end_date))


def start(ctx: Ctx) -> Step:
    """Show current delegations (with “end early”), or go straight to choosing a vice principal."""
    current = _open_delegations(ctx)
    if not current:
        return _ask_delegate(ctx)
    lines = [ctx.t("<b>Current delegations</b>")] + [_describe(ctx, d) for d in current]
    buttons = [choice(ctx.t("⏹ End: {name}", name=_describe(ctx, d)), f"end{d.id}") for d in current]
    buttons += [choice(ctx.t("➕ New delegation"), "new"), choice(ctx.t("Close"), "close")]
    return Step.goto("current", Reply("\n".join(lines), buttons=keyboard(*buttons, per_row=1)))


def _vice_principals(ctx: Ctx) -> list[Person]:
    assert ctx.person is not None
    return [p for p in people_with_role(ctx.session, school_id=ctx.person.school_id, role=Role.VICE_PRINCIPAL)
            if p.id != ctx.person.id]


def _ask_delegate(ctx: Ctx) -> Step:
    vps = _vice_principals(ctx)
    if not vps:
        return Step.done(Reply(ctx.t("There is no active vice principal in the staff list to delegate to.")))
    return Step.goto("pick", Reply(ctx.t("Who will decide in your place?"), buttons=PICKER.buttons(vps)))


def current(ctx: Ctx, msg: Inbound) -> Step:
    """End one delegation early, start a new one, or close."""
    value = choice_value(msg) or ""
    if value == "new":
        return _ask_delegate(ctx)
    if value == "close":
        return Step.done(Reply(ctx.t("Nothing was changed.")))
    if value.startswith("end") and parse_id(value[3:]) is not None:
        d = ctx.session.get(Delegation, parse_id(value[3:]))
        assert ctx.person is not None
        if d is None or d.school_id != ctx.person.school_id or d.ended_at is not None:
            return Step.stay(Reply(ctx.t("That delegation has already ended.")))
        moved = approvals.end_delegation(ctx, d)
        delegate = ctx.session.get(Person, d.delegate_id)
        if delegate is not None:
            principal = ctx.person
            ctx.send_to(delegate, lambda tr: Reply(tr.t(
                "{principal} has ended the delegation to you ({period}). New requests go to the principal again.",
                principal=principal.full_name, period=_describe(ctx, d, tr))))
        return Step.done(Reply(ctx.t("Delegation ended. {n} waiting request(s) came back to you.", n=moved)))
    return Step.stay(Reply(ctx.t("Please choose one of the buttons.")))


def pick(ctx: Ctx, msg: Inbound) -> Step:
    """Choose the vice principal (a button, checked again on the server, or part of the name)."""
    p = PICKER.answer(ctx, msg, _vice_principals(ctx))
    if isinstance(p, Reply):
        return Step.stay(p)
    ctx.data["delegate_id"] = p.id
    return RANGE.ask(ctx, "range", ctx.t("For which days? Tap a choice or type a range such as “từ 24/11 đến "
                                         "28/11”."))


def range_(ctx: Ctx, msg: Inbound) -> Step:
    """Dates from a button or typed (``từ 24/11 đến 28/11``); not in the past, at most 92 days."""
    rng = RANGE.answer(ctx, msg)
    if isinstance(rng, Reply):
        return Step.stay(rng)
    start_d, end_d = rng
    ctx.data["start"], ctx.data["end"] = start_d.isoformat(), end_d.isoformat()
    delegate = ctx.session.get(Person, ctx.data.get("delegate_id"))
    return CONFIRM.ask(ctx, ctx.t("Delegate your approvals to {name} from {start} to {end}?",
                                  name=delegate.full_name if delegate else "?", start=ctx.tr.long_date(start_d),
                                  end=ctx.tr.long_date(end_d)))


def _create(ctx: Ctx) -> Step:
    """Create the delegation and tell both people."""
    principal = ctx.person
    assert principal is not None
    delegate = ctx.session.get(Person, ctx.data.get("delegate_id"))
    start_d, end_d = date.fromisoformat(ctx.data["start"]), date.fromisoformat(ctx.data["end"])
    if delegate is None or not delegate.is_active or delegate.school_id != principal.school_id:
        return Step.done(Reply(ctx.t("That person can no longer receive a delegation.")))
    for d in _open_delegations(ctx):
        if d.start_date <= end_d and start_d <= d.end_date:
            return Step.done(Reply(ctx.t("These dates overlap an existing delegation ({period}). End it first.",
                                         period=_describe(ctx, d))))
    d = approvals.start_delegation(ctx, delegate=delegate, start=start_d, end=end_d)
    ctx.send_to(delegate, lambda tr: Reply(tr.t(
        "{principal} has delegated approvals to you from {start} to {end}. Requests created in this period "
        "will come to you; type /choduyet to see them.", principal=principal.full_name,
        start=tr.date(d.start_date), end=tr.date(d.end_date))))
    return Step.done(Reply(ctx.t("Done. {period}. {name} has been told.", period=_describe(ctx, d),
                                 name=delegate.full_name)))


confirm = CONFIRM.step(_create)


FLOW = Flow(
    name="delegation",
    command="uyquyen",
    title=N_("Delegate approvals"),
    description=N_("Let a vice principal decide while you are away"),
    icon="🤝",
    start=start,
    states={"current": current, "pick": pick, "range": range_, "confirm": confirm},
    roles=frozenset({Role.PRINCIPAL}),
    order=80,
)

WORKFLOW = Workflow(name=FLOW.name, title=FLOW.title, flows=(FLOW,))
