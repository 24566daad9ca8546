"""Teaching equipment: what the equipment workflows share (seed 003 Điều 6–8, 12; 004 Điều 8.3).

* **Changes** (new stock, damaged, repaired, moved, lost, disposed, stock-take correction) are kept in
  ``equipment_change``. Someone who records equipment (the equipment officer, BGH) records a change
  directly: it is *pending* the principal's monthly approval. Anyone else *reports* it: the equipment
  officer gets a card to record it (✔) or send it back (❌ with a reason).
* **Deadline** (Điều 7.2): a change must be recorded within 10 working days of the day it happened
  (:func:`bot.workdays.add_working_days`: weekends, Vietnamese public holidays and Tết skipped, plus
  the school's own days off). A change recorded after that is marked late.
* **Monthly approval** (Điều 7.6): the month's recorded changes become one batch; the principal (or
  the active delegate) gets one card — counts by kind, the list, an Excel file — and decides
  ``✅ Duyệt tất cả`` or item by item. Only an approved change alters the catalogue; a change that
  no longer fits (the stock would fall below zero) is rejected automatically. Every decision is a
  conditional update (exactly one wins) and is audited; rejected changes go back to their author
  with the reason.

Per-school settings: ``School.settings["equipment"]``, declared in
:class:`bot.flows.equipment.settings.EquipmentSettings`."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, select

from bot.core import Button, Ctx, FileRef, MessageRef, Outbound, OutFile, Reply, keyboard
from bot.engine import approvals
from bot.flows.equipment.catalogue import Stock, apply_kind
from bot.flows.equipment.models import (
    ChangeKind,
    ChangeStatus,
    EquipmentBatch,
    EquipmentChange,
    EquipmentItem,
    ItemStatus,
)
from bot.flows.equipment.settings import EquipmentSettings
from bot.i18n import N_, Translator
from bot.roles import Role
from bot.text import fold
from bot.workdays import add_working_days, school_days_off, working_days_between
from storage.models import Person, School, SentMessage
from storage.people import people_with_role

AREA = EquipmentSettings.section
#: deadline_days (Điều 7.2), remind_days, year_start and hk2_start (MM-DD): see EquipmentSettings
DEFAULTS: dict[str, Any] = EquipmentSettings.defaults()
#: Who records changes directly and confirms what others report.
RECORDER_ROLES = frozenset({Role.EQUIPMENT, Role.VICE_PRINCIPAL, Role.PRINCIPAL})
#: Who may see equipment reports.
REPORT_ROLES = frozenset({Role.PRINCIPAL, Role.VICE_PRINCIPAL, Role.EQUIPMENT, Role.DEPT_HEAD})

REPORT_PREFIX = "eqk"   # eqk:<change>:ok|no  — the equipment officer records / sends back a report
BATCH_PREFIX = "eqb"    # eqb:<batch>:all|items — the monthly card
CHANGE_CARD = "eqchange"
BATCH_CARD = "eqbatch"
LIST_LIMIT = 25

KIND_ICONS: dict[str, str] = {
    ChangeKind.NEW: "➕", ChangeKind.DAMAGED: "⚠️", ChangeKind.REPAIRED: "🔧", ChangeKind.MOVED: "🚚",
    ChangeKind.LOST: "❓", ChangeKind.DISPOSED: "🗑", ChangeKind.STOCKTAKE: "📋",
}
KIND_NAMES: dict[str, str] = {
    ChangeKind.NEW: N_("New stock"),
    ChangeKind.DAMAGED: N_("Damaged"),
    ChangeKind.REPAIRED: N_("Repaired"),
    ChangeKind.MOVED: N_("Moved to another room"),
    ChangeKind.LOST: N_("Lost"),
    ChangeKind.DISPOSED: N_("Disposed of"),
    ChangeKind.STOCKTAKE: N_("Stock-take correction"),
}
ITEM_STATUS_NAMES: dict[str, str] = {
    ItemStatus.ACTIVE: N_("in use"),
    ItemStatus.PROPOSED: N_("new, waiting for approval"),
    ItemStatus.REJECTED: N_("not approved"),
    ItemStatus.DISPOSED: N_("disposed of"),
    ItemStatus.LOST: N_("lost"),
}
CHANGE_STATUS_NAMES: dict[str, str] = {
    ChangeStatus.REPORTED: N_("reported, waiting to be recorded"),
    ChangeStatus.PENDING: N_("recorded, waiting for the principal"),
    ChangeStatus.APPROVED: N_("approved"),
    ChangeStatus.REJECTED: N_("rejected"),
}


# -- settings and deadlines -----------------------------------------------------------------------
def area_settings(school: School | None) -> dict[str, Any]:
    """The school's equipment settings as a dict (defaults where nothing usable is stored)."""
    return EquipmentSettings.of(school).model_dump()


