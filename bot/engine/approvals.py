"""The approval engine shared by every workflow.

A workflow calls :func:`request` with ordered stages; the engine picks the approvers (role →
people, honouring an active delegation of the principal), sends each a card with ✅ Duyệt /
❌ Từ chối, and records where every card went. A tap arrives as the opaque payload
``ap:<id>:<action>``; :func:`decide` checks on the server that the person may decide *now*
(school, active status, role, named person, delegation, escalation) and decides with a
conditional update, so a double tap, two approvers at once or a replayed payload yield exactly one
decision. Every card of the approval is then edited to show the outcome, the requester is told,
and the workflow's hook (``Registry.approval_hooks[kind]``) runs in the same unit.

A card for an approver with no linked channel is kept (:mod:`bot.engine.waiting`) and delivered
once when they link (:func:`deliver_waiting`, a person-linked hook); the requester is told whose link
it waits for, and the school's IT team once who must link.

```mermaid
stateDiagram-v2
    [*] --> pending: request()
    pending --> pending: stage approved, next stage starts
    pending --> approved: last stage approved
    pending --> rejected: any stage rejected
    pending --> cancelled: cancel()
```
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import update
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, col, select

from bot import steps
from bot.core import Button, Ctx, MessageRef, Outbound, Reply, destinations, keyboard
from bot.engine import waiting
from bot.i18n import N_, Translator, escape
from bot.roles import ROLE_TITLES, Role
from storage.models import (
    Approval,
    ApprovalStage,
    ApprovalStatus,
    Delegation,
    Person,
    SentMessage,
    StageStatus,
)
from storage.people import people_with_role

PREFIX = "ap"
CARD = "approval"
ACTIONS = ("ok", "no", "note")


@dataclass(frozen=True, slots=True)
class StageSpec:
    """One stage: anyone active holding ``role``, or the named ``person_id``."""

    role: str | None = None
    person_id: int | None = None

    def __post_init__(self) -> None:
        if (self.role is None) == (self.person_id is None):
            raise ValueError("a stage needs exactly one of role or person_id")


def payload(approval_id: int, action: str) -> str:
    return f"{PREFIX}:{approval_id}:{action}"


def parse_payload(data: str | None) -> tuple[int, str] | None:
    """``ap:12:ok`` → (12, "ok"); anything else (forged, malformed) → None."""
    parsed = steps.parse_payload(data, PREFIX, ACTIONS)
    return (parsed.id, parsed.action) if parsed else None


# -- delegation -----------------------------------------------------------------------------------
def active_delegation(session: Session, *, school_id: int, on: date) -> Delegation | None:
    return session.exec(select(Delegation).where(
        Delegation.school_id == school_id, col(Delegation.ended_at).is_(None),
        col(Delegation.start_date) <= on, col(Delegation.end_date) >= on,
    ).order_by(col(Delegation.id).desc())).first()


def delegation_valid(d: Delegation | None, on: date) -> bool:
    return d is not None and d.ended_at is None and d.start_date <= on <= d.end_date


# -- who may decide -------------------------------------------------------------------------------
def _stages_key(approval_id: int | None) -> tuple[str, int | None]:
    return ("approval_stages", approval_id)


def stages_of(session: Session, approval: Approval) -> list[ApprovalStage]:
    """The approval's stages in order, read once per unit of work.

    The list is kept in ``Session.info``: its objects are the session's own (the identity map would
    hand back the same objects, with the same attribute values, from a second query), so changes
    made through them are seen; only :func:`request` creates stages, and it fills the list itself."""
    key = _stages_key(approval.id)
    cached = session.info.get(key)
    if cached is None:
        cached = list(session.exec(select(ApprovalStage).where(ApprovalStage.approval_id == approval.id)
                                   .order_by(col(ApprovalStage.idx))))
        session.info[key] = cached
    return list(cached)


def _forget_stages(session: Session, approval: Approval) -> None:
    session.info.pop(_stages_key(approval.id), None)


def current_stage(session: Session, approval: Approval) -> ApprovalStage | None:
    return next((st for st in stages_of(session, approval) if st.idx == approval.current_stage), None)


def stage_approvers(session: Session, approval: Approval, stage: ApprovalStage) -> list[Person]:
    """The people whose cards this stage needs (active only; extra ones added by escalation)."""
    people: list[Person] = []
    if stage.person_id is not None:
        p = session.get(Person, stage.person_id)
        people = [p] if p else []
    elif stage.delegate_id is not None:
        p = session.get(Person, stage.delegate_id)
        people = [p] if p else []
    elif stage.role:
        people = people_with_role(session, school_id=approval.school_id, role=stage.role)
    for pid in stage.extra_ids or []:
        p = session.get(Person, pid)
        if p is not None and all(p.id != q.id for q in people):
            people.append(p)
    return [p for p in people if p.is_active and p.school_id == approval.school_id]


def may_decide(session: Session, person: Person, approval: Approval, stage: ApprovalStage,
               today: date) -> tuple[bool, bool, str]:
    """(allowed, by_delegation, reason). Decided on the server from the database, never the payload."""
    if person.school_id != approval.school_id:
        return False, False, "school"
    if not person.is_active:
        return False, False, "inactive"
    if stage.person_id is not None:
        return (person.id == stage.person_id), False, "not_named"
    if person.id in (stage.extra_ids or []):
        return True, False, ""
    if stage.role and stage.role in person.roles:
        return True, False, ""
    if stage.delegate_id is not None and person.id == stage.delegate_id:
        d = session.get(Delegation, stage.delegation_id) if stage.delegation_id else None
        if d is not None and d.ended_at is None and d.delegate_id == person.id:
            return True, True, ""
        return False, False, "delegation_ended"
    return False, False, "role"


# -- cards ----------------------------------------------------------------------------------------
_STAGE_ICON = {StageStatus.APPROVED: "✅", StageStatus.REJECTED: "❌"}


def _name(session: Session, person_id: int | None) -> str:
    p = session.get(Person, person_id) if person_id else None
    return p.full_name if p else "?"


def _who(tr: Translator, session: Session, stage: ApprovalStage) -> str:
    if stage.person_id:
        return _name(session, stage.person_id)
    if stage.delegate_id:
        return tr.t("{name} (delegated by the principal)", name=_name(session, stage.delegate_id))
    try:
        return tr.t(ROLE_TITLES[Role(stage.role or "")])
    except (ValueError, KeyError):
        return stage.role or "?"


def card_text(session: Session, tr: Translator, approval: Approval) -> str:
    stages = stages_of(session, approval)
    requester = session.get(Person, approval.requester_id) if approval.requester_id else None
    lines = [tr.t("📋 <b>{title}</b> · request #{id}", title=tr.t(approval.title), id=approval.id)]
    if requester is not None:
        who = requester.full_name + (f" ({requester.unit})" if requester.unit else "")
        lines.append(tr.t("From: {name}", name=who))
    lines.append(tr.t("Sent: {time}", time=tr.datetime(approval.created_at)))
    for item in approval.fields or []:
        if isinstance(item, list | tuple) and len(item) == 2:
            lines.append(f"{escape(tr.t(str(item[0])))}: {escape(item[1])}")
    for st in stages:
        prefix = tr.t("Step {n}/{total}: ", n=st.idx + 1, total=len(stages)) if len(stages) > 1 else ""
        if st.status in (StageStatus.APPROVED, StageStatus.REJECTED):
            when = tr.datetime(st.decided_at) if st.decided_at else ""
            if st.status == StageStatus.APPROVED:
                line = tr.t("✅ Approved by {name} at {time}", name=_name(session, st.decided_by), time=when)
            else:
                line = tr.t("❌ Rejected by {name} at {time}", name=_name(session, st.decided_by), time=when)
            if st.by_delegation:
                line += " " + tr.t("(by delegation of the principal)")
            lines.append(escape(prefix) + line)
            if st.note:
                lines.append(tr.t("Reason / note: {note}", note=st.note))
        elif st.status == StageStatus.PENDING:
            lines.append(escape(prefix) + tr.t("⏳ Waiting for {who}", who=_who(tr, session, st)))
        elif len(stages) > 1:
            lines.append(escape(prefix) + tr.t("then {who}", who=_who(tr, session, st)))
    if approval.note:
        lines.append(tr.t("Notes: {notes}", notes=approval.note))
    if approval.status == ApprovalStatus.CANCELLED:
        lines.append(tr.t("🚫 Cancelled"))
    return "\n".join(lines)


def card(session: Session, tr: Translator, approval: Approval, *, buttons: bool) -> Reply:
    kb: tuple[tuple[Button, ...], ...] = ()
    if buttons and approval.status == ApprovalStatus.PENDING:
        assert approval.id is not None
        kb = keyboard([Button(tr.t("✅ Approve"), payload(approval.id, "ok")),
                       Button(tr.t("❌ Reject"), payload(approval.id, "no"))],
                      [Button(tr.t("📝 Add a note"), payload(approval.id, "note"))])
    return Reply(card_text(session, tr, approval), buttons=kb, track=(CARD, str(approval.id)))


def _send_cards(ctx: Ctx, approval: Approval, people: Sequence[Person], prefix: str | None = None) -> int:
    """Queue the card for each person; one who has no linked channel gets it when they link
    (:func:`bot.engine.waiting.keep`). Returns how many were reached now."""
    sent = 0
    for p in people:
        def make(tr: Translator, _p: Person = p) -> Reply:
            r = card(ctx.session, tr, approval, buttons=True)
            if prefix:
                return Reply(tr.t(prefix) + "\n\n" + r.text, buttons=r.buttons, track=r.track)
            return r
        if ctx.send_to(p, make):
            sent += 1
        else:
            waiting.keep(ctx, p, CARD, approval.id, prefix=prefix)
    return sent


def refresh_cards(ctx: Ctx, approval: Approval) -> None:
    """Edit every card of this approval to its current state (buttons only while its stage is open)."""
    rows = ctx.session.exec(select(SentMessage).where(SentMessage.ref_kind == CARD,
                                                      SentMessage.ref_id == str(approval.id))).all()
    stage = current_stage(ctx.session, approval)
    for row in rows:
        person = ctx.session.get(Person, row.person_id) if row.person_id else None
        tr = ctx.translator_for(person) if person else ctx.tr
        live = (approval.status == ApprovalStatus.PENDING and stage is not None and person is not None
                and may_decide(ctx.session, person, approval, stage, ctx.today())[0])
        r = card(ctx.session, tr, approval, buttons=live)
        ctx.outbox.append(Outbound(row.channel, row.chat_id,
                                   Reply(r.text, buttons=r.buttons,
                                         edit=MessageRef(row.channel, row.chat_id, row.message_id)),
                                   row.person_id))
    # The card just tapped may not be recorded yet (the tap beat the unit that records where the
    # card went, right after sending it): edit it from the tap itself.
    tap = ctx.inbound
    if (tap.payload and tap.message_id and ctx.person is not None
            and tap.payload.startswith(f"{PREFIX}:{approval.id}:")
            and not any((row.channel, row.chat_id, row.message_id) == (tap.channel, tap.chat_id, tap.message_id)
                        for row in rows)):
        live = (approval.status == ApprovalStatus.PENDING and stage is not None
                and may_decide(ctx.session, ctx.person, approval, stage, ctx.today())[0])
        r = card(ctx.session, ctx.tr, approval, buttons=live)
        ctx.outbox.append(Outbound(tap.channel, tap.chat_id,
                                   Reply(r.text, buttons=r.buttons,
                                         edit=MessageRef(tap.channel, tap.chat_id, tap.message_id)),
                                   ctx.person.id))


# -- requesting -----------------------------------------------------------------------------------
def request(ctx: Ctx, *, kind: str, subject: str, title: str, fields: Sequence[tuple[str, str]],
            stages: Sequence[StageSpec], requester: Person | None = None) -> Approval:
    """Create an approval and send the first stage's cards. ``title`` and field labels are msgids."""
    requester = requester or ctx.person
    if requester is None or not stages:
        raise ValueError("an approval needs a requester and at least one stage")
    ap = Approval(school_id=requester.school_id, kind=kind, subject=subject, requester_id=requester.id,
                  title=title, fields=[[label, value] for label, value in fields], created_at=ctx.now)
    ctx.session.add(ap)
    ctx.session.flush()
    made = [ApprovalStage(approval_id=ap.id or 0, idx=i, role=spec.role, person_id=spec.person_id)
            for i, spec in enumerate(stages)]
    made[0].status, made[0].started_at = StageStatus.PENDING, ctx.now  # opened below (_activate)
    ctx.session.add_all(made)
    ctx.session.flush()
    ctx.session.info[_stages_key(ap.id)] = made
    ctx.audit("approval.requested", f"approval:{ap.id}", kind=kind, subject=subject,
              stages=[s.role or f"person:{s.person_id}" for s in stages], requester=requester.id)
    _activate(ctx, ap)
    return ap


