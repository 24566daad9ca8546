"""Equipment reports and Excel files (seed 003 Điều 8.1, 12.2).

* :func:`parse_period` reads ``HK1 2026-2027``, ``học kỳ 2 năm học 2026-2027``, ``2026-2027`` (the
  whole school year), ``cả năm``; the semester bounds come from ``School.settings["equipment"]``
  (``year_start`` and ``hk2_start``, ``MM-DD``; by default 1 August and 16 January; see
  :class:`bot.flows.equipment.settings.EquipmentSettings`).
* :func:`build_report` counts the catalogue by condition, category and room, lists the changes that
  happened in the period and how often each item was borrowed (the use log); :func:`write_report_xlsx`
  writes it to Excel and :func:`archive_report` files it under
  ``DATA_DIR/reports/<school>/thiet-bi/<năm học>/<kỳ>/`` (recorded in ``equipment_report``).
* :func:`write_batch_xlsx` is the list attached to the principal's monthly card."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from sqlmodel import Session, col, select

from bot.flows.equipment.models import (
    EquipmentBatch,
    EquipmentChange,
    EquipmentItem,
    EquipmentReport,
    EquipmentUse,
    ItemStatus,
)
from bot.flows.equipment.service import (
    CHANGE_STATUS_NAMES,
    ITEM_STATUS_NAMES,
    batch_changes,
    change_what,
    kind_name,
)
from bot.flows.equipment.settings import EquipmentSettings
from bot.i18n import N_, Translator
from bot.text import fold
from storage.models import Person, School

PARTS: dict[str, str] = {"HK1": N_("Semester 1"), "HK2": N_("Semester 2"), "CN": N_("Whole school year")}


@dataclass(frozen=True, slots=True)
class Period:
    year: int          # the school year year–(year+1)
    part: str          # HK1 | HK2 | CN
    start: date
    end: date          # inclusive

    @property
    def year_label(self) -> str:
        return f"{self.year}-{self.year + 1}"

    @property
    def key(self) -> str:
        return f"{self.year_label}/{self.part}"

    def label(self, tr: Translator) -> str:
        return tr.t("{part} {year}", part=tr.t(PARTS[self.part]), year=self.year_label)


def _bounds(settings: EquipmentSettings | Mapping[str, Any]) -> EquipmentSettings:
    """The school's :class:`EquipmentSettings`, or the same read from a stored dict (bad values:
    the defaults)."""
    return settings if isinstance(settings, EquipmentSettings) else EquipmentSettings.from_raw(settings)[0]


def school_year_of(today: date, settings: EquipmentSettings | Mapping[str, Any]) -> int:
    month, day = _bounds(settings).year_start_md
    return today.year if (today.month, today.day) >= (month, day) else today.year - 1


def period_for(year: int, part: str, settings: EquipmentSettings | Mapping[str, Any]) -> Period:
    conf = _bounds(settings)
    sm, sd = conf.year_start_md
    hm, hd = conf.hk2_start_md
    start = date(year, sm, sd)
    end = date(year + 1, sm, sd) - timedelta(days=1)
    hk2 = date(year + 1 if (hm, hd) < (sm, sd) else year, hm, hd)
    if part == "HK1":
        return Period(year, part, start, hk2 - timedelta(days=1))
    if part == "HK2":
        return Period(year, part, hk2, end)
    return Period(year, "CN", start, end)


_YEAR = re.compile(r"(20\d{2})\s*[-–/]\s*(20\d{2}|\d{2})\b")
_SEMESTER = re.compile(r"\b(?:hk|hoc ky|hoc ki|ky|ki|semester|s)\s*(1|2|ii|i)\b")


def parse_period(raw: str, *, today: date, settings: EquipmentSettings | Mapping[str, Any]) -> Period | None:
    """``HK1 2026-2027`` / ``hk 2 2026-27`` / ``2026-2027`` / ``cả năm`` → :class:`Period` (None if unclear)."""
    s = fold(raw).replace("hki", "hk i").replace("hkii", "hk ii")
    s = re.sub(r"\bhk(?=\d)", "hk ", s)
    year: int | None = None
    m = _YEAR.search(s)
    if m:
        a = int(m.group(1))
        b = int(m.group(2)) if len(m.group(2)) == 4 else 2000 + int(m.group(2))
        if b != a + 1:
            return None
        year = a
        s = (s[:m.start()] + " " + s[m.end():]).strip()
    part = "CN"
    ms = _SEMESTER.search(s)
    if ms:
        part = "HK1" if ms.group(1) in ("1", "i") else "HK2"
        s = (s[:ms.start()] + " " + s[ms.end():]).strip()
    rest = re.sub(r"\b(nam hoc|nam|ca nam|ca|year|school year|whole|cn|bao cao)\b", " ", s).strip(" ,.-")
    if rest:
        return None
    if year is None:
        year = school_year_of(today, settings)
    return period_for(year, part, settings)


# -- the report -----------------------------------------------------------------------------------
@dataclass
class Group:
    items: int = 0
    units: int = 0
    damaged: int = 0

    @property
    def good(self) -> int:
        return self.units - self.damaged


@dataclass
class ReportData:
    school: str
    period: Period
    made_at: datetime
    items: list[EquipmentItem] = field(default_factory=list)
    condition: dict[str, int] = field(default_factory=dict)
    by_category: dict[str, Group] = field(default_factory=dict)
    by_room: dict[str, Group] = field(default_factory=dict)
    changes: list[EquipmentChange] = field(default_factory=list)
    change_counts: dict[str, int] = field(default_factory=dict)
    uses: dict[int, tuple[int, int]] = field(default_factory=dict)  # item id → (times, units)
    people: dict[int, str] = field(default_factory=dict)
    last_backup: datetime | None = None

    @property
    def total_uses(self) -> int:
        return sum(t for t, _ in self.uses.values())


def build_report(session: Session, school: School, period: Period, *, now: datetime, tz: Any) -> ReportData:
    from storage.backup import last_backup

    assert school.id is not None
    data = ReportData(school=school.name, period=period, made_at=now)
    items = list(session.exec(select(EquipmentItem).where(
        EquipmentItem.school_id == school.id,
        col(EquipmentItem.status).not_in([ItemStatus.PROPOSED, ItemStatus.REJECTED]))
        .order_by(col(EquipmentItem.category), col(EquipmentItem.code))))
    data.items = items
    cond = {"items": 0, "units": 0, "good": 0, "damaged": 0, "lost": 0, "disposed": 0}
    for it in items:
        if it.status == ItemStatus.LOST:
            cond["lost"] += 1
            continue
        if it.status == ItemStatus.DISPOSED:
            cond["disposed"] += 1
            continue
        cond["items"] += 1
        cond["units"] += it.quantity
        cond["damaged"] += it.damaged
        cond["good"] += it.quantity - it.damaged
        for key, groups in ((it.category or "—", data.by_category), (it.room or "—", data.by_room)):
            g = groups.setdefault(key, Group())
            g.items += 1
            g.units += it.quantity
            g.damaged += it.damaged
    data.condition = cond
    data.changes = list(session.exec(select(EquipmentChange).where(
        EquipmentChange.school_id == school.id, col(EquipmentChange.happened_on) >= period.start,
        col(EquipmentChange.happened_on) <= period.end)
        .order_by(col(EquipmentChange.happened_on), col(EquipmentChange.id))))
    for ch in data.changes:
        data.change_counts[ch.kind] = data.change_counts.get(ch.kind, 0) + 1
    start_at = datetime.combine(period.start, time(0), tzinfo=tz)
    end_at = datetime.combine(period.end + timedelta(days=1), time(0), tzinfo=tz)
    for use in session.exec(select(EquipmentUse).where(EquipmentUse.school_id == school.id,
                                                       col(EquipmentUse.borrowed_at) >= start_at,
                                                       col(EquipmentUse.borrowed_at) < end_at)):
        times, units = data.uses.get(use.item_id, (0, 0))
        data.uses[use.item_id] = (times + 1, units + use.quantity)
    ids = {ch.reporter_id for ch in data.changes} | {ch.recorder_id for ch in data.changes if ch.recorder_id}
    for pid in ids:
        p = session.get(Person, pid)
        data.people[pid] = p.full_name if p else "?"
    info = last_backup(session)
    data.last_backup = info["at"] if info else None
    return data


def summary_text(tr: Translator, data: ReportData, items_by_id: dict[int, EquipmentItem]) -> str:
    c = data.condition
    p = data.period
    lines = [tr.t("📊 <b>Equipment report · {period}</b> ({start} – {end})", period=p.label(tr),
                  start=tr.date(p.start), end=tr.date(p.end)),
             tr.t("Catalogue on {date}: {items} items in use, {units} units ({good} good, {damaged} damaged); "
                  "{lost} lost, {disposed} disposed of.", date=tr.date(data.made_at), items=tr.number(c["items"]),
                  units=tr.number(c["units"]), good=tr.number(c["good"]), damaged=tr.number(c["damaged"]),
                  lost=tr.number(c["lost"]), disposed=tr.number(c["disposed"]))]
    if data.changes:
        counts = " · ".join(f"{kind_name(tr, k)}: {tr.number(n)}" for k, n in data.change_counts.items())
        lines.append(tr.t("Changes in the period: {n} ({counts}).", n=tr.number(len(data.changes)), counts=counts))
    else:
        lines.append(tr.t("No changes in the period."))
    lines.append(tr.t("Borrowed {n} times in the period.", n=tr.number(data.total_uses)))
    top = sorted(data.uses.items(), key=lambda kv: -kv[1][0])[:3]
    if top:
        lines.append(tr.t("Used most: {items}", items="; ".join(
            tr.t("{item} ({n} times)", item=items_by_id[i].name if i in items_by_id else "?", n=tr.number(t))
            for i, (t, _u) in top)))
    if data.last_backup is not None:
        lines.append(tr.t("💾 Last backup: {date}.", date=tr.date(data.last_backup)))
    else:
        lines.append(tr.t("💾 No backup of the data is recorded yet (Điều 12.1: at least every 3 months)."))
    return "\n".join(lines)


def _sheet(wb: Any, title: str, header: list[str], first: bool = False) -> Any:
    from openpyxl.styles import Font

    ws = wb.active if first else wb.create_sheet()
    ws.title = re.sub(r"[\\/*?:\[\]]", " ", title)[:31]
    ws.append(header)
    for cell in ws[1]:
        cell.font = Font(bold=True)
    ws.freeze_panes = "A2"
    for i, h in enumerate(header, start=1):
        ws.column_dimensions[ws.cell(row=1, column=i).column_letter].width = max(10, min(40, len(h) + 4))
    return ws


def _save(wb: Any, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("." + path.name + ".part")
    wb.save(tmp)
    tmp.replace(path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_report_xlsx(tr: Translator, data: ReportData, path: Path) -> str:
    """Write the report; return the file's SHA-256."""
    from openpyxl import Workbook

    wb = Workbook()
    p = data.period
    ws = _sheet(wb, tr.t("Summary"), [tr.t("Indicator"), tr.t("Value")], first=True)
    c = data.condition
    for label, value in ((tr.t("School"), data.school), (tr.t("Period"), p.label(tr)),
                         (tr.t("From"), tr.date(p.start)), (tr.t("To"), tr.date(p.end)),
                         (tr.t("Made on"), tr.datetime(data.made_at)),
                         (tr.t("Items in use"), c["items"]), (tr.t("Number of units"), c["units"]),
                         (tr.t("Good units"), c["good"]), (tr.t("Damaged units"), c["damaged"]),
                         (tr.t("Items lost"), c["lost"]), (tr.t("Items disposed of"), c["disposed"]),
                         (tr.t("Changes in the period"), len(data.changes)),
                         (tr.t("Times borrowed in the period"), data.total_uses),
                         (tr.t("Last backup"), tr.date(data.last_backup) if data.last_backup else tr.t("none"))):
        ws.append([label, value])
    ws.append([])
    ws.append([tr.t("Changes by kind"), ""])
    for kind, n in data.change_counts.items():
        ws.append([kind_name(tr, kind), n])
    for title, groups in ((tr.t("By category"), data.by_category), (tr.t("By room"), data.by_room)):
        gs = _sheet(wb, title, [title, tr.t("Items"), tr.t("Number of units"), tr.t("Good units"), tr.t("Damaged units")])
        for key in sorted(groups, key=fold):
            g = groups[key]
            gs.append([key, g.items, g.units, g.good, g.damaged])
    cs = _sheet(wb, tr.t("Catalogue"), [tr.t("Code"), tr.t("Item"), tr.t("Subject or category"), tr.t("Room"), tr.t("Quantity"),
                                        tr.t("Damaged"), tr.t("Status"), tr.t("IT equipment"), tr.t("Date acquired")])
    for it in data.items:
        cs.append([it.code, it.name, it.category, it.room, it.quantity, it.damaged,
                   tr.t(ITEM_STATUS_NAMES.get(it.status, it.status)), tr.t("yes") if it.is_it else tr.t("no"),
                   tr.date(it.acquired_on) if it.acquired_on else ""])
    items_by_id = {it.id: it for it in data.items}
    ch_ws = _sheet(wb, tr.t("Changes"), [tr.t("Change #"), tr.t("Code"), tr.t("Item"), tr.t("Kind of change"),
                                         tr.t("Quantity"), tr.t("Date of the change"), tr.t("Deadline to record"),
                                         tr.t("Recorded late"), tr.t("Reported by"), tr.t("Status"), tr.t("Note")])
    for ch in data.changes:
        ci = items_by_id.get(ch.item_id)
        ch_ws.append([ch.id, ci.code if ci else "", ci.name if ci else "", change_what(tr, ch), ch.quantity,
                      tr.date(ch.happened_on), tr.date(ch.due_on), tr.t("yes") if ch.late else tr.t("no"),
                      data.people.get(ch.reporter_id, ""), tr.t(CHANGE_STATUS_NAMES.get(ch.status, ch.status)),
                      ch.note])
    us = _sheet(wb, tr.t("Frequency of use"), [tr.t("Code"), tr.t("Item"), tr.t("Subject or category"), tr.t("Times borrowed"),
                                               tr.t("Units borrowed")])
    ranked = sorted(data.items, key=lambda it: (-data.uses.get(it.id or 0, (0, 0))[0], it.code))
    for it in ranked:
        times, units = data.uses.get(it.id or 0, (0, 0))
        us.append([it.code, it.name, it.category, times, units])
    return _save(wb, path)


