"""Teaching-equipment storage: the catalogue import, finding items, stock arithmetic, demo data.

``python main.py import-equipment FILE [--school NAME] [--update-stock]`` reads a CSV or XLSX table
(first sheet; the header row may sit under a title) with the columns ``code, name, category, room,
quantity, condition, date acquired`` — or the Vietnamese headers ``Mã, Tên thiết bị, Môn học / Loại,
Phòng, Số lượng, Tình trạng, Ngày nhập`` (case, diacritics and NFD forgiven; see :data:`HEADERS`).

* Codes are identifiers (seed 003 Điều 6.3): unique in the school, never changed, never deleted.
  An item is matched by its code; a code missing from the file is listed, not touched.
* A new code creates the item. For an existing code the descriptive columns (name, category, IT
  flag, acquisition date, note) are updated; quantity, condition and room are **not** — those change
  only through recorded and approved changes (Điều 7.2, 7.6). The report lists each difference so
  the equipment officer can record a stock-take. ``--update-stock`` applies them directly (first
  load of an existing school's books), audited.
* Every row is checked first; one bad row and nothing is written (rows named as Excel numbers them).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

from sqlmodel import Session, col, select

from bot.flows.equipment.models import (
    ChangeKind,
    ChangeStatus,
    EquipmentChange,
    EquipmentItem,
    ItemStatus,
)
from bot.i18n import Translator
from bot.text import clean, fold
from storage import audit
from storage.db import Database
from storage.models import School, utcnow
from storage.staff_import import FileProblem, Table, read_table

MAX_CODE = 60
MAX_NAME = 200
MAX_TEXT = 120
HEADER_SEARCH_ROWS = 30

HEADERS: dict[str, tuple[str, ...]] = {
    "code": ("code", "item code", "ma", "ma thiet bi", "ma so", "ma tb", "ma dinh danh", "ma hieu"),
    "name": ("name", "item", "item name", "ten", "ten thiet bi", "thiet bi", "ten thiet bi do dung",
             "ten do dung", "ten thiet bi do dung day hoc"),
    "category": ("category", "subject", "subject or category", "mon", "mon hoc", "loai", "danh muc", "nhom",
                 "phan loai", "loai thiet bi", "mon hoc loai", "mon hoc danh muc", "bo mon", "nhom thiet bi"),
    "room": ("room", "location", "phong", "phong hoc", "vi tri", "noi dat", "noi de", "kho", "phong vi tri",
             "phong bo mon"),
    "quantity": ("quantity", "qty", "so luong", "sl", "tong so", "so luong hien co"),
    "condition": ("condition", "state", "tinh trang", "tinh trang thiet bi", "chat luong", "hien trang"),
    "damaged": ("damaged", "damaged quantity", "so luong hong", "sl hong", "so hong", "hong"),
    "acquired": ("date acquired", "acquired", "acquired on", "acquisition date", "ngay nhap", "ngay mua",
                 "ngay dua vao su dung", "nam su dung", "nam dua vao su dung", "ngay tiep nhan", "ngay nhan",
                 "nam nhap", "ngay cap"),
    "is_it": ("it", "it equipment", "cntt", "thiet bi cntt"),
    "note": ("note", "notes", "ghi chu"),
}
_HEADER_KEYS = {name: key for key, names in HEADERS.items() for name in names}

#: Folded condition words → (condition, whole item damaged?)
CONDITIONS: dict[str, str] = {
    "": "good", "good": "good", "ok": "good", "tot": "good", "con tot": "good", "binh thuong": "good",
    "su dung duoc": "good", "dung duoc": "good", "dang su dung": "good", "moi": "good", "kha": "good",
    "damaged": "damaged", "broken": "damaged", "hong": "damaged", "hu": "damaged", "hu hong": "damaged",
    "hong hoc": "damaged", "can sua chua": "damaged", "cho sua chua": "damaged", "cho thanh ly": "damaged",
    "kem": "damaged",
    "lost": "lost", "mat": "lost", "that lac": "lost", "da mat": "lost",
    "disposed": "disposed", "thanh ly": "disposed", "da thanh ly": "disposed",
}
_CONDITION_COUNT = re.compile(r"^(hong|hu|hu hong|damaged|broken)\s*:?\s*(\d{1,6})$")
_YES = {"x", "co", "yes", "y", "1", "true", "cntt", "it", "v"}
_IT_WORDS = ("cntt", "tin hoc", "cong nghe thong tin", "may tinh", "laptop", "may in", "may chieu",
             "projector", "router", "modem", "wifi", "switch", "bang tuong tac", "man hinh tuong tac",
             "computer", "printer", "network", "mang lan")


def looks_it(category: str, name: str) -> bool:
    """IT equipment by its category or name (computers, printers, projectors, network devices)."""
    text = f" {fold(category)} | {fold(name)} "
    if re.search(r"(^|\W)it(\W|$)", fold(category)):
        return True
    return any(w in text for w in _IT_WORDS)


def norm_header(raw: str) -> str:
    s = fold(raw)
    s = re.sub(r"\(.*?\)|\[.*?\]|\*", " ", s)
    s = re.sub(r"[^a-z0-9]+", " ", s)
    return s.strip()


def parse_quantity(raw: str) -> int | None:
    """``12``, ``12.0``, ``1.000`` (thousands), ``12 cái`` → 12; negatives and words → None."""
    s = fold(raw).strip()
    s = re.sub(r"\s*(cai|chiec|bo|bo\.|cuon|to|hop|thung|may|units?|pcs)$", "", s).strip()
    if re.fullmatch(r"\d{1,3}([.,]\d{3})+", s):
        s = re.sub(r"[.,]", "", s)
    if re.fullmatch(r"\d+\.0+", s):
        s = s.split(".")[0]
    if not re.fullmatch(r"\d{1,7}", s):
        return None
    return int(s)


def parse_acquired(raw: str) -> date | None:
    """``2024-09-05``, ``2024-09-05 00:00:00`` (Excel), ``05/09/2024``, ``9/2024``, ``2024`` → date."""
    s = clean(raw)
    m = re.fullmatch(r"(\d{4})-(\d{1,2})-(\d{1,2})(?:[ T]\d{1,2}:\d{2}(?::\d{2})?)?", s)
    try:
        if m:
            return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        m = re.fullmatch(r"(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{4})", s)
        if m:
            return date(int(m.group(3)), int(m.group(2)), int(m.group(1)))
        m = re.fullmatch(r"(\d{1,2})[/.\-](\d{4})", s)
        if m:
            return date(int(m.group(2)), int(m.group(1)), 1)
        if re.fullmatch(r"(19|20)\d{2}", s):
            return date(int(s), 1, 1)
    except ValueError:
        return None
    return None


# -- stock arithmetic -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Stock:
    quantity: int
    damaged: int
    room: str
    status: str

    @property
    def good(self) -> int:
        return self.quantity - self.damaged

    def as_dict(self) -> dict[str, object]:
        return {"quantity": self.quantity, "damaged": self.damaged, "room": self.room, "status": self.status}

    @classmethod
    def of(cls, item: EquipmentItem) -> Stock:
        return cls(item.quantity, item.damaged, item.room, item.status)


def limits(stock: Stock, kind: str) -> tuple[int, int | None]:
    """The quantities a change of ``kind`` may carry so that nothing falls below zero."""
    if kind == ChangeKind.NEW:
        return 1, None
    if kind == ChangeKind.DAMAGED:
        return 1, stock.good
    if kind == ChangeKind.REPAIRED:
        return 1, stock.damaged
    if kind in (ChangeKind.LOST, ChangeKind.DISPOSED):
        return 1, stock.quantity
    if kind == ChangeKind.STOCKTAKE:
        return 0, None
    return 0, None  # moved: the whole item moves


def apply_kind(stock: Stock, kind: str, qty: int, room_to: str = "") -> Stock | None:
    """The stock after the change, or None when the change cannot apply (below zero, same room …)."""
    if kind == ChangeKind.MOVED:
        if not room_to or fold(room_to) == fold(stock.room):
            return None
        return Stock(stock.quantity, stock.damaged, room_to, stock.status)
    low, high = limits(stock, kind)
    if qty < low or (high is not None and qty > high):
        return None
    q, d, status = stock.quantity, stock.damaged, stock.status
    if kind == ChangeKind.NEW:
        q += qty
    elif kind == ChangeKind.DAMAGED:
        d += qty
    elif kind == ChangeKind.REPAIRED:
        d -= qty
    elif kind == ChangeKind.LOST:
        q -= qty
        d = min(d, q)  # good units go missing first; what is left may all be damaged
    elif kind == ChangeKind.DISPOSED:
        q -= qty
        d = min(max(0, d - qty), q)  # damaged units are disposed of first
    elif kind == ChangeKind.STOCKTAKE:
        q = qty
        d = min(d, q)
    if q == 0:
        status = {ChangeKind.DISPOSED: ItemStatus.DISPOSED}.get(ChangeKind(kind), ItemStatus.LOST)
    elif status in (ItemStatus.PROPOSED, ItemStatus.LOST, ItemStatus.DISPOSED) and q > 0:
        status = ItemStatus.ACTIVE
    if q < 0 or d < 0 or d > q:
        return None
    return Stock(q, d, stock.room, str(status))


OPEN_STATUSES = (ChangeStatus.REPORTED, ChangeStatus.PENDING)


def open_changes(session: Session, *, item_id: int, exclude: int | None = None) -> list[EquipmentChange]:
    """Changes of the item not yet decided (reported or pending), in the order they happened."""
    q = select(EquipmentChange).where(EquipmentChange.item_id == item_id,
                                      col(EquipmentChange.status).in_([s.value for s in OPEN_STATUSES]))
    if exclude is not None:
        q = q.where(EquipmentChange.id != exclude)
    return list(session.exec(q.order_by(col(EquipmentChange.happened_on), col(EquipmentChange.id))))


def projected(session: Session, item: EquipmentItem, *, exclude: int | None = None) -> Stock:
    """The item as it will be once every open change of it is approved (those that fit)."""
    stock = Stock.of(item)
    assert item.id is not None
    for ch in open_changes(session, item_id=item.id, exclude=exclude):
        after = apply_kind(stock, ch.kind, ch.quantity, ch.room_to)
        if after is not None:
            stock = after
    return stock


# -- finding items --------------------------------------------------------------------------------
def find_items(session: Session, *, school_id: int, query: str, it_only: bool = False,
               limit: int = 50) -> list[EquipmentItem]:
    """By exact code first, else by part of the name or code (diacritics and case forgiven)."""
    q = fold(query)
    if not q:
        return []
    base = select(EquipmentItem).where(EquipmentItem.school_id == school_id,
                                       EquipmentItem.status != ItemStatus.REJECTED)
    if it_only:
        base = base.where(col(EquipmentItem.is_it).is_(True))
    items = list(session.exec(base.order_by(col(EquipmentItem.code))))
    exact = [i for i in items if fold(i.code) == q]
    if exact:
        return exact
    words = q.split()
    hits = [i for i in items if all(w in fold(i.name) or w in fold(i.code) for w in words)]
    hits.sort(key=lambda i: (not fold(i.name).startswith(q), i.status != ItemStatus.ACTIVE, fold(i.name)))
    return hits[:limit]


def item_by_code(session: Session, *, school_id: int, code: str) -> EquipmentItem | None:
    key = clean(code).casefold()
    for item in session.exec(select(EquipmentItem).where(EquipmentItem.school_id == school_id)):
        if item.code.casefold() == key:
            return item
    return None


def next_code(session: Session, *, school_id: int, prefix: str = "TB") -> str:
    """A fresh code ``TB-0001`` … for an item added from the chat (never reused)."""
    n = 0
    pat = re.compile(rf"^{re.escape(prefix)}-(\d+)$", re.IGNORECASE)
    for code in session.exec(select(EquipmentItem.code).where(EquipmentItem.school_id == school_id)):
        m = pat.match(code)
        if m:
            n = max(n, int(m.group(1)))
    return f"{prefix}-{n + 1:04d}"


def distinct_values(session: Session, *, school_id: int, column: str, limit: int = 12) -> list[str]:
    """Rooms or categories in use, most frequent first (for buttons)."""
    counts: dict[str, int] = {}
    shown: dict[str, str] = {}
    for item in session.exec(select(EquipmentItem).where(EquipmentItem.school_id == school_id)):
        value = getattr(item, column) or ""
        if not value:
            continue
        key = fold(value)
        counts[key] = counts.get(key, 0) + 1
        shown.setdefault(key, value)
    return [shown[k] for k, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]]


# -- import ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ItemRow:
    row: int
    code: str
    name: str | None
    category: str | None
    room: str | None
    quantity: int | None
    damaged: int | None
    status: str | None  # active | lost | disposed, None: keep
    acquired_on: date | None
    is_it: bool | None
    note: str | None


@dataclass
class EquipmentImportReport:
    file: str
    school: str = ""
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    stock_updated: int = 0
    differences: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def render(self, tr: Translator) -> str:
        out = [tr.t("Equipment import: {file}", file=self.file)]
        if self.problems:
            out.append(tr.t("Nothing was imported. Fix these problems in the file ({n}) and run the import "
                            "again:", n=tr.number(len(self.problems))))
            out.extend("  • " + p for p in self.problems)
            return "\n".join(out)
        out.append(tr.t("School: {school}", school=self.school))
        out.append(tr.t("Import finished: {created} items added, {updated} updated, {unchanged} unchanged.",
                        created=tr.number(self.created), updated=tr.number(self.updated),
                        unchanged=tr.number(self.unchanged)))
        if self.stock_updated:
            out.append(tr.t("Quantity, condition or room set from the file for {n} items (--update-stock).",
                            n=tr.number(self.stock_updated)))
        if self.differences:
            out.append(tr.t("The file differs from the catalogue for these items. Quantities, condition and room "
                            "change only through a recorded change (/thietbi, for example a stock-take "
                            "correction) approved by the principal, or with --update-stock:"))
            out.extend("  • " + d for d in self.differences)
        if self.missing:
            out.append(tr.t("{n} items of the catalogue are not in this file; nothing was changed for them "
                            "(items are never deleted): {codes}", n=tr.number(len(self.missing)),
                            codes=", ".join(self.missing[:30]) + (" …" if len(self.missing) > 30 else "")))
        return "\n".join(out)


def _find_header(table: Table) -> tuple[int, dict[str, int]] | None:
    for row_no, cells in table[:HEADER_SEARCH_ROWS]:
        cols: dict[str, int] = {}
        for idx, cell in enumerate(cells):
            key = _HEADER_KEYS.get(norm_header(cell))
            if key is not None and key not in cols:
                cols[key] = idx
        if "code" in cols and "name" in cols:
            return row_no, cols
    return None


def _cell(cells: Sequence[str], cols: dict[str, int], key: str) -> str | None:
    idx = cols.get(key)
    if idx is None:
        return None
    return clean(cells[idx]) if idx < len(cells) else ""


def validate_rows(table: Table, header_row: int, cols: dict[str, int],
                  tr: Translator) -> tuple[list[ItemRow], list[str]]:
    rows: list[ItemRow] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for row_no, cells in table:
        if row_no <= header_row:
            continue
        if not any(clean(cells[i]) for i in cols.values() if i < len(cells)):
            continue
        found: list[str] = []
        code = _cell(cells, cols, "code") or ""
        name = _cell(cells, cols, "name")
        if not code:
            found.append(tr.t("Row {row}: the code is missing.", row=row_no))
        elif len(code) > MAX_CODE:
            found.append(tr.t("Row {row}: the code is too long (at most {max} characters).", row=row_no, max=MAX_CODE))
        elif code.casefold() in seen:
            found.append(tr.t("Row {row}: the code {code} already appears in row {other}.", row=row_no, code=code,
                              other=seen[code.casefold()]))
        else:
            seen[code.casefold()] = row_no
        if name is not None and len(name) > MAX_NAME:
            found.append(tr.t("Row {row}: the name is too long (at most {max} characters).", row=row_no, max=MAX_NAME))
        category, room = _cell(cells, cols, "category"), _cell(cells, cols, "room")
        for value in (category, room):
            if value is not None and len(value) > MAX_TEXT:
                found.append(tr.t("Row {row}: “{value}” is too long (at most {max} characters).", row=row_no,
                                  value=value[:40] + "…", max=MAX_TEXT))
        raw_qty = _cell(cells, cols, "quantity")
        qty = parse_quantity(raw_qty) if raw_qty else None
        if raw_qty and qty is None:
            found.append(tr.t("Row {row}: the quantity “{value}” is not a whole number of zero or more.",
                              row=row_no, value=raw_qty))
        raw_dmg = _cell(cells, cols, "damaged")
        damaged = parse_quantity(raw_dmg) if raw_dmg else None
        if raw_dmg and damaged is None:
            found.append(tr.t("Row {row}: the damaged quantity “{value}” is not a whole number of zero or more.",
                              row=row_no, value=raw_dmg))
        raw_cond = _cell(cells, cols, "condition")
        status: str | None = None
        if raw_cond is not None:
            key = fold(raw_cond).strip(" .")
            m = _CONDITION_COUNT.match(key)
            if m:
                damaged = int(m.group(2)) if damaged is None else damaged
                status = ItemStatus.ACTIVE
            elif key in CONDITIONS:
                cond = CONDITIONS[key]
                if cond == "damaged" and damaged is None:
                    damaged = -1  # all of them; resolved once the quantity is known
                elif cond == "good" and damaged is None and raw_cond:
                    damaged = 0
                status = {"lost": ItemStatus.LOST, "disposed": ItemStatus.DISPOSED}.get(cond, ItemStatus.ACTIVE
                                                                                       if raw_cond else None)
            else:
                found.append(tr.t("Row {row}: unknown condition “{value}” (use Tốt, Hỏng, Hỏng 2, Mất or Thanh lý).",
                                  row=row_no, value=raw_cond))
        if status in (ItemStatus.LOST, ItemStatus.DISPOSED):
            qty, damaged = 0, 0
        if damaged == -1 and qty is not None:
            damaged = qty  # "Hỏng": all of them
        if qty is not None and damaged is not None and damaged > qty:
            found.append(tr.t("Row {row}: more damaged ({damaged}) than the quantity ({quantity}).", row=row_no,
                              damaged=damaged, quantity=qty))
        raw_date = _cell(cells, cols, "acquired")
        acquired = parse_acquired(raw_date) if raw_date else None
        if raw_date and acquired is None:
            found.append(tr.t("Row {row}: the date “{value}” is not understood (write it like 05/09/2024).",
                              row=row_no, value=raw_date))
        raw_it = _cell(cells, cols, "is_it")
        is_it = (fold(raw_it) in _YES) if raw_it else None
        if found:
            problems.extend(found)
            continue
        rows.append(ItemRow(row_no, code, name or None, category, room, qty, damaged, status, acquired, is_it,
                            _cell(cells, cols, "note")))
    return rows, problems


class NoSchool(Exception):
    pass


def _school(s: Session, name: str | None) -> School:
    schools = list(s.exec(select(School).order_by(col(School.id))))
    if name:
        for sc in schools:
            if fold(sc.name) == fold(name) or (sc.short_name and fold(sc.short_name) == fold(name)):
                return sc
        school = School(name=clean(name))
        s.add(school)
        s.flush()
        return school
    if len(schools) == 1:
        return schools[0]
    raise NoSchool()


def import_equipment_file(db: Database, path: str, *, school_name: str | None, tr: Translator,
                          update_stock: bool = False) -> EquipmentImportReport:
    """Validate the whole file, then apply it in one transaction with one audit event."""
    from pathlib import Path

    report = EquipmentImportReport(Path(path).name or path)
    try:
        tables = read_table(path)
    except FileProblem as exc:
        report.problems.append(exc.problem.render(tr))
        return report
    best: tuple[Table, int, dict[str, int]] | None = None
    for table in tables:
        found = _find_header(table)
        if found and (best is None or len(found[1]) > len(best[2])):
            best = (table, found[0], found[1])
    if best is None:
        report.problems.append(tr.t("No header row with at least the columns code and name (Mã, Tên thiết bị) "
                                    "was found."))
        return report
    table, header_row, cols = best
    rows, problems = validate_rows(table, header_row, cols, tr)
    report.problems.extend(problems)
    if not rows and not problems:
        report.problems.append(tr.t("The table has no equipment rows under the header (row {row}).", row=header_row))
    if report.problems:
        return report

    def apply(s: Session) -> None:
        school = _school(s, school_name)
        assert school.id is not None
        report.school = school.name
        existing = {i.code.casefold(): i for i in s.exec(select(EquipmentItem)
                                                         .where(EquipmentItem.school_id == school.id))}
        in_file: set[str] = set()
        new_problems: list[str] = []
        for r in rows:
            in_file.add(r.code.casefold())
            item = existing.get(r.code.casefold())
            if item is None:
                if not r.name:
                    new_problems.append(tr.t("Row {row}: the name is missing for the new code {code}.",
                                             row=r.row, code=r.code))
                    continue
                if r.quantity is None and r.status not in (ItemStatus.LOST, ItemStatus.DISPOSED):
                    new_problems.append(tr.t("Row {row}: the quantity is missing for the new code {code}.",
                                             row=r.row, code=r.code))
                    continue
                qty = r.quantity or 0
                item = EquipmentItem(school_id=school.id, code=r.code, name=r.name, category=r.category or "",
                                     room=r.room or "", quantity=qty, damaged=_damaged(r, qty) or 0,
                                     status=r.status or (ItemStatus.ACTIVE if qty else ItemStatus.LOST),
                                     is_it=r.is_it if r.is_it is not None else looks_it(r.category or "", r.name),
                                     acquired_on=r.acquired_on, note=r.note or "")
                s.add(item)
                report.created += 1
                continue
            changed = False
            for attr, value in (("name", r.name), ("category", r.category), ("acquired_on", r.acquired_on),
                                ("note", r.note), ("is_it", r.is_it)):
                if value is not None and value != "" and getattr(item, attr) != value:
                    setattr(item, attr, value)
                    changed = True
            diffs = _stock_differences(tr, item, r)
            if diffs and update_stock:
                if r.quantity is not None:
                    item.quantity = r.quantity
                dmg = _damaged(r, item.quantity)
                if dmg is not None:
                    item.damaged = dmg
                item.damaged = min(item.damaged, item.quantity)
                if r.room:
                    item.room = r.room
                if r.status:
                    item.status = r.status if item.quantity or r.status != ItemStatus.ACTIVE else ItemStatus.LOST
                report.stock_updated += 1
                changed = True
            elif diffs:
                report.differences.append(tr.t("{code} {name}: {changes}", code=item.code, name=item.name,
                                               changes="; ".join(diffs)))
            if changed:
                item.updated_at = utcnow()
                s.add(item)
                report.updated += 1
            else:
                report.unchanged += 1
        if new_problems:
            report.problems.extend(new_problems)
            raise _Abort()
        report.missing = sorted(i.code for k, i in existing.items() if k not in in_file
                                and i.status not in (ItemStatus.REJECTED,))
        audit.record(s, action="equipment.imported", school_id=school.id, subject=f"school:{school.id}",
                     details={"created": report.created, "updated": report.updated,
                              "stock_updated": report.stock_updated, "file": report.file})

    try:
        db.run_sync(apply)
    except NoSchool:
        report.problems.append(tr.t("Name the school with --school (the database holds several schools, or none)."))
    except _Abort:
        report.created = report.updated = report.unchanged = report.stock_updated = 0
        report.differences, report.missing = [], []
    return report


def _damaged(r: ItemRow, quantity: int) -> int | None:
    """The damaged count of a row (``-1`` stands for "all of them": the condition said Hỏng)."""
    if r.damaged is None:
        return None
    return min(quantity, quantity if r.damaged == -1 else r.damaged)


class _Abort(Exception):
    """Roll the import back (problems found while applying)."""


def _stock_differences(tr: Translator, item: EquipmentItem, r: ItemRow) -> list[str]:
    out: list[str] = []
    if r.quantity is not None and r.quantity != item.quantity:
        out.append(tr.t("quantity {old} in the catalogue, {new} in the file", old=item.quantity, new=r.quantity))
    dmg = _damaged(r, r.quantity if r.quantity is not None else item.quantity)
    if dmg is not None and dmg != item.damaged:
        out.append(tr.t("damaged {old} in the catalogue, {new} in the file", old=item.damaged, new=dmg))
    if r.room and fold(r.room) != fold(item.room):
        out.append(tr.t("room “{old}” in the catalogue, “{new}” in the file", old=item.room, new=r.room))
    return out


# -- demo data ------------------------------------------------------------------------------------
DEMO_ITEMS: tuple[tuple[str, str, str, str, int, int], ...] = (
    ("TB-0001", "Máy chiếu Epson EB-X06", "CNTT", "Phòng Tin học", 2, 0),
    ("TB-0002", "Máy tính để bàn giáo viên", "CNTT", "Phòng Tin học", 25, 1),
    ("TB-0003", "Bộ lắp ghép mô hình kĩ thuật", "Công nghệ", "Kho thiết bị", 20, 2),
    ("TB-0004", "Bản đồ hành chính Việt Nam", "Lịch sử và Địa lí", "Kho thiết bị", 5, 0),
    ("TB-0005", "Bộ thiết bị dạy phân số", "Toán", "Kho thiết bị", 30, 0),
    ("TB-0006", "Đàn organ Yamaha", "Âm nhạc", "Phòng Âm nhạc", 3, 0),
    ("TB-0007", "Kính lúp cầm tay", "Khoa học", "Phòng Khoa học", 40, 3),
    ("TB-0008", "Bộ tranh Tiếng Việt lớp 1", "Tiếng Việt", "Kho thiết bị", 10, 0),
    ("TB-0009", "Loa kéo di động", "Chung", "Phòng Hội đồng", 2, 0),
    ("TB-0010", "Bộ phát Wi-Fi TP-Link", "CNTT", "Phòng Hội đồng", 4, 0),
)


def demo_seed(session: Session, school: School) -> int:
    """The demo school's catalogue (idempotent: existing codes are left as they are)."""
    assert school.id is not None
    have = {c.casefold() for c in session.exec(select(EquipmentItem.code)
                                                .where(EquipmentItem.school_id == school.id))}
    n = 0
    for code, name, category, room, qty, damaged in DEMO_ITEMS:
        if code.casefold() in have:
            continue
        session.add(EquipmentItem(school_id=school.id, code=code, name=name, category=category, room=room,
                                  quantity=qty, damaged=damaged, is_it=looks_it(category, name),
                                  acquired_on=date(2024, 9, 5)))
        n += 1
    session.flush()
    return n