def _activate(ctx: Ctx, ap: Approval) -> None:
    stage = current_stage(ctx.session, ap)
    assert stage is not None
    stage.status = StageStatus.PENDING
    stage.started_at = ctx.now
    if stage.role == Role.PRINCIPAL and stage.person_id is None:
        d = active_delegation(ctx.session, school_id=ap.school_id, on=ctx.today())
        if d is not None:
            stage.delegate_id, stage.delegation_id = d.delegate_id, d.id
            ctx.audit("approval.routed_to_delegate", f"approval:{ap.id}", delegation=d.id, delegate=d.delegate_id)
    ctx.session.add(stage)
    ctx.session.flush()
    people = stage_approvers(ctx.session, ap, stage)
    if not people:
        # Nobody holds the role: the principal decides instead, so nothing waits forever.
        principals = people_with_role(ctx.session, school_id=ap.school_id, role=Role.PRINCIPAL)
        stage.extra_ids = [p.id for p in principals if p.id is not None]
        ctx.session.add(stage)
        people = principals
        ctx.audit("approval.no_approver", f"approval:{ap.id}", role=stage.role, fallback=stage.extra_ids)
    elif stage.delegate_id is not None and not any(destinations(ctx.session, p) for p in people):
        # The delegate has not linked yet: the principal, who may decide a principal's stage anyway,
        # gets the card too (the delegate's is kept for when they link).
        have = {p.id for p in people}
        principals = [p for p in people_with_role(ctx.session, school_id=ap.school_id, role=Role.PRINCIPAL)
                      if p.id not in have]
        stage.extra_ids = list(stage.extra_ids or []) + [p.id for p in principals if p.id is not None]
        ctx.session.add(stage)
        people = people + principals
        ctx.audit("approval.delegate_unlinked", f"approval:{ap.id}", delegate=stage.delegate_id,
                  also=[p.id for p in principals])
    if _send_cards(ctx, ap, people) == 0:
        requester = ctx.session.get(Person, ap.requester_id) if ap.requester_id else None
        if people:
            ctx.audit("approval.waiting_for_link", f"approval:{ap.id}", to=[p.id for p in people])
        if requester is None:
            return
        if not people:
            ctx.send_to(requester, lambda tr: Reply(tr.t(
                "Request #{id} is recorded, but nobody on the staff list can approve it. "
                "Please tell the school office.", id=ap.id)))
            return
        ctx.send_to(requester, lambda tr: Reply(tr.t(
            "⏳ Your request #{id} ({title}) is recorded and is waiting for {who} to link their account to "
            "the assistant. It reaches them as soon as they do; you need not send it again.",
            id=ap.id, title=tr.t(ap.title), who=_awaited(tr, stage, people))))