def days_off(school: School | None) -> frozenset[date]:
    return school_days_off(school.settings if school else None)


def deadline_for(school: School | None, happened_on: date) -> date:
    """The last day to record a change that happened on ``happened_on`` (10 working days, Điều 7.2)."""
    return add_working_days(happened_on, EquipmentSettings.of(school).deadline_days, days_off(school))


def working_days_left(school: School | None, today: date, due: date) -> int:
    return working_days_between(today, due, days_off(school))


# -- texts ----------------------------------------------------------------------------------------
def kind_name(tr: Translator, kind: str) -> str:
    return tr.t(KIND_NAMES.get(kind, kind))


def kind_label(tr: Translator, kind: str) -> str:
    return f"{KIND_ICONS.get(kind, '')} {kind_name(tr, kind)}".strip()


def item_title(item: EquipmentItem) -> str:
    return f"{item.code} · {item.name}"


def item_state(tr: Translator, item: EquipmentItem, stock: Stock | None = None) -> str:
    s = stock or Stock.of(item)
    text = tr.t("Quantity {quantity} (damaged {damaged}) · room {room}", quantity=tr.number(s.quantity),
                damaged=tr.number(s.damaged), room=s.room or "—")
    if s.status != ItemStatus.ACTIVE:
        text += " · " + tr.t(ITEM_STATUS_NAMES.get(s.status, s.status))
    return text


def change_what(tr: Translator, ch: EquipmentChange) -> str:
    if ch.kind == ChangeKind.MOVED:
        return tr.t("{kind}: {old} → {new}", kind=kind_name(tr, ch.kind), old=ch.room_from or "—", new=ch.room_to)
    if ch.kind == ChangeKind.STOCKTAKE:
        return tr.t("{kind}: {n} counted", kind=kind_name(tr, ch.kind), n=tr.number(ch.quantity))
    return tr.t("{kind}: {n}", kind=kind_name(tr, ch.kind), n=tr.number(ch.quantity))


def change_line(session: Session, tr: Translator, ch: EquipmentChange) -> str:
    item = session.get(EquipmentItem, ch.item_id)
    reporter = session.get(Person, ch.reporter_id)
    line = tr.t("#{id} {item} — {what} — {date} — {name}", id=ch.id, item=item_title(item) if item else "?",
                what=change_what(tr, ch), date=tr.date(ch.happened_on), name=reporter.full_name if reporter else "?")
    if ch.late:
        line += " " + tr.t("⏰ late")
    return line


# -- who ------------------------------------------------------------------------------------------
def unique_people(people: Iterable[Person]) -> list[Person]:
    out: list[Person] = []
    for p in people:
        if p.is_active and all(p.id != q.id for q in out):
            out.append(p)
    return out


def recorders(session: Session, school_id: int) -> list[Person]:
    """Who records reported changes: the equipment officers, else the vice principals, else the principal."""
    for role in (Role.EQUIPMENT, Role.VICE_PRINCIPAL, Role.PRINCIPAL):
        people = people_with_role(session, school_id=school_id, role=role)
        if people:
            return people
    return []


