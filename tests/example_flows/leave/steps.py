"""``/nghiphep`` — a teacher asks for leave for a date range with a reason; the principal (or the
active delegate) approves through the approval engine, which tells the teacher.

```mermaid
stateDiagram-v2
    [*] --> dates: /nghiphep
    dates --> reason: a range from today on, not overlapping another leave
    reason --> confirm
    confirm --> [*]: sent to the principal (approval "leave")
```
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from enum import StrEnum

from bot.core import Ctx, Flow, Inbound, Reply, Step
from bot.engine import approvals
from bot.i18n import N_
from bot.roles import Role
from bot.steps import Confirm, RangeQuestion
from bot.text import clean
from storage.models import Approval
from tests.example_flows.leave import service
from tests.example_flows.leave.models import LeaveStatus
from tests.example_flows.leave.settings import LeaveSettings

KIND = "leave"  # the approval kind this workflow decides (its hook: on_decided)
RANGE = RangeQuestion()
CONFIRM = Confirm()
MAX_REASON = 500


class LeaveState(StrEnum):
    DATES = "dates"
    REASON = "reason"
    CONFIRM = "confirm"


def check_reason(text: str, *, shortest: int) -> str | None:
    """None when the reason can be sent, else an error key (``short``, ``long``)."""
    if len(text) < shortest:
        return "short"
    if len(text) > MAX_REASON:
        return "long"
    return None


REASON_ERRORS = {
    "short": N_("Please give a reason of at least {n} characters."),
    "long": N_("Please keep the reason to at most {n} characters."),
}


def start(ctx: Ctx) -> Step:
    """Asks for the days."""
    return RANGE.ask(ctx, LeaveState.DATES, ctx.t("Which days do you need off? Tap a choice or type a range such "
                                                  "as “từ 24/11 đến 28/11”."))


def dates(ctx: Ctx, msg: Inbound) -> Step:
    """Stores the range (from today on, within the school's limit, not overlapping) and asks why."""
    person = ctx.person
    assert person is not None
    rng = replace(RANGE, max_days=LeaveSettings.of(ctx.school).max_days).answer(ctx, msg)
    if isinstance(rng, Reply):
        return Step.stay(rng)
    first, last = rng
    clash = service.overlapping(session=ctx.session, school_id=person.school_id, requester_id=person.id or 0,
                                start=first, end=last)
    if clash is not None:
        return Step.stay(Reply(ctx.t("You already asked for leave from {start} to {end}. Choose other days.",
                                     start=ctx.tr.date(clash.start_date), end=ctx.tr.date(clash.end_date))))
    ctx.data["start"], ctx.data["end"] = first.isoformat(), last.isoformat()
    return Step.goto(LeaveState.REASON, Reply(ctx.t("What is the reason for your leave?")))


def reason(ctx: Ctx, msg: Inbound) -> Step:
    """Stores the reason and shows the summary to confirm."""
    text = clean(msg.text or "")
    shortest = LeaveSettings.of(ctx.school).min_reason
    error = check_reason(text, shortest=shortest)
    if error is not None:
        return Step.stay(Reply(ctx.t(REASON_ERRORS[error], n=shortest if error == "short" else MAX_REASON)))
    ctx.data["reason"] = text
    first, last = _range(ctx)
    return CONFIRM.ask(ctx, "\n".join([
        ctx.t("<b>Leave request</b>"),
        ctx.t("From {start} to {end}", start=ctx.tr.long_date(first), end=ctx.tr.long_date(last)),
        ctx.t("Reason: {text}", text=text), "",
        ctx.t("Send it to the principal?")]))


def send(ctx: Ctx) -> Step:
    """Records the request and asks the approval engine for the principal's decision."""
    person = ctx.person
    assert person is not None
    first, last = _range(ctx)
    req = service.create(session=ctx.session, school_id=person.school_id, requester_id=person.id or 0,
                         start=first, end=last, reason=ctx.data["reason"], now=ctx.now)
    ctx.audit("leave.requested", f"leave:{req.id}", start=first.isoformat(), end=last.isoformat())
    ap = approvals.request(
        ctx, kind=KIND, subject=f"leave:{req.id}", title=N_("Leave request"),
        fields=[(N_("Dates"), f"{ctx.tr.date(first)} – {ctx.tr.date(last)}"), (N_("Reason"), req.reason)],
        stages=[approvals.StageSpec(role=Role.PRINCIPAL)])
    req.approval_id = ap.id
    ctx.session.add(req)
    return Step.done(Reply(ctx.t("Leave request #{id} was sent to the principal. You will be told the decision.",
                                 id=req.id)))


def _range(ctx: Ctx) -> tuple[date, date]:
    return date.fromisoformat(ctx.data["start"]), date.fromisoformat(ctx.data["end"])


# -- after the principal's decision ---------------------------------------------------------------
def on_decided(ctx: Ctx, approval: Approval, outcome: str) -> None:
    """Approval hook: records the outcome on the request (the engine has told the teacher)."""
    req = service.for_approval(session=ctx.session, school_id=approval.school_id, approval_id=approval.id or 0)
    if req is None:
        return
    status = LeaveStatus.APPROVED if outcome == "approved" else LeaveStatus.REJECTED
    if service.settle(session=ctx.session, request=req, status=status, now=ctx.now):
        ctx.audit(f"leave.{status}", f"leave:{req.id}")


FLOW = Flow(
    name="leave",
    command="nghiphep",
    title=N_("Request leave"),
    description=N_("Ask the principal for days off"),
    icon="🌴",
    start=start,
    states={LeaveState.DATES: dates, LeaveState.REASON: reason, LeaveState.CONFIRM: CONFIRM.step(send)},
    roles=frozenset(Role) - {Role.PRINCIPAL},
    order=60,
)
