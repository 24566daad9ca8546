"""``/muon`` and ``/tra`` — the equipment use log (seed 003 Điều 8.1: frequency of use is reported).

Borrow: item (code or part of its name) → class (``3A``, ``Lớp 4B`` …) → how many → recorded with who
and when. Return: one's own open borrowings (the equipment officer and BGH see everyone's) → “all
fine” or “damaged / missing”; the latter goes straight on to record the damage (``/thietbi``).

```mermaid
stateDiagram-v2
    [*] --> mode: menu
    [*] --> item: /muon
    [*] --> pick: /tra
    mode --> item: 📤 Mượn
    mode --> pick: 📥 Trả
    item --> klass
    klass --> qty: more than one available
    klass --> [*]: one available: recorded
    qty --> [*]: recorded
    pick --> condition
    condition --> [*]: all fine
    condition --> equipment: damaged → record the change
```
"""

from __future__ import annotations

from sqlalchemy import update
from sqlmodel import col, select

from bot.core import Ctx, Flow, Handler, Inbound, Reply, Step, choice, choice_value, keyboard
from bot.flows.equipment import service as eq
from bot.flows.equipment.changes import pick_item
from bot.flows.equipment.models import EquipmentItem, EquipmentUse, ItemStatus
from bot.i18n import N_
from bot.text import clean, parse_id
from storage.models import Person

MAX_CLASS = 40


def _open_uses(ctx: Ctx, item_id: int | None = None) -> list[EquipmentUse]:
    person = ctx.person
    assert person is not None
    q = select(EquipmentUse).where(EquipmentUse.school_id == person.school_id, col(EquipmentUse.returned_at).is_(None))
    if item_id is not None:
        q = q.where(EquipmentUse.item_id == item_id)
    elif not eq.is_recorder(person):
        q = q.where(EquipmentUse.person_id == person.id)
    return list(ctx.session.exec(q.order_by(col(EquipmentUse.borrowed_at))))


def _available(ctx: Ctx, item: EquipmentItem) -> int:
    out = sum(u.quantity for u in _open_uses(ctx, item.id))
    return max(0, item.quantity - item.damaged - out)


# -- steps ----------------------------------------------------------------------------------------
def start(ctx: Ctx) -> Step:
    """``/muon`` borrows; ``/tra`` (seed ``mode=return``) returns; from the menu, ask which."""
    if ctx.data.get("mode") == "return":
        return _return_list(ctx)
    if ctx.inbound.command == FLOW.command:
        return _ask_item(ctx)
    return Step.goto("mode", Reply(ctx.t("Borrow or return equipment?"), buttons=keyboard(
        choice(ctx.t("📤 Borrow"), "borrow"), choice(ctx.t("📥 Return"), "return"), per_row=2)))


def mode(ctx: Ctx, msg: Inbound) -> Step:
    """📤 borrow or 📥 return."""
    value = choice_value(msg)
    if value == "borrow":
        return _ask_item(ctx)
    if value == "return":
        return _return_list(ctx)
    return Step.stay(Reply(ctx.t("Please choose one of the buttons.")))


def _ask_item(ctx: Ctx) -> Step:
    return Step.goto("item", Reply(ctx.t("Which item do you borrow? Type its code or part of its name.")))