def dept_heads_for(session: Session, person: Person | None, school_id: int) -> list[Person]:
    """The head of the person's department (tổ); all department heads when that is unknown."""
    heads = people_with_role(session, school_id=school_id, role=Role.DEPT_HEAD)
    if person is not None and person.unit:
        mine = [h for h in heads if fold(h.unit) == fold(person.unit)]
        if mine:
            return mine
    return heads


def is_recorder(person: Person) -> bool:
    return person.has_role(*RECORDER_ROLES)


def deciders(session: Session, school_id: int, today: date) -> list[Person]:
    """Who decides the monthly batch now: the principal(s) and the active delegate (004 Điều 12.1)."""
    people = people_with_role(session, school_id=school_id, role=Role.PRINCIPAL)
    d = approvals.active_delegation(session, school_id=school_id, on=today)
    if d is not None:
        delegate = session.get(Person, d.delegate_id)
        if delegate is not None:
            people = [delegate, *people]
    return unique_people(people)


def may_decide_batch(ctx: Ctx, batch: EquipmentBatch) -> tuple[bool, bool]:
    """(allowed, by_delegation) — from the database, never from the button."""
    person = ctx.person
    if person is None or not person.is_active or person.school_id != batch.school_id:
        return False, False
    if person.has_role(Role.PRINCIPAL):
        return True, False
    d = approvals.active_delegation(ctx.session, school_id=batch.school_id, on=ctx.today())
    if d is not None and d.delegate_id == person.id:
        return True, True
    return False, False


# -- recording ------------------------------------------------------------------------------------
def save_change(ctx: Ctx, *, item: EquipmentItem, kind: str, quantity: int, happened_on: date,
                room_to: str = "", note: str = "", photo: FileRef | None = None) -> EquipmentChange:
    """Write a change: *pending* when a recorder writes it, else *reported* (the recorders are told)."""
    person, school = ctx.person, ctx.school
    assert person is not None and person.id is not None and school is not None and school.id is not None
    assert item.id is not None
    due = deadline_for(school, happened_on)
    direct = is_recorder(person)
    today = ctx.today()
    ch = EquipmentChange(
        school_id=school.id, item_id=item.id, kind=kind, quantity=quantity, room_from=item.room if kind ==
        ChangeKind.MOVED else "", room_to=room_to, happened_on=happened_on, due_on=due,
        status=ChangeStatus.PENDING if direct else ChangeStatus.REPORTED, reporter_id=person.id,
        reported_at=ctx.now, recorder_id=person.id if direct else None, recorded_at=ctx.now if direct else None,
        late=direct and today > due, note=note[:500],
        photo_path=(photo.path or "") if photo else "", photo_sha256=photo.sha256 if photo else "")
    ctx.session.add(ch)
    ctx.session.flush()
    ctx.audit("equipment.change_recorded" if direct else "equipment.change_reported", f"eqchange:{ch.id}",
              item=item.code, kind=kind, quantity=quantity, happened_on=happened_on.isoformat(),
              due_on=due.isoformat(), late=ch.late, room_to=room_to or None, photo=bool(ch.photo_path))
    if not direct:
        for p in recorders(ctx.session, school.id):
            send_report_card(ctx, p, ch)
    return ch


def send_report_card(ctx: Ctx, person: Person, ch: EquipmentChange) -> None:
    if ch.photo_path:
        ctx.send_to(person, lambda tr: Reply(tr.t("📷 Photo of change #{id}", id=ch.id),
                                             file=OutFile("photo", ch.photo_path, f"thiet-bi-{ch.id}.jpg")))
    ctx.send_to(person, lambda tr: report_card(ctx.session, tr, ch, buttons=True, today=ctx.today()))