def _awaited(tr: Translator, stage: ApprovalStage, people: Sequence[Person]) -> str:
    """Who the stage waits for: the role's title ("Hiệu trưởng") when it goes to the role's holders,
    else the people by name and title."""
    if (stage.person_id is None and stage.delegate_id is None and stage.role
            and all(stage.role in p.roles for p in people)):
        try:
            return tr.t(ROLE_TITLES[Role(stage.role)])
        except (ValueError, KeyError):
            pass
    return ", ".join(f"{p.full_name} ({waiting.role_titles(tr, p)})" for p in people)


# -- deciding -------------------------------------------------------------------------------------
def _already(ctx: Ctx, ap: Approval) -> Reply:
    stages = stages_of(ctx.session, ap)
    decided = [s for s in stages if s.status in (StageStatus.APPROVED, StageStatus.REJECTED)]
    if ap.status == ApprovalStatus.CANCELLED:
        return Reply(ctx.t("Request #{id} was cancelled.", id=ap.id))
    if decided:
        last = decided[-1]
        when = ctx.tr.datetime(last.decided_at) if last.decided_at else ""
        if last.status == StageStatus.APPROVED:
            return Reply(ctx.t("Request #{id} was already approved by {name} at {time}.",
                               id=ap.id, name=_name(ctx.session, last.decided_by), time=when))
        return Reply(ctx.t("Request #{id} was already rejected by {name} at {time}.",
                           id=ap.id, name=_name(ctx.session, last.decided_by), time=when))
    return Reply(ctx.t("Request #{id} is no longer waiting for a decision.", id=ap.id))