def archive_path(data_dir: Path, school_id: int, period: Period, now: datetime, tz: Any) -> Path:
    stamp = now.astimezone(tz).strftime("%Y%m%d-%H%M%S")
    return (data_dir / "reports" / str(school_id) / "thiet-bi" / period.year_label / period.part
            / f"bao-cao-thiet-bi_{period.part}_{period.year_label}_{stamp}.xlsx")


def archive_report(session: Session, *, school: School, period: Period, tr: Translator, data_dir: Path,
                   now: datetime, person_id: int | None) -> tuple[ReportData, EquipmentReport]:
    """Build, write and file the report (Điều 12.2: kept by period and school year)."""
    assert school.id is not None
    data = build_report(session, school, period, now=now, tz=tr.tz)
    path = archive_path(data_dir, school.id, period, now, tr.tz)
    sha = write_report_xlsx(tr, data, path)
    row = EquipmentReport(school_id=school.id, period=period.key, start_on=period.start, end_on=period.end,
                          path=str(path), sha256=sha, created_by=person_id, created_at=now)
    session.add(row)
    session.flush()
    return data, row


# -- the monthly list -----------------------------------------------------------------------------
def batch_path(data_dir: Path, batch: EquipmentBatch) -> Path:
    return data_dir / "reports" / str(batch.school_id) / "thiet-bi" / "duyet-hang-thang" / f"{batch.period}.xlsx"


