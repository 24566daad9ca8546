"""``/thietbi`` — record a change of teaching equipment (seed 003 Điều 6–7; 002 Điều 16.1.d).

Item (by code or part of its name, diacritics forgiven — or a new item) → kind of change (new stock,
damaged, repaired, moved to another room, lost, disposed of, stock-take correction) → quantity (the
resulting stock never falls below zero) or the new room → the day it happened (``Hôm nay``,
``21/11``; never in the future) → note → photo → saved. The equipment officer and BGH record
directly (the change waits for the principal's monthly approval); anyone else *reports* it and the
equipment officer records it (✔) or sends it back with a reason (❌). The deadline is 10 working
days after the change (Điều 7.2); reminders go to the reporter, the department head and the
equipment officer before it, and a change recorded later is marked late.

Once a month (``equipment.monthly``, a configurable day) the principal — or the active delegate —
gets one card with the month's changes: counts by kind, the list, an Excel file, and
``✅ Duyệt tất cả`` / ``🔎 Xem từng mục``. Only approved changes alter the catalogue; rejected ones
go back to their author with the reason (Điều 7.6). ``/duyetthietbi`` shows the open card again.

```mermaid
stateDiagram-v2
    [*] --> item: /thietbi
    item --> new_code: ➕ new item
    new_code --> new_name
    new_name --> new_category
    new_category --> new_room
    new_room --> quantity: kind = new stock
    item --> kind: item found (button or text)
    kind --> room: moved
    kind --> quantity: other kinds
    room --> date
    quantity --> date: the stock stays ≥ 0
    date --> note: not in the future
    note --> photo
    photo --> confirm
    confirm --> [*]: saved (pending, or reported to the equipment officer)
```
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Any

from sqlmodel import col, select

from bot.core import (
    Ctx,
    FileRef,
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
from bot.engine.reminders import Continuous, Monthly, Rule, RuleRun
from bot.flows.equipment import service as eq
from bot.flows.equipment.catalogue import (
    Stock,
    distinct_values,
    find_items,
    item_by_code,
    limits,
    looks_it,
    next_code,
    projected,
)
from bot.flows.equipment.models import (
    ChangeKind,
    ChangeStatus,
    EquipmentBatch,
    EquipmentChange,
    EquipmentItem,
    ItemStatus,
)
from bot.flows.equipment.xlsx import batch_path, write_batch_xlsx
from bot.i18n import N_, Translator
from bot.roles import Role
from bot.steps import FUTURE, TOO_OLD, UNREADABLE, Confirm, DayQuestion, parse_payload
from bot.text import clean, fold, parse_id
from bot.workdays import is_working_day, working_days_between
from storage.models import Person

MAX_BUTTONS = 12
MAX_NOTE = 500
MAX_PAST_DAYS = 366
KINDS = [k.value for k in ChangeKind]
#: the day the change happened: never in the future, at most a year ago
DAY = DayQuestion(errors={
    UNREADABLE: N_("I could not read that date. Type it like 21/11 or 21/11/2026, or tap Today."),
    FUTURE: N_("Refused: {date} is in the future. A change is recorded once it has happened; type the day it "
               "happened (today at the latest)."),
    TOO_OLD: N_("{date} is more than a year ago. For old differences record a stock-take correction dated today."),
}, past_days=MAX_PAST_DAYS)
CONFIRM = Confirm(send=N_("💾 Save"), send_value="save", cancelled=N_("Cancelled. Nothing was saved."))


# -- finding an item (shared with the use log and repair requests) --------------------------------
def item_buttons(items: list[EquipmentItem]) -> tuple[Any, ...]:
    return keyboard(*[choice(f"{i.code} · {i.name}"[:60], f"i{i.id}") for i in items[:MAX_BUTTONS]], per_row=1)


def pick_item(ctx: Ctx, msg: Inbound, *, it_only: bool = False, allow_new: bool = False,
              active_only: bool = False) -> tuple[EquipmentItem | None, Step | None]:
    """An item from a button (checked against the school) or typed code / part of its name."""
    assert ctx.person is not None
    school_id = ctx.person.school_id
    value = choice_value(msg) or ""
    new_button = [choice(ctx.t("➕ New item"), "new")] if allow_new else []
    if value == "new" and allow_new:
        return None, Step.goto("new_code", Reply(
            ctx.t("The new item's code (as on its label or in the equipment book), or tap “Give it a code”. "
                  "A code can never be changed later."),
            buttons=keyboard(choice(ctx.t("🔢 Give it a code"), "auto"))))
    if value.startswith("i") and parse_id(value[1:]) is not None:
        item = ctx.session.get(EquipmentItem, int(value[1:]))
        if item is None or item.school_id != school_id or item.status == ItemStatus.REJECTED \
                or (it_only and not item.is_it):
            return None, Step.stay(Reply(ctx.t("That item is not in your school's catalogue. Type its code or part "
                                               "of its name.")))
        if active_only and item.status != ItemStatus.ACTIVE:
            return None, Step.stay(Reply(ctx.t("{item} is not in use ({status}).", item=eq.item_title(item),
                                               status=ctx.t(eq.ITEM_STATUS_NAMES[item.status]))))
        return item, None
    text = clean(msg.text or "")
    if not text:
        return None, Step.stay(Reply(ctx.t("Type the item's code or part of its name."),
                                     buttons=keyboard(*new_button)))
    items = find_items(ctx.session, school_id=school_id, query=text, it_only=it_only)
    if active_only:
        items = [i for i in items if i.status == ItemStatus.ACTIVE]
    if len(items) == 1:
        return items[0], None
    if not items:
        if it_only:
            return None, Step.stay(Reply(ctx.t("I found no IT equipment matching “{query}”. Type another part of "
                                               "its name or its code.", query=text)))
        return None, Step.stay(Reply(ctx.t("I found no item matching “{query}”. Type another part of its name or "
                                           "its code.", query=text), buttons=keyboard(*new_button)))
    head = ctx.t("Several items match. Which one?") if len(items) <= MAX_BUTTONS else \
        ctx.t("{n} items match; here are the first {max}. Type more of the name or the code to narrow it down.",
              n=ctx.tr.number(len(items)), max=MAX_BUTTONS)
    return None, Step.stay(Reply(head, buttons=item_buttons(items) + keyboard(*new_button)))


def _item(ctx: Ctx) -> EquipmentItem | None:
    item = ctx.session.get(EquipmentItem, int(ctx.data.get("item_id") or 0))
    assert ctx.person is not None
    if item is None or item.school_id != ctx.person.school_id:
        return None
    return item


def _stock(ctx: Ctx) -> Stock:
    """What the item will hold once every change already reported or recorded is approved."""
    new = ctx.data.get("new")
    if new:
        return Stock(0, 0, new.get("room", ""), ItemStatus.PROPOSED)
    item = _item(ctx)
    assert item is not None
    return projected(ctx.session, item)


def _title(ctx: Ctx) -> str:
    new = ctx.data.get("new")
    if new:
        return f"{new['code']} · {new['name']}"
    item = _item(ctx)
    return eq.item_title(item) if item else "?"


# -- steps ----------------------------------------------------------------------------------------
def start(ctx: Ctx) -> Step:
    """Ask for the item — or, when started from a return with damage, go straight to the quantity."""
    seed_item, seed_kind = ctx.data.get("item_id"), ctx.data.get("kind")
    if seed_item and seed_kind in KINDS:
        item = _item(ctx)
        if item is not None:
            low, high = limits(projected(ctx.session, item), seed_kind)
            if high is None or high >= low:
                return _ask_quantity(ctx)
            return _ask_kind(ctx, item)
        ctx.data.clear()
    return Step.goto("item", Reply(ctx.t("Which item changed? Type its code or part of its name, or add a new item."),
                                   buttons=keyboard(choice(ctx.t("➕ New item"), "new"))))


def item_(ctx: Ctx, msg: Inbound) -> Step:
    """The item, found by code or by part of its name (diacritics forgiven), or ➕ a new one."""
    item, step = pick_item(ctx, msg, allow_new=True)
    if step is not None:
        return step
    assert item is not None
    ctx.data["item_id"] = item.id
    return _ask_kind(ctx, item)


def _ask_kind(ctx: Ctx, item: EquipmentItem) -> Step:
    stock = projected(ctx.session, item)
    lines = [ctx.t("<b>{item}</b>", item=eq.item_title(item)), eq.item_state(ctx.tr, item)]
    if stock != Stock.of(item):
        lines.append(ctx.t("With the changes already waiting: {state}", state=eq.item_state(ctx.tr, item, stock)))
    lines.append(ctx.t("What changed?"))
    kinds = [k for k in KINDS if k != ChangeKind.NEW or item.status != ItemStatus.PROPOSED]
    return Step.goto("kind", Reply("\n".join(lines), buttons=keyboard(
        *[choice(eq.kind_label(ctx.tr, k), k) for k in kinds], per_row=2)))


def new_code(ctx: Ctx, msg: Inbound) -> Step:
    """The new item's code: typed (unique in the school, never changed later) or given by the assistant."""
    assert ctx.person is not None
    if choice_value(msg) == "auto":
        code = next_code(ctx.session, school_id=ctx.person.school_id)
    else:
        code = clean(msg.text or "")
        if not code or len(code) > 60 or not re.fullmatch(r"[\w.\-/ ]+", code):
            return Step.stay(Reply(ctx.t("Please type a code of at most 60 letters, digits, dots, dashes or slashes "
                                         "(for example TB-0123), or tap “Give it a code”."),
                                   buttons=keyboard(choice(ctx.t("🔢 Give it a code"), "auto"))))
        existing = item_by_code(ctx.session, school_id=ctx.person.school_id, code=code)
        if existing is not None:
            return Step.stay(Reply(ctx.t("The code {code} already belongs to {item}. Codes are never reused: type "
                                         "another one, or /huy and choose that item.", code=code,
                                         item=eq.item_title(existing))))
    ctx.data["new"] = {"code": code}
    return Step.goto("new_name", Reply(ctx.t("Code: {code}. What is the item called?", code=code)))


