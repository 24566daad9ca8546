"""``/suachua`` — a request to repair IT equipment (seed 004 Điều 8.3).

“Khi cần sửa chữa, thay thế linh kiện của các thiết bị CNTT, hủy bỏ kết nối mạng hoặc thay đổi thông
số của các thiết bị, các đơn vị và cá nhân phải đề xuất với tổ CNTT bằng văn bản có sự xác nhận của
Hiệu trưởng.” A staff member picks the IT item → what is needed (repair, replace components, network,
settings) → a description (and a photo) → the request goes through the approval engine to the
principal (or the active delegate) → once confirmed, the IT team gets the task (🆗 take it,
✔ done with a note) → the requester and the principal are told how it was resolved.

```mermaid
stateDiagram-v2
    [*] --> item: /suachua
    item --> action
    action --> desc
    desc --> photo
    photo --> confirm
    confirm --> [*]: approval requested (principal)
    state "after approval" as after {
        approved --> in_progress: 🆗 IT takes it
        approved --> resolved: ✔ done + note
        in_progress --> resolved: ✔ done + note
    }
```
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import update
from sqlmodel import col, select

from bot.core import (
    Button,
    Ctx,
    Flow,
    Handler,
    Inbound,
    OutFile,
    Reply,
    Step,
    choice,
    choice_value,
    keyboard,
)
from bot.engine import approvals
from bot.flows.equipment import service as eq
from bot.flows.equipment.changes import photo_of, pick_item
from bot.flows.equipment.models import EquipmentItem, RepairRequest, RepairStatus
from bot.i18n import N_, Translator
from bot.roles import Role
from bot.steps import Confirm, parse_payload
from bot.text import clean
from storage.models import Approval, Person
from storage.people import people_with_role

PREFIX = "eqr"
CARD = "eqrepair"
ACTIONS: dict[str, str] = {
    "repair": N_("Repair"),
    "parts": N_("Replace components"),
    "network": N_("Disconnect it from the network or change its connection"),
    "settings": N_("Change its settings"),
}
IT_ROLES = frozenset({Role.IT})
CONFIRM = Confirm()


def start(ctx: Ctx) -> Step:
    """Ask for the IT item."""
    return Step.goto("item", Reply(ctx.t("Which IT equipment needs work? Type its code or part of its name "
                                         "(for example “máy chiếu”).")))


def item(ctx: Ctx, msg: Inbound) -> Step:
    """IT equipment only (004 Điều 8.3); other items are changes for /thietbi."""
    found, step = pick_item(ctx, msg, it_only=True)
    if step is not None:
        return step
    assert found is not None
    ctx.data["item_id"] = found.id
    return Step.goto("action", Reply(ctx.t("{item}: what is needed?", item=eq.item_title(found)), buttons=keyboard(
        *[choice(ctx.t(label), key) for key, label in ACTIONS.items()], per_row=1)))


def action(ctx: Ctx, msg: Inbound) -> Step:
    """Repair, replace components, network, settings."""
    value = choice_value(msg)
    if value not in ACTIONS:
        return Step.stay(Reply(ctx.t("Please choose one of the buttons.")))
    ctx.data["action"] = value
    return Step.goto("desc", Reply(ctx.t("Describe the problem and what you propose (at most 1000 characters).")))


def desc(ctx: Ctx, msg: Inbound) -> Step:
    """The description (5–1000 characters)."""
    text = clean(msg.text or "")
    if not 5 <= len(text) <= 1000:
        return Step.stay(Reply(ctx.t("Please describe it in 5 to 1000 characters.")))
    ctx.data["desc"] = text
    return Step.goto("photo", Reply(ctx.t("Send a photo of it, or tap Skip."),
                                    buttons=keyboard(choice(ctx.t("Skip"), "skip"))))


def photo(ctx: Ctx, msg: Inbound) -> Step:
    """A photo, or skip; then the summary."""
    if choice_value(msg) != "skip":
        f = photo_of(msg)
        if f is None:
            return Step.stay(Reply(ctx.t("Please send a photo, or tap Skip."),
                                   buttons=keyboard(choice(ctx.t("Skip"), "skip"))))
        ctx.data["photo"] = f.path
    found = ctx.session.get(EquipmentItem, int(ctx.data.get("item_id") or 0))
    if found is None:
        return Step.done(Reply(ctx.t("That item is no longer in the catalogue.")))
    wanted = ACTIONS[ctx.data["action"]]
    lines = [ctx.t("<b>IT equipment repair request</b>"),
             ctx.t("Item: {item}", item=eq.item_title(found)),
             ctx.t("Request: {action}", action=ctx.t(wanted)),
             ctx.t("Description: {text}", text=ctx.data["desc"]), "",
             ctx.t("Send it to the principal to confirm? Once confirmed, the IT team gets the task.")]
    return CONFIRM.ask(ctx, "\n".join(lines))


def _send(ctx: Ctx) -> Step:
    """Create the request and ask the approval engine for the principal's confirmation."""
    person = ctx.person
    assert person is not None and person.id is not None
    found = ctx.session.get(EquipmentItem, int(ctx.data.get("item_id") or 0))
    if found is None or found.school_id != person.school_id:
        return Step.done(Reply(ctx.t("That item is no longer in the catalogue.")))
    req = RepairRequest(school_id=person.school_id, item_id=found.id or 0, requester_id=person.id,
                        action=ctx.data["action"], description=ctx.data["desc"],
                        photo_path=ctx.data.get("photo") or "", created_at=ctx.now)
    ctx.session.add(req)
    ctx.session.flush()
    ctx.audit("equipment.repair_requested", f"eqrepair:{req.id}", item=found.code, action=req.action)
    ap = approvals.request(
        ctx, kind="equipment_repair", subject=f"eqrepair:{req.id}", title=N_("IT equipment repair request"),
        fields=[(N_("Equipment"), f"{eq.item_title(found)} · {found.room or '—'}"),
                (N_("Request"), ctx.t(ACTIONS[req.action])), (N_("Description"), req.description)],
        stages=[approvals.StageSpec(role=Role.PRINCIPAL)])
    req.approval_id = ap.id
    ctx.session.add(req)
    return Step.done(Reply(ctx.t("Request #{id} was sent to the principal. Once confirmed, the IT team gets it and "
                                 "you will be told.", id=req.id)))