def report_card(session: Session, tr: Translator, ch: EquipmentChange, *, buttons: bool,
                today: date | None = None) -> Reply:
    item = session.get(EquipmentItem, ch.item_id)
    reporter = session.get(Person, ch.reporter_id)
    who = reporter.full_name + (f" ({reporter.unit})" if reporter and reporter.unit else "") if reporter else "?"
    lines = [tr.t("📝 <b>Equipment change reported</b> · #{id}", id=ch.id),
             tr.t("From: {name}", name=who),
             tr.t("Item: {item}", item=item_title(item) if item else "?"),
             tr.t("Change: {what}", what=change_what(tr, ch)),
             tr.t("Happened on: {date}", date=tr.date(ch.happened_on)),
             tr.t("Record it by: {date}", date=tr.date(ch.due_on))]
    if ch.note:
        lines.append(tr.t("Note: {note}", note=ch.note))
    if ch.status == ChangeStatus.REPORTED:
        if today is not None and today > ch.due_on:
            lines.append(tr.t("⏰ The 10-working-day deadline has passed: it will be marked late."))
    else:
        recorder = session.get(Person, ch.recorder_id or ch.decided_by or 0)
        if ch.status == ChangeStatus.REJECTED and ch.recorded_at is None:
            lines.append(tr.t("❌ Sent back by {name}: {reason}", name=recorder.full_name if recorder else "?",
                              reason=ch.reason or "—"))
        else:
            when = tr.datetime(ch.recorded_at) if ch.recorded_at else ""
            lines.append(tr.t("✔ Recorded by {name} at {time}", name=recorder.full_name if recorder else "?",
                              time=when))
    kb: tuple[tuple[Button, ...], ...] = ()
    if buttons and ch.status == ChangeStatus.REPORTED:
        kb = keyboard([Button(tr.t("✔ Record"), f"{REPORT_PREFIX}:{ch.id}:ok"),
                       Button(tr.t("❌ Not correct"), f"{REPORT_PREFIX}:{ch.id}:no")])
    return Reply("\n".join(lines), buttons=kb, track=(CHANGE_CARD, str(ch.id)))


def refresh_tracked(ctx: Ctx, kind: str, ref: str, make: Any) -> None:
    rows = ctx.session.exec(select(SentMessage).where(SentMessage.ref_kind == kind, SentMessage.ref_id == ref)).all()
    for row in rows:
        person = ctx.session.get(Person, row.person_id) if row.person_id else None
        tr = ctx.translator_for(person) if person else ctx.tr
        r: Reply = make(tr, person)
        ctx.outbox.append(Outbound(row.channel, row.chat_id, Reply(r.text, buttons=r.buttons, edit=MessageRef(
            row.channel, row.chat_id, row.message_id)), row.person_id))


def refresh_report_cards(ctx: Ctx, ch: EquipmentChange) -> None:
    refresh_tracked(ctx, CHANGE_CARD, str(ch.id), lambda tr, _p: report_card(ctx.session, tr, ch, buttons=True,
                                                                       today=ctx.today()))


def record_reported(ctx: Ctx, ch: EquipmentChange) -> Reply:
    """The equipment officer records a reported change (exactly once); late when past the deadline."""
    person = ctx.person
    assert person is not None
    late = ctx.today() > ch.due_on
    res = ctx.session.execute(update(EquipmentChange).where(
        col(EquipmentChange.id) == ch.id, col(EquipmentChange.status) == ChangeStatus.REPORTED)
        .values(status=ChangeStatus.PENDING, recorder_id=person.id, recorded_at=ctx.now, late=late)
        .execution_options(synchronize_session=False))
    if res.rowcount != 1:  # type: ignore[attr-defined]
        ctx.session.refresh(ch)
        return already_handled(ctx, ch)
    ctx.session.refresh(ch)
    ctx.audit("equipment.change_recorded", f"eqchange:{ch.id}", reported_by=ch.reporter_id, late=late)
    refresh_report_cards(ctx, ch)
    reporter = ctx.session.get(Person, ch.reporter_id)
    if reporter is not None and reporter.id != person.id:
        ctx.send_to(reporter, lambda tr: Reply(tr.t(
            "✔ Your equipment report #{id} ({what}) was recorded by {name}. The principal approves the month's "
            "changes together.", id=ch.id, what=change_what(tr, ch), name=person.full_name)))
    if late:
        return Reply(ctx.t("✔ Change #{id} is recorded. It is marked late: the deadline was {date}.", id=ch.id,
                           date=ctx.tr.date(ch.due_on)))
    return Reply(ctx.t("✔ Change #{id} is recorded and waits for the principal's monthly approval.", id=ch.id))