def new_name(ctx: Ctx, msg: Inbound) -> Step:
    """The new item's name (2–200 characters)."""
    name = clean(msg.text or "")
    if not 2 <= len(name) <= 200:
        return Step.stay(Reply(ctx.t("Please type the item's name (2 to 200 characters).")))
    ctx.data["new"] = {**ctx.data["new"], "name": name}
    assert ctx.person is not None
    cats = distinct_values(ctx.session, school_id=ctx.person.school_id, column="category")
    ctx.data["options"] = cats
    return Step.goto("new_category", Reply(ctx.t("Subject or category? Tap one or type it."),
                                           buttons=keyboard(*[choice(c[:60], f"o{i}") for i, c in enumerate(cats)],
                                                            per_row=2)))


def _option(ctx: Ctx, msg: Inbound) -> str:
    value = choice_value(msg) or ""
    options = ctx.data.get("options") or []
    if value.startswith("o") and parse_id(value[1:]) is not None and int(value[1:]) < len(options):
        return str(options[int(value[1:])])
    return clean(msg.text or "")


def new_category(ctx: Ctx, msg: Inbound) -> Step:
    """The subject or category (for reports by category)."""
    cat = _option(ctx, msg)
    if not 1 <= len(cat) <= 120:
        return Step.stay(Reply(ctx.t("Please tap a category or type one (at most 120 characters).")))
    ctx.data["new"] = {**ctx.data["new"], "category": cat}
    assert ctx.person is not None
    rooms = distinct_values(ctx.session, school_id=ctx.person.school_id, column="room")
    ctx.data["options"] = rooms
    return Step.goto("new_room", Reply(ctx.t("Which room is it kept in? Tap one or type it."),
                                       buttons=keyboard(*[choice(r[:60], f"o{i}") for i, r in enumerate(rooms)],
                                                        per_row=2)))