def check(ctx: Ctx, approval_id: int, action: str) -> tuple[Approval | None, Reply | None]:
    """Load and authorise. Returns (approval, None) when the person may act now, else (_, refusal)."""
    person = ctx.person
    assert person is not None
    ap = ctx.session.get(Approval, approval_id)
    if ap is None or ap.school_id != person.school_id:
        ctx.audit("approval.refused", f"approval:{approval_id}", reason="unknown" if ap is None else "school",
                  action=action)
        return None, Reply(ctx.t("You cannot decide this request."))
    stage = current_stage(ctx.session, ap)
    allowed = False
    reason = "closed"
    if stage is not None:
        allowed, _, reason = may_decide(ctx.session, person, ap, stage, ctx.today())
    if ap.status != ApprovalStatus.PENDING:
        # Tell those who could have decided who did; tell nobody else anything.
        was_approver = any(may_decide(ctx.session, person, ap, s, ctx.today())[0]
                           for s in stages_of(ctx.session, ap))
        if was_approver or ap.requester_id == person.id:
            return ap, _already(ctx, ap)
        ctx.audit("approval.refused", f"approval:{ap.id}", reason="role", action=action)
        return ap, Reply(ctx.t("You cannot decide this request."))
    if not allowed:
        ctx.audit("approval.refused", f"approval:{ap.id}", reason=reason, action=action)
        return ap, Reply(ctx.t("You cannot decide this request."))
    return ap, None