def already_handled(ctx: Ctx, ch: EquipmentChange) -> Reply:
    who = ctx.session.get(Person, ch.recorder_id or ch.decided_by or 0)
    name = who.full_name if who else "?"
    if ch.status == ChangeStatus.REJECTED:
        return Reply(ctx.t("Change #{id} was already sent back or rejected by {name}.", id=ch.id, name=name))
    return Reply(ctx.t("Change #{id} was already recorded by {name}.", id=ch.id, name=name))


def reject_reported(ctx: Ctx, ch: EquipmentChange, reason: str) -> Reply:
    """The equipment officer sends a report back (wrong item, already recorded …) with a reason."""
    person = ctx.person
    assert person is not None
    res = ctx.session.execute(update(EquipmentChange).where(
        col(EquipmentChange.id) == ch.id, col(EquipmentChange.status) == ChangeStatus.REPORTED)
        .values(status=ChangeStatus.REJECTED, decided_by=person.id, decided_at=ctx.now, reason=reason[:1000])
        .execution_options(synchronize_session=False))
    if res.rowcount != 1:  # type: ignore[attr-defined]
        ctx.session.refresh(ch)
        return already_handled(ctx, ch)
    ctx.session.refresh(ch)
    _retire_proposed(ctx, ch)
    ctx.audit("equipment.change_sent_back", f"eqchange:{ch.id}", reason=reason[:1000])
    refresh_report_cards(ctx, ch)
    _tell_rejected(ctx, ch, person)
    return Reply(ctx.t("Change #{id} was sent back to its author with your reason.", id=ch.id))


def _retire_proposed(ctx: Ctx, ch: EquipmentChange) -> None:
    """A new item whose only "new stock" change is rejected keeps its record and code, as not approved."""
    item = ctx.session.get(EquipmentItem, ch.item_id)
    if item is not None and item.status == ItemStatus.PROPOSED and ch.kind == ChangeKind.NEW:
        item.status, item.updated_at = ItemStatus.REJECTED, ctx.now
        ctx.session.add(item)


def _tell_rejected(ctx: Ctx, ch: EquipmentChange, by: Person | None) -> None:
    author = ctx.session.get(Person, ch.reporter_id)
    if author is None or (by is not None and author.id == by.id):
        return
    item = ctx.session.get(EquipmentItem, ch.item_id)
    ctx.send_to(author, lambda tr: Reply(tr.t(
        "❌ Your equipment change #{id} ({item}, {what}) was not accepted by {name}.\nReason: {reason}\n"
        "If it needs correcting, record it again with /thietbi.", id=ch.id,
        item=item_title(item) if item else "?", what=change_what(tr, ch),
        name=by.full_name if by else tr.t("the assistant"), reason=ch.reason or "—")))


# -- the monthly batch ----------------------------------------------------------------------------
def period_label(tr: Translator, period: str) -> str:
    """``2026-11`` → ``11/2026``."""
    y, _, m = period.partition("-")
    return tr.t("{month}/{year}", month=m, year=y)


def open_batch_changes(session: Session, batch: EquipmentBatch) -> list[EquipmentChange]:
    return list(session.exec(select(EquipmentChange).where(EquipmentChange.batch_id == batch.id,
                                                           EquipmentChange.status == ChangeStatus.PENDING)
                             .order_by(col(EquipmentChange.happened_on), col(EquipmentChange.id))))


def batch_changes(session: Session, batch: EquipmentBatch) -> list[EquipmentChange]:
    return list(session.exec(select(EquipmentChange).where(EquipmentChange.batch_id == batch.id)
                             .order_by(col(EquipmentChange.happened_on), col(EquipmentChange.id))))