def new_room(ctx: Ctx, msg: Inbound) -> Step:
    """The room; then how many arrived (the change is “new stock”)."""
    room = _option(ctx, msg)
    if not 1 <= len(room) <= 120:
        return Step.stay(Reply(ctx.t("Please tap a room or type one (at most 120 characters).")))
    ctx.data["new"] = {**ctx.data["new"], "room": room}
    ctx.data["kind"] = ChangeKind.NEW.value
    return _ask_quantity(ctx)


def kind(ctx: Ctx, msg: Inbound) -> Step:
    """The kind of change; “moved” asks for the room instead of a quantity."""
    value = choice_value(msg)
    if value not in KINDS:
        return Step.stay(Reply(ctx.t("Please choose one of the buttons.")))
    item = _item(ctx)
    if item is None:
        return Step.done(Reply(ctx.t("That item is no longer in the catalogue.")))
    ctx.data["kind"] = value
    if value == ChangeKind.MOVED:
        rooms = [r for r in distinct_values(ctx.session, school_id=item.school_id, column="room")
                 if fold(r) != fold(item.room)]
        ctx.data["options"] = rooms
        return Step.goto("room", Reply(ctx.t("{item} is in {room}. To which room was it moved? Tap one or type it.",
                                             item=eq.item_title(item), room=item.room or "—"),
                                       buttons=keyboard(*[choice(r[:60], f"o{i}") for i, r in enumerate(rooms)],
                                                        per_row=2)))
    stock = _stock(ctx)
    low, high = limits(stock, value)
    if high is not None and high < low:
        return Step.stay(Reply(_none_left(ctx, value, stock), buttons=keyboard(
            *[choice(eq.kind_label(ctx.tr, k), k) for k in KINDS], per_row=2)))
    return _ask_quantity(ctx)


def _none_left(ctx: Ctx, kind_: str, stock: Stock) -> str:
    if kind_ == ChangeKind.DAMAGED:
        return ctx.t("There are no good units left to mark as damaged ({state}). Choose another change.",
                     state=_state_text(ctx.tr, stock))
    if kind_ == ChangeKind.REPAIRED:
        return ctx.t("No unit is recorded as damaged, so none can be repaired ({state}). Choose another change.",
                     state=_state_text(ctx.tr, stock))
    return ctx.t("The stock is already zero ({state}). Choose another change.", state=_state_text(ctx.tr, stock))


def _state_text(tr: Translator, stock: Stock) -> str:
    return tr.t("quantity {quantity}, damaged {damaged}", quantity=tr.number(stock.quantity),
                damaged=tr.number(stock.damaged))


def _ask_quantity(ctx: Ctx) -> Step:
    k = ctx.data["kind"]
    stock = _stock(ctx)
    low, high = limits(stock, k)
    if k == ChangeKind.STOCKTAKE:
        text = ctx.t("{item}: how many did the stock-take count? (now {state})", item=_title(ctx),
                     state=_state_text(ctx.tr, stock))
    elif k == ChangeKind.NEW:
        text = ctx.t("{item}: how many arrived?", item=_title(ctx))
    else:
        text = ctx.t("{item} · {kind}: how many? (from {low} to {high}; now {state})", item=_title(ctx),
                     kind=eq.kind_name(ctx.tr, k), low=low, high=high, state=_state_text(ctx.tr, stock))
    options = [n for n in (1, 2, 3, 5) if n >= low and (high is None or n <= high)]
    return Step.goto("quantity", Reply(text, buttons=keyboard(*[choice(str(n), str(n)) for n in options], per_row=4)))


_NUMBER = re.compile(r"^\s*([-−–]?)\s*(\d{1,6})\s*(?:cai|chiec|bo|may|cuon|units?|pcs)?\s*$")