def decide(ctx: Ctx, approval_id: int, approve: bool, note: str = "") -> list[Reply]:
    """Decide the current stage. Exactly one decision wins; everyone else is told who decided."""
    person = ctx.person
    assert person is not None
    ap, refusal = check(ctx, approval_id, "ok" if approve else "no")
    if refusal is not None or ap is None:
        return [refusal] if refusal else []
    stage = current_stage(ctx.session, ap)
    assert stage is not None and stage.id is not None
    _, by_delegation, _ = may_decide(ctx.session, person, ap, stage, ctx.today())
    new = StageStatus.APPROVED if approve else StageStatus.REJECTED
    res = ctx.session.execute(
        update(ApprovalStage)
        .where(col(ApprovalStage.id) == stage.id, col(ApprovalStage.status) == StageStatus.PENDING)
        .values(status=new, decided_by=person.id, decided_at=ctx.now, by_delegation=by_delegation,
                note=note[:1000])
        .execution_options(synchronize_session=False))
    if res.rowcount != 1:  # type: ignore[attr-defined]
        ctx.session.expire_all()  # another approver won: read what they wrote, not our cached rows
        _forget_stages(ctx.session, ap)
        return [_already(ctx, ap)]
    # What the update wrote, without reading it back (the row is ours until the commit).
    for key, value in (("status", new), ("decided_by", person.id), ("decided_at", ctx.now),
                       ("by_delegation", by_delegation), ("note", note[:1000])):
        set_committed_value(stage, key, value)
    ctx.audit("approval.decided", f"approval:{ap.id}", stage=stage.idx, decision=new, by_delegation=by_delegation,
              note=note[:1000], kind=ap.kind, subject=ap.subject)
    stages = stages_of(ctx.session, ap)
    requester = ctx.session.get(Person, ap.requester_id) if ap.requester_id else None
    replies: list[Reply] = []
    if approve and stage.idx + 1 < len(stages):
        ap.current_stage = stage.idx + 1
        ctx.session.add(ap)
        ctx.session.flush()
        refresh_cards(ctx, ap)
        _activate(ctx, ap)
        replies.append(Reply(ctx.t("Approved. Request #{id} moves on to its next step.", id=ap.id)))
        if requester is not None and requester.id != person.id:
            ctx.send_to(requester, lambda tr: Reply(tr.t(
                "Your request #{id} ({title}) was approved by {name} and moves on to its next step.",
                id=ap.id, title=tr.t(ap.title), name=person.full_name)))
        return replies
    final = ApprovalStatus.APPROVED if approve else ApprovalStatus.REJECTED
    done = ctx.session.execute(update(Approval).where(col(Approval.id) == ap.id,
                                                      col(Approval.status) == ApprovalStatus.PENDING)
                               .values(status=final, decided_at=ctx.now, decided_by=person.id)
                               .execution_options(synchronize_session=False))
    if done.rowcount == 1:  # type: ignore[attr-defined]
        for key, value in (("status", final), ("decided_at", ctx.now), ("decided_by", person.id)):
            set_committed_value(ap, key, value)
    else:  # cancelled meanwhile (the stage was still open): show what is there
        ctx.session.refresh(ap)
    refresh_cards(ctx, ap)
    if approve:
        replies.append(Reply(ctx.t("✅ You approved request #{id}.", id=ap.id)))
    else:
        replies.append(Reply(ctx.t("❌ You rejected request #{id}.", id=ap.id)))
    if requester is not None and requester.id != person.id:
        def tell(tr: Translator) -> Reply:
            if approve:
                text = tr.t("✅ Your request #{id} ({title}) was approved by {name}.",
                            id=ap.id, title=tr.t(ap.title), name=person.full_name)
            else:
                text = tr.t("❌ Your request #{id} ({title}) was rejected by {name}.",
                            id=ap.id, title=tr.t(ap.title), name=person.full_name)
            if note:
                text += "\n" + tr.t("Reason / note: {note}", note=note)
            return Reply(text)
        ctx.send_to(requester, tell)
    hook = ctx.registry.approval_hooks.get(ap.kind)
    if hook is not None:
        hook(ctx, ap, final)
    return replies


