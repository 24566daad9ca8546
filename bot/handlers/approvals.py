"""Approval taps (``ap:<id>:ok|no|note``), the reason / note prompts, and ``/choduyet``."""

from __future__ import annotations

from bot.core import Ctx, Flow, Handler, Inbound, Registry, Reply, Step, choice, choice_value, keyboard
from bot.engine import approvals
from bot.i18n import N_
from bot.text import clean

MAX_NOTE = 1000
LIST_LIMIT = 10


def on_tap(ctx: Ctx) -> Step:
    """A tap on an approval card. The payload only names the approval; the server decides who may act."""
    parsed = approvals.parse_payload(ctx.inbound.payload)
    if parsed is None:
        ctx.audit("approval.refused", "", reason="malformed", payload=(ctx.inbound.payload or "")[:64])
        return Step.stay(Reply(ctx.t("That button is no longer valid.")))
    approval_id, action = parsed
    if action == "ok":
        return Step.stay(*approvals.decide(ctx, approval_id, approve=True))
    ap, refusal = approvals.check(ctx, approval_id, action)
    if refusal is not None:
        return Step.stay(refusal)
    flow = "approval_reason" if action == "no" else "approval_note"
    return Step.start_flow(flow, seed={"approval_id": approval_id})


def _reason_start(ctx: Ctx) -> Step:
    """Ask for an optional reason before rejecting."""
    return Step.goto("reason", Reply(
        ctx.t("Why are you rejecting request #{id}? Send the reason, or tap “Reject without reason”.",
              id=ctx.data.get("approval_id")),
        buttons=keyboard(choice(ctx.t("Reject without reason"), "skip"),
                         choice(ctx.t("↩️ Do not reject"), "back"), per_row=1)))


def _reason(ctx: Ctx, msg: Inbound) -> Step:
    """Reject with the typed reason (or none); ``back`` leaves the request undecided."""
    approval_id = int(ctx.data.get("approval_id", 0))
    value = choice_value(msg)
    if value == "back":
        return Step.done(Reply(ctx.t("Request #{id} was not rejected; it is still waiting.", id=approval_id)))
    if value == "skip":
        return Step.done(*approvals.decide(ctx, approval_id, approve=False))
    note = clean(msg.text or "")
    if not note:
        return Step.stay(Reply(ctx.t("Please send the reason as text, or tap one of the buttons.")))
    if len(note) > MAX_NOTE:
        return Step.stay(Reply(ctx.t("The reason is too long (at most {max} characters).", max=MAX_NOTE)))
    return Step.done(*approvals.decide(ctx, approval_id, approve=False, note=note))


def _note_start(ctx: Ctx) -> Step:
    """Ask for the note's text."""
    return Step.goto("note", Reply(ctx.t("Send the note to add to request #{id}.", id=ctx.data.get("approval_id")),
                                   buttons=keyboard(choice(ctx.t("↩️ Back"), "back"))))


def _note(ctx: Ctx, msg: Inbound) -> Step:
    """Add the note; everyone's card shows it."""
    approval_id = int(ctx.data.get("approval_id", 0))
    if choice_value(msg) == "back":
        return Step.done(Reply(ctx.t("No note was added.")))
    note = clean(msg.text or "")
    if not note or len(note) > MAX_NOTE:
        return Step.stay(Reply(ctx.t("Please send the note as text (at most {max} characters).", max=MAX_NOTE)))
    return Step.done(*approvals.add_note(ctx, approval_id, note))


def pending(ctx: Ctx) -> Step:
    """``/choduyet``: what awaits this person, oldest first, each with its buttons."""
    assert ctx.person is not None
    items = approvals.pending_for(ctx.session, ctx.person, ctx.today())
    if not items:
        return Step.stay(Reply(ctx.t("Nothing is waiting for your decision. 👍")))
    replies = [Reply(ctx.tn("{n} request is waiting for you (oldest first):",
                            "{n} requests are waiting for you (oldest first):", len(items)))]
    for ap in items[:LIST_LIMIT]:
        replies.append(approvals.card(ctx.session, ctx.tr, ap, buttons=True))
    if len(items) > LIST_LIMIT:
        replies.append(Reply(ctx.t("…and {n} more. Decide these first, then type /choduyet again.",
                                   n=len(items) - LIST_LIMIT)))
    return Step.stay(*replies)


REASON_FLOW = Flow(name="approval_reason", title=N_("Reject a request"), start=_reason_start,
                   states={"reason": _reason}, in_menu=False)
NOTE_FLOW = Flow(name="approval_note", title=N_("Add a note to a request"), start=_note_start,
                 states={"note": _note}, in_menu=False)


def register(reg: Registry) -> None:
    # Cards kept for an approver who had not linked reach them when they link (bot/engine/waiting.py).
    reg.person_linked_hooks.append(approvals.deliver_waiting)
    reg.add_handler(Handler(on_tap, prefix=approvals.PREFIX))
    reg.add_handler(Handler(pending, commands=("choduyet",), description=N_("Requests waiting for your decision"),
                            order=10))
    reg.add_flow(REASON_FLOW)
    reg.add_flow(NOTE_FLOW)