def quantity(ctx: Ctx, msg: Inbound) -> Step:
    """How many; refused when negative or when the resulting stock would fall below zero."""
    raw = choice_value(msg) or fold(msg.text or "")
    m = _NUMBER.match(raw)
    if not m:
        return Step.stay(Reply(ctx.t("Please type the quantity as a whole number, for example 2.")))
    if m.group(1):
        return Step.stay(Reply(ctx.t("The quantity cannot be negative. Type how many units changed, for example 2.")))
    n = int(m.group(2))
    k = ctx.data["kind"]
    stock = _stock(ctx)
    low, high = limits(stock, k)
    if n < low:
        return Step.stay(Reply(ctx.t("The quantity must be at least {low}.", low=low)))
    if high is not None and n > high:
        return Step.stay(Reply(ctx.t("Refused: only {high} can change this way ({state}); {n} would leave the stock "
                                     "below zero. Type a quantity from {low} to {high}.", high=high, n=n, low=low,
                                     state=_state_text(ctx.tr, stock))))
    ctx.data["qty"] = n
    return _ask_date(ctx)


def room(ctx: Ctx, msg: Inbound) -> Step:
    """The room the item was moved to (must differ from where it is)."""
    item = _item(ctx)
    if item is None:
        return Step.done(Reply(ctx.t("That item is no longer in the catalogue.")))
    new = _option(ctx, msg)
    if not 1 <= len(new) <= 120:
        return Step.stay(Reply(ctx.t("Please tap a room or type one (at most 120 characters).")))
    if fold(new) == fold(_stock(ctx).room):
        return Step.stay(Reply(ctx.t("{item} is already in {room}. Type the room it was moved to.",
                                     item=eq.item_title(item), room=new)))
    ctx.data["room_to"] = new
    ctx.data["qty"] = _stock(ctx).quantity
    return _ask_date(ctx)


def _ask_date(ctx: Ctx) -> Step:
    return DAY.ask(ctx, "date", ctx.t("On which day did it happen? Tap “Today” or type the date, like 21/11."))


def date_(ctx: Ctx, msg: Inbound) -> Step:
    """``Hôm nay``, ``hôm qua``, ``21/11``, ``21/11/2026``; never in the future; shows the deadline."""
    d = DAY.answer(ctx, msg)
    if isinstance(d, Reply):
        return Step.stay(d)
    today = ctx.today()
    ctx.data["date"] = d.isoformat()
    due = eq.deadline_for(ctx.school, d)
    if today > due:
        info = ctx.t("⏰ The deadline to record it was {due} (10 working days): it will be marked late.",
                     due=ctx.tr.date(due))
    else:
        info = ctx.t("It must be recorded by {due} (10 working days).", due=ctx.tr.date(due))
    return Step.goto("note", Reply(info + "\n" + ctx.t("Add a short note (what happened, where), or tap Skip."),
                                   buttons=keyboard(choice(ctx.t("Skip"), "skip"))))


def note(ctx: Ctx, msg: Inbound) -> Step:
    """A note of at most 500 characters, or skip; a photo sent now (its caption the note) is taken too."""
    f = photo_of(msg)
    if f is not None:
        ctx.data["note"] = clean(msg.text or "")[:MAX_NOTE]
        ctx.data["photo"] = {"path": f.path, "sha256": f.sha256, "mime": f.mime}
        return _summary(ctx)
    if choice_value(msg) == "skip":
        ctx.data["note"] = ""
    else:
        text = clean(msg.text or "")
        if not text or len(text) > MAX_NOTE:
            return Step.stay(Reply(ctx.t("Please type the note (at most {max} characters) or tap Skip.", max=MAX_NOTE),
                                   buttons=keyboard(choice(ctx.t("Skip"), "skip"))))
        ctx.data["note"] = text
    return Step.goto("photo", Reply(ctx.t("Send a photo of it, or tap Skip."),
                                    buttons=keyboard(choice(ctx.t("Skip"), "skip"))))


def photo_of(msg: Inbound) -> FileRef | None:
    for f in msg.files:
        if f.path and (f.kind == "photo" or (f.kind == "document" and f.mime.startswith("image/"))):
            return f
    return None


def photo(ctx: Ctx, msg: Inbound) -> Step:
    """A photo (kept in the media folder, hashed) or skip."""
    if choice_value(msg) != "skip":
        f = photo_of(msg)
        if f is None:
            if any(x.error == "too_big" for x in msg.files):
                return Step.stay(Reply(ctx.t("That photo is too large. Send a smaller one or tap Skip."),
                                       buttons=keyboard(choice(ctx.t("Skip"), "skip"))))
            return Step.stay(Reply(ctx.t("Please send a photo, or tap Skip."),
                                   buttons=keyboard(choice(ctx.t("Skip"), "skip"))))
        ctx.data["photo"] = {"path": f.path, "sha256": f.sha256, "mime": f.mime}
    return _summary(ctx)