def create_batch(session: Session, school: School, period: str, now: datetime) -> EquipmentBatch | None:
    """Gather the school's recorded, undecided changes into this month's batch (None when there are none)."""
    assert school.id is not None
    batch = session.exec(select(EquipmentBatch).where(EquipmentBatch.school_id == school.id,
                                                      EquipmentBatch.period == period)).first()
    if batch is not None:
        return batch
    pending = list(session.exec(select(EquipmentChange).where(
        EquipmentChange.school_id == school.id, EquipmentChange.status == ChangeStatus.PENDING,
        col(EquipmentChange.batch_id).is_(None))))
    if not pending:
        return None
    batch = EquipmentBatch(school_id=school.id, period=period, total=len(pending), created_at=now)
    session.add(batch)
    session.flush()
    for ch in pending:
        ch.batch_id = batch.id
        session.add(ch)
    session.flush()
    return batch


def reported_count(session: Session, school_id: int) -> int:
    """Changes reported by staff and not yet recorded by the equipment officer."""
    return len(session.exec(select(EquipmentChange.id).where(EquipmentChange.school_id == school_id,
                                                             EquipmentChange.status == ChangeStatus.REPORTED)).all())


def current_batch(session: Session, school_id: int) -> EquipmentBatch | None:
    return session.exec(select(EquipmentBatch).where(EquipmentBatch.school_id == school_id,
                                                     EquipmentBatch.status == "open")
                        .order_by(col(EquipmentBatch.id))).first()


def batch_card(session: Session, tr: Translator, batch: EquipmentBatch, *, buttons: bool) -> Reply:
    from storage.backup import last_backup

    changes = batch_changes(session, batch)
    lines = [tr.t("📋 <b>Equipment changes of {month} for your approval</b> · {n} changes",
                  month=period_label(tr, batch.period), n=tr.number(len(changes))),
             tr.t("Seed 003 Điều 7.6: the principal approves the month's updates.")]
    counts: dict[str, int] = {}
    for ch in changes:
        counts[ch.kind] = counts.get(ch.kind, 0) + 1
    lines.append(tr.t("By kind: {counts}", counts=" · ".join(f"{kind_name(tr, k)}: {tr.number(n)}"
                                                               for k, n in counts.items())))
    late = sum(1 for ch in changes if ch.late)
    if late:
        lines.append(tr.t("⏰ {n} of them were recorded after the 10-working-day deadline.", n=tr.number(late)))
    lines.append("")
    marks = {ChangeStatus.APPROVED: "✅ ", ChangeStatus.REJECTED: "❌ "}
    for ch in changes[:LIST_LIMIT]:
        lines.append(marks.get(ChangeStatus(ch.status), "• ") + change_line(session, tr, ch))
    if len(changes) > LIST_LIMIT:
        lines.append(tr.t("…and {n} more (see the Excel file).", n=tr.number(len(changes) - LIST_LIMIT)))
    lines.append("")
    waiting = reported_count(session, batch.school_id)
    if waiting:
        lines.append(tr.t("📝 {n} reported changes are still waiting for the equipment officer to record them; they "
                          "will come in a later month.", n=tr.number(waiting)))
    info = last_backup(session)
    if info is None:
        lines.append(tr.t("💾 No backup of the data is recorded yet (Điều 12.1: at least every 3 months)."))
    else:
        lines.append(tr.t("💾 Last backup: {date}.", date=tr.date(info["at"])))
    if batch.status != "open":
        decider = session.get(Person, batch.decided_by or 0)
        approved = sum(1 for ch in changes if ch.status == ChangeStatus.APPROVED)
        rejected = sum(1 for ch in changes if ch.status == ChangeStatus.REJECTED)
        lines.append(tr.t("Decided by {name} at {time}: {approved} approved, {rejected} rejected.",
                          name=decider.full_name if decider else "?",
                          time=tr.datetime(batch.decided_at) if batch.decided_at else "",
                          approved=tr.number(approved), rejected=tr.number(rejected)))
        if batch.by_delegation:
            lines.append(tr.t("(by delegation of the principal)"))
    else:
        left = sum(1 for ch in changes if ch.status == ChangeStatus.PENDING)
        if left != len(changes):
            lines.append(tr.t("⏳ {n} still to decide.", n=tr.number(left)))
    kb: tuple[tuple[Button, ...], ...] = ()
    if buttons and batch.status == "open":
        kb = keyboard([Button(tr.t("✅ Approve all"), f"{BATCH_PREFIX}:{batch.id}:all"),
                       Button(tr.t("🔎 Review one by one"), f"{BATCH_PREFIX}:{batch.id}:items")])
    return Reply("\n".join(lines), buttons=kb, track=(BATCH_CARD, str(batch.id)))