def write_batch_xlsx(session: Session, tr: Translator, batch: EquipmentBatch, path: Path) -> str:
    from openpyxl import Workbook

    wb = Workbook()
    ws = _sheet(wb, tr.t("Changes"), [tr.t("No."), tr.t("Change #"), tr.t("Code"), tr.t("Item"),
                                      tr.t("Kind of change"), tr.t("Quantity"), tr.t("Room"),
                                      tr.t("Date of the change"), tr.t("Deadline to record"), tr.t("Recorded late"),
                                      tr.t("Reported by"), tr.t("Recorded by"), tr.t("Note"), tr.t("Photo"),
                                      tr.t("Status")], first=True)
    for n, ch in enumerate(batch_changes(session, batch), start=1):
        item = session.get(EquipmentItem, ch.item_id)
        reporter = session.get(Person, ch.reporter_id)
        recorder = session.get(Person, ch.recorder_id) if ch.recorder_id else None
        room = f"{ch.room_from} → {ch.room_to}" if ch.room_to else (item.room if item else "")
        ws.append([n, ch.id, item.code if item else "", item.name if item else "", kind_name(tr, ch.kind),
                   ch.quantity, room, tr.date(ch.happened_on), tr.date(ch.due_on),
                   tr.t("yes") if ch.late else tr.t("no"), reporter.full_name if reporter else "",
                   recorder.full_name if recorder else "", ch.note, tr.t("yes") if ch.photo_path else tr.t("no"),
                   tr.t(CHANGE_STATUS_NAMES.get(ch.status, ch.status))])
    return _save(wb, path)