def add_note(ctx: Ctx, approval_id: int, note: str) -> list[Reply]:
    person = ctx.person
    assert person is not None
    ap, refusal = check(ctx, approval_id, "note")
    if refusal is not None or ap is None:
        return [refusal] if refusal else []
    line = f"{person.full_name}: {note[:500]}"
    ap.note = (ap.note + "\n" + line).strip() if ap.note else line
    ctx.session.add(ap)
    ctx.session.flush()
    ctx.audit("approval.note", f"approval:{ap.id}", note=note[:500])
    refresh_cards(ctx, ap)
    return [Reply(ctx.t("Your note was added to request #{id}.", id=ap.id))]


def cancel(ctx: Ctx, approval: Approval, reason: str = "") -> bool:
    res = ctx.session.execute(update(Approval).where(col(Approval.id) == approval.id,
                                                     col(Approval.status) == ApprovalStatus.PENDING)
                              .values(status=ApprovalStatus.CANCELLED, decided_at=ctx.now)
                              .execution_options(synchronize_session=False))
    if res.rowcount != 1:  # type: ignore[attr-defined]
        return False
    ctx.session.refresh(approval)
    ctx.audit("approval.cancelled", f"approval:{approval.id}", reason=reason)
    refresh_cards(ctx, approval)
    return True