def refresh_batch_cards(ctx: Ctx, batch: EquipmentBatch) -> None:
    refresh_tracked(ctx, BATCH_CARD, str(batch.id), lambda tr, _p: batch_card(ctx.session, tr, batch, buttons=True))


def approve_change(ctx: Ctx, ch: EquipmentChange, *, by_delegation: bool) -> str:
    """Approve one pending change and apply it to the catalogue. Returns ``approved``, ``conflict``
    (it no longer fits: rejected automatically, author told) or ``already``."""
    person = ctx.person
    assert person is not None
    res = ctx.session.execute(update(EquipmentChange).where(
        col(EquipmentChange.id) == ch.id, col(EquipmentChange.status) == ChangeStatus.PENDING)
        .values(status=ChangeStatus.APPROVED, decided_by=person.id, decided_at=ctx.now, by_delegation=by_delegation)
        .execution_options(synchronize_session=False))
    if res.rowcount != 1:  # type: ignore[attr-defined]
        ctx.session.refresh(ch)
        return "already"
    ctx.session.refresh(ch)
    item = ctx.session.exec(select(EquipmentItem).where(EquipmentItem.id == ch.item_id).with_for_update()).one()
    before = Stock.of(item)
    after = apply_kind(before, ch.kind, ch.quantity, ch.room_to)
    if after is None:
        ch.status = ChangeStatus.REJECTED
        ch.reason = ctx.t("It no longer fits the catalogue: the stock would fall below zero (now {state}).",
                          state=item_state(ctx.tr, item))
        ctx.session.add(ch)
        _retire_proposed(ctx, ch)
        ctx.audit("equipment.change_conflict", f"eqchange:{ch.id}", item=item.code, kind=ch.kind,
                  quantity=ch.quantity, state=before.as_dict())
        _tell_rejected(ctx, ch, None)
        return "conflict"
    item.quantity, item.damaged, item.room, item.status = after.quantity, after.damaged, after.room, after.status
    item.updated_at = ctx.now
    ch.state_before, ch.state_after, ch.applied_at = before.as_dict(), after.as_dict(), ctx.now
    ctx.session.add(item)
    ctx.session.add(ch)
    ctx.session.flush()
    ctx.audit("equipment.change_approved", f"eqchange:{ch.id}", item=item.code, kind=ch.kind, quantity=ch.quantity,
              before=before.as_dict(), after=after.as_dict(), by_delegation=by_delegation)
    return "approved"


def reject_change(ctx: Ctx, ch: EquipmentChange, reason: str, *, by_delegation: bool) -> bool:
    """Reject one pending change with a reason; its author is told. False if it was already decided."""
    person = ctx.person
    assert person is not None
    res = ctx.session.execute(update(EquipmentChange).where(
        col(EquipmentChange.id) == ch.id, col(EquipmentChange.status) == ChangeStatus.PENDING)
        .values(status=ChangeStatus.REJECTED, decided_by=person.id, decided_at=ctx.now, by_delegation=by_delegation,
                reason=reason[:1000])
        .execution_options(synchronize_session=False))
    if res.rowcount != 1:  # type: ignore[attr-defined]
        ctx.session.refresh(ch)
        return False
    ctx.session.refresh(ch)
    _retire_proposed(ctx, ch)
    ctx.audit("equipment.change_rejected", f"eqchange:{ch.id}", reason=reason[:1000], by_delegation=by_delegation)
    _tell_rejected(ctx, ch, person)
    return True