def _summary(ctx: Ctx) -> Step:
    k = ctx.data["kind"]
    d = date.fromisoformat(ctx.data["date"])
    fake = EquipmentChange(school_id=0, item_id=0, kind=k, quantity=int(ctx.data.get("qty", 0)),
                           room_from=_stock(ctx).room, room_to=ctx.data.get("room_to", ""), happened_on=d,
                           due_on=d, reporter_id=0)
    assert ctx.person is not None
    lines = [ctx.t("<b>Equipment change</b>"),
             ctx.t("Item: {item}", item=_title(ctx)),
             ctx.t("Change: {what}", what=eq.change_what(ctx.tr, fake)),
             ctx.t("Happened on: {date}", date=ctx.tr.date(d))]
    if ctx.data.get("note"):
        lines.append(ctx.t("Note: {note}", note=ctx.data["note"]))
    if ctx.data.get("photo"):
        lines.append(ctx.t("Photo: attached"))
    lines.append("")
    if eq.is_recorder(ctx.person):
        lines.append(ctx.t("Save it? It will wait for the principal's monthly approval."))
    else:
        lines.append(ctx.t("Send it to the equipment officer to record?"))
    return CONFIRM.ask(ctx, "\n".join(lines))


def _save(ctx: Ctx) -> Step:
    """Save (checked again: someone may have recorded a change of the same item meanwhile)."""
    person, school = ctx.person, ctx.school
    assert person is not None and school is not None and school.id is not None
    k = ctx.data["kind"]
    qty = int(ctx.data.get("qty", 0))
    new = ctx.data.get("new")
    if new:
        if item_by_code(ctx.session, school_id=school.id, code=new["code"]) is not None:
            return Step.done(Reply(ctx.t("The code {code} was taken meanwhile. Nothing was saved; start again with "
                                         "/thietbi.", code=new["code"])))
        item = EquipmentItem(school_id=school.id, code=new["code"], name=new["name"], category=new["category"],
                             room=new["room"], quantity=0, damaged=0, status=ItemStatus.PROPOSED,
                             created_at=ctx.now, updated_at=ctx.now)
        item.is_it = looks_it(item.category, item.name)
        ctx.session.add(item)
        ctx.session.flush()
        ctx.audit("equipment.item_proposed", f"eqitem:{item.id}", code=item.code, name=item.name)
    else:
        found = _item(ctx)
        if found is None:
            return Step.done(Reply(ctx.t("That item is no longer in the catalogue.")))
        item = found
        stock = projected(ctx.session, item)
        low, high = limits(stock, k)
        if (k != ChangeKind.MOVED and (qty < low or (high is not None and qty > high))) or \
                (k == ChangeKind.MOVED and fold(ctx.data.get("room_to", "")) == fold(stock.room)):
            return Step.done(Reply(ctx.t("Meanwhile another change of {item} was recorded and this one no longer fits "
                                         "({state}). Nothing was saved; start again with /thietbi.",
                                         item=eq.item_title(item), state=_state_text(ctx.tr, stock))))
    ph = ctx.data.get("photo")
    photo_ref = FileRef(kind="photo", path=ph["path"], mime=ph.get("mime", ""), sha256=ph.get("sha256", "")) \
        if ph else None
    ch = eq.save_change(ctx, item=item, kind=k, quantity=qty, happened_on=date.fromisoformat(ctx.data["date"]),
                        room_to=ctx.data.get("room_to", ""), note=ctx.data.get("note", ""), photo=photo_ref)
    use_id = ctx.data.get("use_id")
    if use_id:
        ctx.audit("equipment.use_damage_recorded", f"equse:{use_id}", change=ch.id)
    if ch.status == ChangeStatus.PENDING:
        text = ctx.t("✔ Change #{id} is recorded ({what}, {item}). It waits for the principal's monthly approval.",
                     id=ch.id, what=eq.change_what(ctx.tr, ch), item=eq.item_title(item))
        if ch.late:
            text += "\n" + ctx.t("⏰ It is marked late: the deadline was {date}.", date=ctx.tr.date(ch.due_on))
        return Step.done(Reply(text))
    names = ", ".join(p.full_name for p in eq.recorders(ctx.session, school.id)) or "—"
    return Step.done(Reply(ctx.t("📨 Your report #{id} was sent to {names}. It must be recorded by {due}; you will be "
                                 "told when it is.", id=ch.id, names=names, due=ctx.tr.date(ch.due_on))))


confirm = CONFIRM.step(_save)


# -- the equipment officer: record or send back a report (eqk:<id>:ok|no) --------------------------
def on_report(ctx: Ctx) -> Step:
    """``eqk:<id>:ok|no`` — only a recorder of the same school, only while the change is reported."""
    parsed = parse_payload(ctx.inbound.payload, eq.REPORT_PREFIX, ("ok", "no"))
    person = ctx.person
    assert person is not None
    if parsed is None:
        return Step.stay(Reply(ctx.t("That button is no longer valid.")))
    ch = ctx.session.get(EquipmentChange, parsed.id)
    if ch is None or ch.school_id != person.school_id or not eq.is_recorder(person):
        ctx.audit("equipment.refused", f"eqchange:{parsed.id}", action=parsed.action)
        return Step.stay(Reply(ctx.t("Only the equipment officer or the board of directors can record reported "
                                     "changes.")))
    if ch.status != ChangeStatus.REPORTED:
        return Step.stay(eq.already_handled(ctx, ch))
    if parsed.action == "ok":
        return Step.stay(eq.record_reported(ctx, ch))
    return Step.start_flow("equipment_sendback", seed={"change_id": ch.id})


def _sendback_start(ctx: Ctx) -> Step:
    """Ask why the report is sent back."""
    return Step.goto("reason", Reply(ctx.t("Why is report #{id} not correct? Its author will read your reason.",
                                           id=ctx.data.get("change_id")),
                                     buttons=keyboard(choice(ctx.t("↩️ Back"), "back"))))