# -- pending work ---------------------------------------------------------------------------------
def pending_for(session: Session, person: Person, today: date) -> list[Approval]:
    """Approvals waiting for this person, oldest first."""
    out: list[Approval] = []
    for ap in session.exec(select(Approval).where(Approval.school_id == person.school_id,
                                                  Approval.status == ApprovalStatus.PENDING)
                           .order_by(col(Approval.created_at), col(Approval.id))):
        stage = current_stage(session, ap)
        if stage is not None and may_decide(session, person, ap, stage, today)[0]:
            out.append(ap)
    return out


def count_pending(session: Session, person: Person, today: date) -> int:
    """How many approvals wait for this person now (one query; for the menu)."""
    rows = session.exec(select(ApprovalStage, Approval).where(
        col(ApprovalStage.approval_id) == col(Approval.id), Approval.school_id == person.school_id,
        Approval.status == ApprovalStatus.PENDING, ApprovalStage.status == StageStatus.PENDING,
        col(ApprovalStage.idx) == col(Approval.current_stage))).all()
    return sum(1 for stage, ap in rows if may_decide(session, person, ap, stage, today)[0])


def addressed_to(stage: ApprovalStage, approval: Approval, person: Person) -> bool:
    """Whether the stage's cards go to this person (as :func:`stage_approvers` picks them): a principal
    whose stage went to the delegate is not among them, though they may still decide it."""
    if not person.is_active or person.school_id != approval.school_id:
        return False
    if person.id in (stage.extra_ids or []):
        return True
    if stage.person_id is not None:
        return stage.person_id == person.id
    if stage.delegate_id is not None:
        return stage.delegate_id == person.id
    return bool(stage.role) and stage.role in person.roles


LINKED_PREFIX = N_("📬 This request was waiting for you to link your account.")


def deliver_waiting(ctx: Ctx, person: Person) -> int:
    """Person-linked hook: the cards of approvals now waiting for ``person`` that never reached them —
    kept when they had no linked channel, or made before cards were kept — each once, whatever the
    number of processes or linked channels (:mod:`bot.engine.waiting`). Returns how many were sent."""
    if person.id is None or not person.is_active:
        return 0
    kept = dict(waiting.claim(ctx, person, CARD))
    received = set(ctx.session.exec(select(SentMessage.ref_id).where(SentMessage.ref_kind == CARD,
                                                                     SentMessage.person_id == person.id)).all())
    sent: list[int] = []
    for ap in ctx.session.exec(select(Approval).where(Approval.school_id == person.school_id,
                                                      Approval.status == ApprovalStatus.PENDING)
                               .order_by(col(Approval.created_at), col(Approval.id))).all():
        stage = current_stage(ctx.session, ap)
        if stage is None or stage.status != StageStatus.PENDING or not addressed_to(stage, ap, person):
            continue
        ref = str(ap.id)
        if ref in kept:
            prefix = kept[ref] or LINKED_PREFIX
        elif ref in received or not waiting.mark_delivered(ctx, person, CARD, ref):
            continue  # it reached them before, or another unit is delivering it right now
        else:
            prefix = LINKED_PREFIX
        if _send_cards(ctx, ap, [person], prefix=prefix):
            sent.append(ap.id or 0)
    if sent:
        ctx.audit("approval.delivered_on_link", f"person:{person.id}", approvals=sent)
    return len(sent)


def tick(ctx: Ctx) -> None:
    """Remind, then escalate, pending stages — each once (conditional updates survive restarts)."""
    s = ctx.settings
    remind_after = timedelta(minutes=s.approval_remind_after_minutes)
    escalate_after = timedelta(minutes=s.approval_escalate_after_minutes)
    rows = ctx.session.exec(select(ApprovalStage, Approval).where(
        col(ApprovalStage.approval_id) == col(Approval.id), Approval.status == ApprovalStatus.PENDING,
        ApprovalStage.status == StageStatus.PENDING, col(ApprovalStage.started_at).is_not(None))).all()
    for stage, ap in rows:
        started = stage.started_at
        assert started is not None
        if stage.escalated_at is None and ctx.now - started >= escalate_after:
            if _claim(ctx, stage, "escalated_at"):
                _escalate(ctx, ap, stage)
            continue
        if stage.reminded_at is None and stage.escalated_at is None and ctx.now - started >= remind_after:
            if _claim(ctx, stage, "reminded_at"):
                people = stage_approvers(ctx.session, ap, stage)
                _send_cards(ctx, ap, people, prefix=N_("⏰ Reminder: this request is still waiting for you."))
                ctx.audit("approval.reminded", f"approval:{ap.id}", stage=stage.idx,
                          to=[p.id for p in people])