def tell_approved(ctx: Ctx, changes: list[EquipmentChange]) -> None:
    """One message per author listing their approved changes."""
    by_author: dict[int, list[EquipmentChange]] = {}
    for ch in changes:
        by_author.setdefault(ch.reporter_id, []).append(ch)
    for author_id, mine in by_author.items():
        author = ctx.session.get(Person, author_id)
        if author is None or (ctx.person is not None and author.id == ctx.person.id):
            continue
        ids = ", ".join(f"#{c.id}" for c in mine)

        def make(tr: Translator, _ids: str = ids) -> Reply:
            return Reply(tr.t("✅ The principal approved your equipment changes {ids}; the catalogue is updated.",
                              ids=_ids))
        ctx.send_to(author, make)


def close_batch_if_done(ctx: Ctx, batch: EquipmentBatch, *, by_delegation: bool) -> bool:
    """Mark the batch decided once nothing in it is pending (conditional: once)."""
    if open_batch_changes(ctx.session, batch):
        return False
    person = ctx.person
    res = ctx.session.execute(update(EquipmentBatch).where(col(EquipmentBatch.id) == batch.id,
                                                           col(EquipmentBatch.status) == "open")
                              .values(status="decided", decided_at=ctx.now,
                                      decided_by=person.id if person else None, by_delegation=by_delegation)
                              .execution_options(synchronize_session=False))
    ctx.session.refresh(batch)
    if res.rowcount == 1:  # type: ignore[attr-defined]
        ctx.audit("equipment.batch_decided", f"eqbatch:{batch.id}", period=batch.period, by_delegation=by_delegation)
        return True
    return False


def batch_already(ctx: Ctx, batch: EquipmentBatch) -> Reply:
    decider = ctx.session.get(Person, batch.decided_by or 0)
    return Reply(ctx.t("The equipment changes of {month} were already decided by {name} at {time}.",
                       month=period_label(ctx.tr, batch.period), name=decider.full_name if decider else "?",
                       time=ctx.tr.datetime(batch.decided_at) if batch.decided_at else ""))


def approve_all(ctx: Ctx, batch: EquipmentBatch) -> list[Reply]:
    """``✅ Duyệt tất cả``: every still-pending change of the batch, oldest first."""
    allowed, by_delegation = may_decide_batch(ctx, batch)
    if not allowed:
        ctx.audit("equipment.batch_refused", f"eqbatch:{batch.id}", action="all")
        return [Reply(ctx.t("Only the principal (or the vice principal they delegated to) can approve equipment "
                            "changes."))]
    if batch.status != "open":
        return [batch_already(ctx, batch)]
    approved: list[EquipmentChange] = []
    conflicts = 0
    for ch in open_batch_changes(ctx.session, batch):
        outcome = approve_change(ctx, ch, by_delegation=by_delegation)
        if outcome == "approved":
            approved.append(ch)
        elif outcome == "conflict":
            conflicts += 1
    if not close_batch_if_done(ctx, batch, by_delegation=by_delegation) and not approved:
        return [batch_already(ctx, batch)]
    ctx.audit("equipment.batch_approved_all", f"eqbatch:{batch.id}", approved=len(approved), conflicts=conflicts)
    refresh_batch_cards(ctx, batch)
    tell_approved(ctx, approved)
    text = ctx.t("✅ Approved: {n} equipment changes of {month}; the catalogue is updated.",
                 n=ctx.tr.number(len(approved)), month=period_label(ctx.tr, batch.period))
    if conflicts:
        text += "\n" + ctx.t("{n} changes no longer fit the catalogue (the stock would fall below zero); they were "
                             "returned to their authors.", n=ctx.tr.number(conflicts))
    return [Reply(text)]