confirm = CONFIRM.step(_send)


# -- after the principal's decision -----------------------------------------------------------------
def on_decided(ctx: Ctx, approval: Approval, outcome: str) -> None:
    """Approval hook: confirmed → the IT team gets the task; rejected → recorded (the engine told the requester)."""
    req = ctx.session.exec(select(RepairRequest).where(RepairRequest.approval_id == approval.id)).first()
    if req is None:
        return
    new = RepairStatus.APPROVED if outcome == "approved" else RepairStatus.REJECTED
    res = ctx.session.execute(update(RepairRequest).where(col(RepairRequest.id) == req.id,
                                                          col(RepairRequest.status) == RepairStatus.PENDING)
                              .values(status=new).execution_options(synchronize_session=False))
    if res.rowcount != 1:  # type: ignore[attr-defined]
        return
    ctx.session.refresh(req)
    ctx.audit("equipment.repair_" + ("confirmed" if new == RepairStatus.APPROVED else "refused"), f"eqrepair:{req.id}")
    if new != RepairStatus.APPROVED:
        return
    team = people_with_role(ctx.session, school_id=req.school_id, role=Role.IT)
    sent = 0
    for p in team:
        if req.photo_path and Path(req.photo_path).is_file():
            ctx.send_to(p, lambda tr: Reply(tr.t("📷 Photo of repair request #{id}", id=req.id),
                                            file=OutFile("photo", req.photo_path, f"sua-chua-{req.id}.jpg")))
        if ctx.send_to(p, lambda tr: task_card(ctx, tr, req, buttons=True)):
            sent += 1
    if sent == 0:
        requester = ctx.session.get(Person, req.requester_id)
        for who in [x for x in (requester, ctx.person) if x is not None]:
            ctx.send_to(who, lambda tr: Reply(tr.t("Repair request #{id} is confirmed, but no one of the IT team has "
                                                   "linked the assistant. Please tell them directly.", id=req.id)))