def _sendback_reason(ctx: Ctx, msg: Inbound) -> Step:
    """Send the report back with the reason (checked again: someone may have recorded it meanwhile)."""
    if choice_value(msg) == "back":
        return Step.done(Reply(ctx.t("Nothing was changed.")))
    reason = clean(msg.text or "")
    if not reason or len(reason) > 1000:
        return Step.stay(Reply(ctx.t("Please type the reason (at most 1000 characters).")))
    ch = ctx.session.get(EquipmentChange, int(ctx.data.get("change_id") or 0))
    assert ctx.person is not None
    if ch is None or ch.school_id != ctx.person.school_id or not eq.is_recorder(ctx.person):
        return Step.done(Reply(ctx.t("That report no longer exists.")))
    return Step.done(eq.reject_reported(ctx, ch, reason))


# -- the monthly card (eqb:<batch>:all|items) and item-by-item review -----------------------------
def on_batch(ctx: Ctx) -> Step:
    """``✅ Duyệt tất cả`` or ``🔎 Xem từng mục`` — decided on the server (role, school, delegation, state)."""
    parsed = parse_payload(ctx.inbound.payload, eq.BATCH_PREFIX, ("all", "items"))
    person = ctx.person
    assert person is not None
    if parsed is None:
        return Step.stay(Reply(ctx.t("That button is no longer valid.")))
    batch = ctx.session.get(EquipmentBatch, parsed.id)
    if batch is None or batch.school_id != person.school_id:
        ctx.audit("equipment.batch_refused", f"eqbatch:{parsed.id}", action=parsed.action, reason="unknown")
        return Step.stay(Reply(ctx.t("Only the principal (or the vice principal they delegated to) can approve "
                                     "equipment changes.")))
    if parsed.action == "all":
        return Step.stay(*eq.approve_all(ctx, batch))
    allowed, _ = eq.may_decide_batch(ctx, batch)
    if not allowed:
        ctx.audit("equipment.batch_refused", f"eqbatch:{batch.id}", action="items")
        return Step.stay(Reply(ctx.t("Only the principal (or the vice principal they delegated to) can approve "
                                     "equipment changes.")))
    if batch.status != "open":
        return Step.stay(eq.batch_already(ctx, batch))
    return Step.start_flow("equipment_review", seed={"batch_id": batch.id})


def _review_batch(ctx: Ctx) -> EquipmentBatch | None:
    batch = ctx.session.get(EquipmentBatch, int(ctx.data.get("batch_id") or 0))
    if batch is None:
        return None
    return batch


def _review_next(ctx: Ctx, *before: Reply) -> Step:
    batch = _review_batch(ctx)
    if batch is None:
        return Step.done(*before, Reply(ctx.t("That list no longer exists.")))
    allowed, by_delegation = eq.may_decide_batch(ctx, batch)
    if not allowed:
        return Step.done(*before, Reply(ctx.t("Only the principal (or the vice principal they delegated to) can "
                                              "approve equipment changes.")))
    left = eq.open_batch_changes(ctx.session, batch)
    if not left:
        if eq.close_batch_if_done(ctx, batch, by_delegation=by_delegation):
            eq.refresh_batch_cards(ctx, batch)
        changes = eq.batch_changes(ctx.session, batch)
        ok = sum(1 for c in changes if c.status == ChangeStatus.APPROVED)
        no = sum(1 for c in changes if c.status == ChangeStatus.REJECTED)
        return Step.done(*before, Reply(ctx.t("All changes of {month} are decided: {approved} approved, {rejected} "
                                              "rejected. The catalogue is updated.",
                                              month=eq.period_label(ctx.tr, batch.period),
                                              approved=ctx.tr.number(ok), rejected=ctx.tr.number(no))))
    ch = left[0]
    ctx.data["change_id"] = ch.id
    item = ctx.session.get(EquipmentItem, ch.item_id)
    reporter = ctx.session.get(Person, ch.reporter_id)
    lines = [ctx.t("<b>Change #{id}</b> · {n} left to decide", id=ch.id, n=ctx.tr.number(len(left))),
             ctx.t("Item: {item}", item=eq.item_title(item) if item else "?")]
    if item is not None:
        lines.append(ctx.t("Now: {state}", state=eq.item_state(ctx.tr, item)))
    lines += [ctx.t("Change: {what}", what=eq.change_what(ctx.tr, ch)),
              ctx.t("Happened on: {date}", date=ctx.tr.date(ch.happened_on)),
              ctx.t("From: {name}", name=reporter.full_name if reporter else "?")]
    if ch.late:
        lines.append(ctx.t("⏰ Recorded after the deadline ({date}).", date=ctx.tr.date(ch.due_on)))
    if ch.note:
        lines.append(ctx.t("Note: {note}", note=ch.note))
    buttons = keyboard(choice(ctx.t("✅ Approve"), "ok"), choice(ctx.t("❌ Reject"), "no"),
                       choice(ctx.t("⏸ Later"), "stop"), per_row=3)
    replies = list(before)
    if ch.photo_path and Path(ch.photo_path).is_file():
        replies.append(Reply(ctx.t("📷 Photo of change #{id}", id=ch.id),
                             file=OutFile("photo", ch.photo_path, f"thiet-bi-{ch.id}.jpg")))
    replies.append(Reply("\n".join(lines), buttons=buttons))
    return Step.goto("item", *replies)