def item(ctx: Ctx, msg: Inbound) -> Step:
    """The item (in use, with a good unit not already borrowed)."""
    found, step = pick_item(ctx, msg, active_only=True)
    if step is not None:
        return step
    assert found is not None
    free = _available(ctx, found)
    if free <= 0:
        holders = []
        for u in _open_uses(ctx, found.id):
            p = ctx.session.get(Person, u.person_id)
            holders.append(ctx.t("{name} ({klass}, since {time})", name=p.full_name if p else "?", klass=u.class_name,
                                 time=ctx.tr.datetime(u.borrowed_at)))
        return Step.stay(Reply(ctx.t("No good unit of {item} is free now. Borrowed by: {who}. Type another item.",
                                     item=eq.item_title(found), who="; ".join(holders) or "—")))
    ctx.data["item_id"], ctx.data["free"] = found.id, free
    assert ctx.person is not None
    recent = list(dict.fromkeys(ctx.session.exec(
        select(EquipmentUse.class_name).where(EquipmentUse.person_id == ctx.person.id)
        .order_by(col(EquipmentUse.borrowed_at).desc()).limit(20)).all()))[:4]
    ctx.data["classes"] = recent
    return Step.goto("klass", Reply(ctx.t("{item}: for which class (or purpose)? For example 3A.",
                                          item=eq.item_title(found)),
                                    buttons=keyboard(*[choice(c, f"k{i}") for i, c in enumerate(recent)], per_row=4)))


def klass(ctx: Ctx, msg: Inbound) -> Step:
    """The class, typed or one of the person's recent ones."""
    value = choice_value(msg) or ""
    recent = ctx.data.get("classes") or []
    if value.startswith("k") and parse_id(value[1:]) is not None and int(value[1:]) < len(recent):
        name = str(recent[int(value[1:])])
    else:
        name = clean(msg.text or "")
    if not name or len(name) > MAX_CLASS:
        return Step.stay(Reply(ctx.t("Please type the class (at most {max} characters), for example 3A.",
                                     max=MAX_CLASS)))
    ctx.data["class"] = name
    free = int(ctx.data.get("free", 1))
    if free <= 1:
        return _save(ctx, 1)
    return Step.goto("qty", Reply(ctx.t("How many? (at most {n})", n=free), buttons=keyboard(
        *[choice(str(n), str(n)) for n in (1, 2, 5, 10) if n <= free], per_row=4)))


def qty(ctx: Ctx, msg: Inbound) -> Step:
    """How many units, at most the free good ones."""
    raw = (choice_value(msg) or clean(msg.text or "")).strip()
    free = int(ctx.data.get("free", 1))
    if parse_id(raw) is None or not 1 <= int(raw) <= free:
        return Step.stay(Reply(ctx.t("Please type a number from 1 to {n}.", n=free)))
    return _save(ctx, int(raw))


def _save(ctx: Ctx, n: int) -> Step:
    person = ctx.person
    assert person is not None and person.id is not None
    found = ctx.session.get(EquipmentItem, int(ctx.data.get("item_id") or 0))
    if found is None or found.school_id != person.school_id or found.status != ItemStatus.ACTIVE:
        return Step.done(Reply(ctx.t("That item is no longer in the catalogue.")))
    if n > _available(ctx, found):
        return Step.done(Reply(ctx.t("Meanwhile someone else borrowed it; only {n} are free now. Start again with "
                                     "/muon.", n=_available(ctx, found))))
    use = EquipmentUse(school_id=person.school_id, item_id=found.id or 0, person_id=person.id,
                       class_name=ctx.data["class"], quantity=n, borrowed_at=ctx.now)
    ctx.session.add(use)
    ctx.session.flush()
    ctx.audit("equipment.borrowed", f"equse:{use.id}", item=found.code, klass=use.class_name, quantity=n)
    return Step.done(Reply(ctx.t("📤 Recorded: {item} × {n} for {klass}, borrowed by you at {time}. Type /tra when "
                                 "you bring it back.", item=eq.item_title(found), n=n, klass=use.class_name,
                                 time=ctx.tr.datetime(use.borrowed_at))))


def _use_label(ctx: Ctx, u: EquipmentUse, with_name: bool) -> str:
    found = ctx.session.get(EquipmentItem, u.item_id)
    text = ctx.t("{item} × {n} · {klass}", item=found.name if found else "?", n=u.quantity, klass=u.class_name)
    if with_name:
        p = ctx.session.get(Person, u.person_id)
        text += f" · {p.full_name if p else '?'}"
    return text[:60]