def task_card(ctx: Ctx, tr: Translator, req: RepairRequest, *, buttons: bool) -> Reply:
    found = ctx.session.get(EquipmentItem, req.item_id)
    requester = ctx.session.get(Person, req.requester_id)
    ap = ctx.session.get(Approval, req.approval_id) if req.approval_id else None
    decider = ctx.session.get(Person, ap.decided_by) if ap and ap.decided_by else None
    lines = [tr.t("🛠 <b>IT task</b> · repair request #{id}", id=req.id),
             tr.t("Item: {item}", item=f"{eq.item_title(found)} · {found.room or '—'}" if found else "?"),
             tr.t("Request: {action}", action=tr.t(ACTIONS.get(req.action, req.action))),
             tr.t("Description: {text}", text=req.description),
             tr.t("From: {name}", name=requester.full_name if requester else "?"),
             tr.t("Confirmed by {name} at {time}", name=decider.full_name if decider else "?",
                  time=tr.datetime(ap.decided_at) if ap and ap.decided_at else "")]
    if req.status == RepairStatus.IN_PROGRESS:
        who = ctx.session.get(Person, req.assignee_id or 0)
        lines.append(tr.t("🆗 Taken by {name}", name=who.full_name if who else "?"))
    if req.status == RepairStatus.RESOLVED:
        who = ctx.session.get(Person, req.resolved_by or 0)
        lines.append(tr.t("✔ Resolved by {name} at {time}: {note}", name=who.full_name if who else "?",
                          time=tr.datetime(req.resolved_at) if req.resolved_at else "", note=req.resolution))
    kb: tuple[tuple[Button, ...], ...] = ()
    if buttons and req.status in (RepairStatus.APPROVED, RepairStatus.IN_PROGRESS):
        row = [Button(tr.t("✔ Done"), f"{PREFIX}:{req.id}:done")]
        if req.status == RepairStatus.APPROVED:
            row.insert(0, Button(tr.t("🆗 Take it"), f"{PREFIX}:{req.id}:ack"))
        kb = keyboard(row)
    return Reply("\n".join(lines), buttons=kb, track=(CARD, str(req.id)))


def _refresh(ctx: Ctx, req: RepairRequest) -> None:
    eq.refresh_tracked(ctx, CARD, str(req.id), lambda tr, _p: task_card(ctx, tr, req, buttons=True))


def on_task(ctx: Ctx) -> Step:
    """``eqr:<id>:ack|done`` — only the IT team of the same school, only while the task is open."""
    parsed = parse_payload(ctx.inbound.payload, PREFIX, ("ack", "done"))
    person = ctx.person
    assert person is not None
    if parsed is None:
        return Step.stay(Reply(ctx.t("That button is no longer valid.")))
    req = ctx.session.get(RepairRequest, parsed.id)
    if req is None or req.school_id != person.school_id or not person.has_role(*IT_ROLES):
        ctx.audit("equipment.refused", f"eqrepair:{parsed.id}", action=parsed.action)
        return Step.stay(Reply(ctx.t("Only the IT team can take or close repair tasks.")))
    if req.status not in (RepairStatus.APPROVED, RepairStatus.IN_PROGRESS):
        return Step.stay(_closed(ctx, req))
    if parsed.action == "done":
        return Step.start_flow("equipment_repair_done", seed={"repair_id": req.id})
    res = ctx.session.execute(update(RepairRequest).where(col(RepairRequest.id) == req.id,
                                                          col(RepairRequest.status) == RepairStatus.APPROVED)
                              .values(status=RepairStatus.IN_PROGRESS, assignee_id=person.id, acknowledged_at=ctx.now)
                              .execution_options(synchronize_session=False))
    ctx.session.refresh(req)
    if res.rowcount != 1:  # type: ignore[attr-defined]
        who = ctx.session.get(Person, req.assignee_id or 0)
        return Step.stay(Reply(ctx.t("Repair request #{id} was already taken by {name}.", id=req.id,
                                     name=who.full_name if who else "?")))
    ctx.audit("equipment.repair_taken", f"eqrepair:{req.id}")
    _refresh(ctx, req)
    requester = ctx.session.get(Person, req.requester_id)
    if requester is not None and requester.id != person.id:
        ctx.send_to(requester, lambda tr: Reply(tr.t("🆗 {name} of the IT team is handling your repair request #{id}.",
                                                     name=person.full_name, id=req.id)))
    return Step.stay(Reply(ctx.t("🆗 Repair request #{id} is yours. Tap ✔ Done when it is resolved.", id=req.id)))