def _review_start(ctx: Ctx) -> Step:
    """Show the first undecided change of the month."""
    return _review_next(ctx)


def _review_current(ctx: Ctx) -> tuple[EquipmentBatch | None, EquipmentChange | None, bool]:
    batch = _review_batch(ctx)
    ch = ctx.session.get(EquipmentChange, int(ctx.data.get("change_id") or 0))
    if batch is None or ch is None or ch.batch_id != batch.id:
        return batch, None, False
    allowed, by_delegation = eq.may_decide_batch(ctx, batch)
    return (batch, ch, by_delegation) if allowed else (batch, None, False)


def _review_item(ctx: Ctx, msg: Inbound) -> Step:
    """✅ approve (applied to the catalogue now), ❌ reject (asks the reason), ⏸ continue later."""
    value = choice_value(msg)
    if value == "stop":
        return Step.done(Reply(ctx.t("The remaining changes keep waiting. Type /duyetthietbi to continue.")))
    if value not in ("ok", "no"):
        return Step.stay(Reply(ctx.t("Please choose one of the buttons.")))
    batch, ch, by_delegation = _review_current(ctx)
    if ch is None:
        return _review_next(ctx)
    if value == "no":
        if ch.status != ChangeStatus.PENDING:
            return _review_next(ctx, Reply(ctx.t("Change #{id} was already decided.", id=ch.id)))
        return Step.goto("reason", Reply(ctx.t("Why is change #{id} rejected? Its author will read your reason.",
                                               id=ch.id), buttons=keyboard(choice(ctx.t("↩️ Back"), "back"))))
    outcome = eq.approve_change(ctx, ch, by_delegation=by_delegation)
    if outcome == "approved":
        eq.tell_approved(ctx, [ch])
        done = Reply(ctx.t("✅ Change #{id} approved.", id=ch.id))
    elif outcome == "conflict":
        done = Reply(ctx.t("Change #{id} no longer fits the catalogue (the stock would fall below zero); it was "
                           "returned to its author.", id=ch.id))
    else:
        done = Reply(ctx.t("Change #{id} was already decided.", id=ch.id))
    if batch is not None:
        eq.refresh_batch_cards(ctx, batch)
    return _review_next(ctx, done)


def _review_reason(ctx: Ctx, msg: Inbound) -> Step:
    """Reject the shown change with the typed reason; its author is told."""
    if choice_value(msg) == "back":
        return _review_next(ctx)
    reason = clean(msg.text or "")
    if not reason or len(reason) > 1000:
        return Step.stay(Reply(ctx.t("Please type the reason (at most 1000 characters).")))
    batch, ch, by_delegation = _review_current(ctx)
    if ch is None:
        return _review_next(ctx)
    if eq.reject_change(ctx, ch, reason, by_delegation=by_delegation):
        done = Reply(ctx.t("❌ Change #{id} rejected; its author was told why.", id=ch.id))
    else:
        done = Reply(ctx.t("Change #{id} was already decided.", id=ch.id))
    if batch is not None:
        eq.refresh_batch_cards(ctx, batch)
    return _review_next(ctx, done)


def show_batch(ctx: Ctx) -> Step:
    """``/duyetthietbi``: the open monthly card again (with buttons for whoever may decide)."""
    person = ctx.person
    assert person is not None
    batch = eq.current_batch(ctx.session, person.school_id)
    if batch is None:
        return Step.stay(Reply(ctx.t("No equipment changes are waiting for approval.")))
    allowed, _ = eq.may_decide_batch(ctx, batch)
    return Step.stay(eq.batch_card(ctx.session, ctx.tr, batch, buttons=allowed))


# -- reminders ------------------------------------------------------------------------------------
def due_rule(run: RuleRun) -> None:
    """Reported changes not yet recorded: before the deadline (``remind_days`` working days, then on the
    day) the reporter, their department head and the equipment officer are reminded; once late, the
    equipment officer and the department head. Working days only; one notice per change and stage."""
    today = run.today()
    if not is_working_day(today, run.days_off):
        return
    school = run.school
    assert school.id is not None
    remind = int(run.param("remind_days", eq.area_settings(school)["remind_days"]))
    rows = run.session.exec(select(EquipmentChange).where(EquipmentChange.school_id == school.id,
                                                          EquipmentChange.status == ChangeStatus.REPORTED)
                            .order_by(col(EquipmentChange.due_on), col(EquipmentChange.id))).all()
    officers = eq.recorders(run.session, school.id)
    officer_ids = {p.id for p in officers}
    for ch in rows:
        if ch.due_on < today:
            stage = "late"
        elif ch.due_on == today:
            stage = "due"
        elif working_days_between(today, ch.due_on, run.days_off) <= remind:
            stage = "soon"
        else:
            continue
        reporter = run.session.get(Person, ch.reporter_id)
        heads = eq.dept_heads_for(run.session, reporter, school.id)
        people = eq.unique_people([*([] if stage == "late" or reporter is None else [reporter]), *heads, *officers])
        left = working_days_between(today, ch.due_on, run.days_off)
        for p in people:
            run.notify(p, _due_notice(run, ch, stage, left, officer=p.id in officer_ids),
                       key=f"change:{ch.id}:{stage}")