def _return_list(ctx: Ctx) -> Step:
    uses = _open_uses(ctx)
    if not uses:
        return Step.done(Reply(ctx.t("Nothing borrowed is waiting to be returned.")))
    assert ctx.person is not None
    if len(uses) == 1 and uses[0].person_id == ctx.person.id:
        ctx.data["use_id"] = uses[0].id
        return _ask_condition(ctx, uses[0])
    others = any(u.person_id != ctx.person.id for u in uses)
    return Step.goto("pick", Reply(ctx.t("Which do you return?"), buttons=keyboard(
        *[choice(_use_label(ctx, u, others), f"u{u.id}") for u in uses[:12]], per_row=1)))


def pick(ctx: Ctx, msg: Inbound) -> Step:
    """One open borrowing (one's own, or anyone's for the equipment officer / BGH)."""
    value = choice_value(msg) or ""
    if not (value.startswith("u") and parse_id(value[1:]) is not None):
        return Step.stay(Reply(ctx.t("Please choose one of the buttons.")))
    use = ctx.session.get(EquipmentUse, int(value[1:]))
    person = ctx.person
    assert person is not None
    if use is None or use.school_id != person.school_id or (use.person_id != person.id and not eq.is_recorder(person)):
        return Step.stay(Reply(ctx.t("That borrowing is not yours to return.")))
    ctx.data["use_id"] = use.id
    return _ask_condition(ctx, use)


def _ask_condition(ctx: Ctx, use: EquipmentUse) -> Step:
    return Step.goto("condition", Reply(ctx.t("Returning {what}. In what condition?", what=_use_label(ctx, use, False)),
                                        buttons=keyboard(choice(ctx.t("✅ All fine"), "ok"),
                                                         choice(ctx.t("⚠️ Damaged or missing"), "bad"), per_row=2)))


def condition(ctx: Ctx, msg: Inbound) -> Step:
    """Record the return (once); damage goes on to record the change of the item."""
    value = choice_value(msg)
    if value not in ("ok", "bad"):
        return Step.stay(Reply(ctx.t("Please choose one of the buttons.")))
    person = ctx.person
    assert person is not None
    use = ctx.session.get(EquipmentUse, int(ctx.data.get("use_id") or 0))
    if use is None or use.school_id != person.school_id or (use.person_id != person.id and not eq.is_recorder(person)):
        return Step.done(Reply(ctx.t("That borrowing is not yours to return.")))
    res = ctx.session.execute(update(EquipmentUse).where(col(EquipmentUse.id) == use.id,
                                                         col(EquipmentUse.returned_at).is_(None))
                              .values(returned_at=ctx.now, returned_by=person.id, return_ok=value == "ok")
                              .execution_options(synchronize_session=False))
    if res.rowcount != 1:  # type: ignore[attr-defined]
        return Step.done(Reply(ctx.t("It was already returned.")))
    ctx.audit("equipment.returned", f"equse:{use.id}", ok=value == "ok")
    if value == "ok":
        return Step.done(Reply(ctx.t("📥 Returned. Thank you!")))
    return Step.start_flow("equipment", Reply(ctx.t("📥 Returned. Now record what happened to it:")),
                           seed={"item_id": use.item_id, "kind": "damaged", "use_id": use.id})


def return_command(ctx: Ctx) -> Step:
    """``/tra``."""
    return Step.start_flow(FLOW.name, seed={"mode": "return"})


#: commands and button namespaces that are not a conversation
HANDLERS: tuple[Handler, ...] = (
    Handler(return_command, commands=("tra",), description=N_("Return borrowed equipment"), order=42),
)
#: conversations started from a button or another workflow (not from the menu)
FLOWS: tuple[Flow, ...] = ()


FLOW = Flow(
    name="equipment_use",
    command="muon",
    title=N_("Borrow / return equipment"),
    description=N_("Borrow teaching equipment for a class"),
    icon="📦",
    start=start,
    states={"mode": mode, "item": item, "klass": klass, "qty": qty, "pick": pick, "condition": condition},
    order=41,
)