def _closed(ctx: Ctx, req: RepairRequest) -> Reply:
    if req.status == RepairStatus.RESOLVED:
        who = ctx.session.get(Person, req.resolved_by or 0)
        return Reply(ctx.t("Repair request #{id} was already resolved by {name}.", id=req.id,
                           name=who.full_name if who else "?"))
    return Reply(ctx.t("Repair request #{id} is not open.", id=req.id))


def _done_start(ctx: Ctx) -> Step:
    """Ask what was done."""
    return Step.goto("note", Reply(ctx.t("What was done for repair request #{id}? The requester and the principal "
                                         "will read it.", id=ctx.data.get("repair_id")),
                                   buttons=keyboard(choice(ctx.t("↩️ Back"), "back"))))


def _done_note(ctx: Ctx, msg: Inbound) -> Step:
    """Resolve with the note (once); tell the requester and whoever confirmed it."""
    if choice_value(msg) == "back":
        return Step.done(Reply(ctx.t("Nothing was changed.")))
    text = clean(msg.text or "")
    if not 2 <= len(text) <= 1000:
        return Step.stay(Reply(ctx.t("Please describe what was done (2 to 1000 characters).")))
    person = ctx.person
    assert person is not None
    req = ctx.session.get(RepairRequest, int(ctx.data.get("repair_id") or 0))
    if req is None or req.school_id != person.school_id or not person.has_role(*IT_ROLES):
        return Step.done(Reply(ctx.t("Only the IT team can take or close repair tasks.")))
    res = ctx.session.execute(update(RepairRequest).where(
        col(RepairRequest.id) == req.id,
        col(RepairRequest.status).in_([RepairStatus.APPROVED, RepairStatus.IN_PROGRESS]))
        .values(status=RepairStatus.RESOLVED, resolved_by=person.id, resolved_at=ctx.now, resolution=text)
        .execution_options(synchronize_session=False))
    ctx.session.refresh(req)
    if res.rowcount != 1:  # type: ignore[attr-defined]
        return Step.done(_closed(ctx, req))
    ctx.audit("equipment.repair_resolved", f"eqrepair:{req.id}", note=text)
    _refresh(ctx, req)
    found = ctx.session.get(EquipmentItem, req.item_id)
    title = eq.item_title(found) if found else "?"
    ap = ctx.session.get(Approval, req.approval_id) if req.approval_id else None
    told: set[int | None] = {person.id}
    for pid in (req.requester_id, ap.decided_by if ap else None):
        p = ctx.session.get(Person, pid) if pid else None
        if p is not None and p.id not in told:
            told.add(p.id)
            ctx.send_to(p, lambda tr: Reply(tr.t("✔ Repair request #{id} ({item}) was resolved by {name}: {note}",
                                                 id=req.id, item=title, name=person.full_name, note=text)))
    return Step.done(Reply(ctx.t("✔ Repair request #{id} is closed. If the equipment's records changed (repaired, "
                                 "replaced, disposed of), record it with /thietbi.", id=req.id)))


DONE_FLOW = Flow(name="equipment_repair_done", title=N_("Close a repair task"), start=_done_start,
                 states={"note": _done_note}, in_menu=False)


#: commands and button namespaces that are not a conversation
HANDLERS: tuple[Handler, ...] = (
    Handler(on_task, prefix=PREFIX),
)
#: conversations started from a button or another workflow (not from the menu)
FLOWS: tuple[Flow, ...] = (
    DONE_FLOW,
)


FLOW = Flow(
    name="equipment_repair",
    command="suachua",
    title=N_("IT repair request"),
    description=N_("Ask for a repair or change of IT equipment (confirmed by the principal)"),
    icon="🛠",
    start=start,
    states={"item": item, "action": action, "desc": desc, "photo": photo, "confirm": confirm},
    order=42,
)

APPROVAL_HOOKS = {"equipment_repair": on_decided}