def _due_notice(run: RuleRun, ch: EquipmentChange, stage: str, left: int, *, officer: bool) -> Any:
    def make(tr: Translator) -> Reply:
        item = run.session.get(EquipmentItem, ch.item_id)
        reporter = run.session.get(Person, ch.reporter_id)
        values = {"id": ch.id, "item": eq.item_title(item) if item else "?", "what": eq.change_what(tr, ch),
                  "name": reporter.full_name if reporter else "?", "date": tr.date(ch.happened_on),
                  "due": tr.date(ch.due_on), "n": tr.number(left)}
        if stage == "late":
            head = tr.t("⚠️ Equipment change #{id} ({item}, {what}), reported by {name} for {date}, is still not "
                        "recorded: the deadline was {due}. It will be marked late.", **values)
        elif stage == "due":
            head = tr.t("⏰ Today is the last day to record equipment change #{id} ({item}, {what}), reported by "
                        "{name} for {date}.", **values)
        else:
            head = tr.t("⏰ Equipment change #{id} ({item}, {what}), reported by {name} for {date}, is not recorded "
                        "yet. Deadline: {due} ({n} working days left).", **values)
        if officer:
            card = eq.report_card(run.session, tr, ch, buttons=True, today=run.today())
            return Reply(head + "\n\n" + card.text, buttons=card.buttons, track=card.track)
        return Reply(head)
    return make


def monthly_rule(run: RuleRun) -> None:
    """On the configured day: this month's batch, one card and the Excel list to the principal (and
    the active delegate); when nothing waits, a short note."""
    school = run.school
    assert school.id is not None
    batch = eq.create_batch(run.session, school, run.period, run.now)
    people = eq.unique_people([*eq.deciders(run.session, school.id, run.today()), *run.recipients()])
    if batch is None:
        waiting = eq.reported_count(run.session, school.id)

        def nothing(tr: Translator) -> Reply:
            text = tr.t("📋 No equipment changes are waiting for your approval this month ({month}).",
                        month=eq.period_label(tr, run.period))
            if waiting:
                text += "\n" + tr.t("📝 {n} reported changes are still waiting for the equipment officer to record "
                                    "them; they will come in a later month.", n=tr.number(waiting))
            return Reply(text)
        for p in people:
            run.notify(p, nothing)
        return
    if batch.status != "open":
        return
    path = batch_path(run.ctx.settings.data_dir, batch)
    if not batch.file_path or not Path(batch.file_path).is_file():
        write_batch_xlsx(run.session, run.ctx.tr, batch, path)
        batch.file_path = str(path)
        run.session.add(batch)
        run.ctx.audit("equipment.batch_created", f"eqbatch:{batch.id}", period=batch.period, changes=batch.total)
    for p in people:
        run.notify(p, lambda tr: eq.batch_card(run.session, tr, batch, buttons=True))
        run.notify(p, lambda tr: Reply(tr.t("📎 The equipment changes of {month} as an Excel file.",
                                            month=eq.period_label(tr, batch.period)),
                                       file=OutFile("document", str(path), f"thiet-bi-{batch.period}.xlsx")),
                   key=f"{run.period}:xlsx")


# -- registration ---------------------------------------------------------------------------------
SENDBACK_FLOW = Flow(name="equipment_sendback", title=N_("Send an equipment report back"), start=_sendback_start,
                     states={"reason": _sendback_reason}, in_menu=False)
REVIEW_FLOW = Flow(name="equipment_review", title=N_("Review equipment changes"), start=_review_start,
                   states={"item": _review_item, "reason": _review_reason}, in_menu=False)


#: commands and button namespaces that are not a conversation
HANDLERS: tuple[Handler, ...] = (
    Handler(on_report, prefix=eq.REPORT_PREFIX),
    Handler(on_batch, prefix=eq.BATCH_PREFIX),
    Handler(show_batch, commands=("duyetthietbi",), roles=frozenset({Role.PRINCIPAL,
                                                                               Role.VICE_PRINCIPAL}),
                        description=N_("Equipment changes waiting for your approval"), order=40),
)
#: conversations started from a button or another workflow (not from the menu)
FLOWS: tuple[Flow, ...] = (
    SENDBACK_FLOW,
    REVIEW_FLOW,
)


FLOW = Flow(
    name="equipment",
    command="thietbi",
    title=N_("Equipment changes"),
    description=N_("Record a change of teaching equipment (damaged, new, moved …)"),
    icon="🧰",
    start=start,
    states={"item": item_, "new_code": new_code, "new_name": new_name, "new_category": new_category,
            "new_room": new_room, "kind": kind, "quantity": quantity, "room": room, "date": date_, "note": note,
            "photo": photo, "confirm": confirm},
    order=40,
)

RULES = [
    Rule("equipment.due", title=N_("Equipment change to record"), schedule=Continuous(), fn=due_rule,
         roles=(Role.DEPT_HEAD, Role.EQUIPMENT), regulation="003 Điều 7.2", order=40),
    Rule("equipment.monthly", title=N_("Monthly approval of equipment changes"), schedule=Monthly(day=25, hour=8),
         fn=monthly_rule, roles=(Role.PRINCIPAL,), regulation="003 Điều 7.6", order=41),
]