def _claim(ctx: Ctx, stage: ApprovalStage, column: str) -> bool:
    res = ctx.session.execute(update(ApprovalStage).where(col(ApprovalStage.id) == stage.id,
                                                          getattr(ApprovalStage, column).is_(None))
                              .values({column: ctx.now}).execution_options(synchronize_session=False))
    ctx.session.refresh(stage)
    return res.rowcount == 1  # type: ignore[attr-defined]


def _escalate(ctx: Ctx, ap: Approval, stage: ApprovalStage) -> None:
    current = {p.id for p in stage_approvers(ctx.session, ap, stage)}
    principals = people_with_role(ctx.session, school_id=ap.school_id, role=Role.PRINCIPAL)
    targets: list[Person] = [p for p in principals if p.id not in current]
    if not targets:
        # The principal already has it: the delegate if one is active, else the vice principals.
        d = active_delegation(ctx.session, school_id=ap.school_id, on=ctx.today())
        if d is not None:
            dp = ctx.session.get(Person, d.delegate_id)
            targets = [dp] if dp is not None else []
        if not targets:
            targets = people_with_role(ctx.session, school_id=ap.school_id, role=Role.VICE_PRINCIPAL)
    targets = [p for p in targets if p.id not in current and p.is_active]
    stage.extra_ids = list(stage.extra_ids or []) + [p.id for p in targets if p.id is not None]
    ctx.session.add(stage)
    ctx.session.flush()
    ctx.audit("approval.escalated", f"approval:{ap.id}", stage=stage.idx, to=[p.id for p in targets])
    _send_cards(ctx, ap, targets, prefix=N_("⚠️ Escalated to you: this request has waited too long."))


# -- delegation changes ---------------------------------------------------------------------------
def start_delegation(ctx: Ctx, *, delegate: Person, start: date, end: date) -> Delegation:
    principal = ctx.person
    assert principal is not None and principal.id is not None and delegate.id is not None
    d = Delegation(school_id=principal.school_id, principal_id=principal.id, delegate_id=delegate.id,
                   start_date=start, end_date=end, created_at=ctx.now)
    ctx.session.add(d)
    ctx.session.flush()
    ctx.audit("delegation.started", f"delegation:{d.id}", delegate=delegate.id, start=start.isoformat(),
              end=end.isoformat())
    return d


def end_delegation(ctx: Ctx, d: Delegation) -> int:
    """End early; pending stages routed to the delegate go back to the principal (new cards)."""
    d.ended_at = ctx.now
    ctx.session.add(d)
    moved = 0
    for stage in ctx.session.exec(select(ApprovalStage).where(ApprovalStage.delegation_id == d.id,
                                                              ApprovalStage.status == StageStatus.PENDING)).all():
        ap = ctx.session.get(Approval, stage.approval_id)
        if ap is None or ap.status != ApprovalStatus.PENDING:
            continue
        stage.delegate_id = None
        ctx.session.add(stage)
        ctx.session.flush()
        refresh_cards(ctx, ap)
        _send_cards(ctx, ap, stage_approvers(ctx.session, ap, stage))
        moved += 1
    ctx.audit("delegation.ended", f"delegation:{d.id}", moved=moved)
    return moved


def reachable(session: Session, person: Person) -> bool:
    return bool(destinations(session, person))


__all__ = [
    "StageSpec", "active_delegation", "add_note", "addressed_to", "cancel", "card", "check", "count_pending",
    "decide", "delegation_valid", "deliver_waiting", "end_delegation", "may_decide", "parse_payload", "payload",
    "pending_for", "refresh_cards", "request", "start_delegation", "tick", "reachable",
]
