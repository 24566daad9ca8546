"""The monthly article report (seed 001 Điều 14.6, 18, 21, 22): an XLSX workbook (openpyxl) and a
bar chart by unit (matplotlib, Agg — no display needed), written under
``DATA_DIR/reports/articles/<school>/``.

The workbook, in the reader's language (Vietnamese by default), holds:

* **Tổng hợp** — totals of the month: articles, people who met the quota, units that met it, late
  publications, the rate and the total payment;
* **Cá nhân** — every staff member with their count and whether they met the quota (Điều 18);
* **Đơn vị** — every organisation and unit: articles on its behalf, articles by its members;
* **Bài đã đăng** — the published articles with their links, event date, deadline, publication
  date and whether they were on time (Điều 22.1.1);
* **Thanh toán** — the payment per author (count × rate, Điều 21) with the total, ready to sign.

Dates are real dates shown ``dd/mm/yyyy``; amounts are numbers shown ``#,##0 ₫`` (Excel uses the
reader's separators: ``30.000 ₫`` on a Vietnamese system); texts are in Times New Roman, as the
regulation asks of documents (Điều 16)."""

from __future__ import annotations

import os
import secrets
import tempfile
from datetime import datetime
from pathlib import Path

from openpyxl import Workbook
from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet

from bot.flows.articles.service import DEADLINE_DAYS, MonthStats, category_title, month_key, month_label
from bot.i18n import Translator
from storage.models import School

FONT = "Times New Roman"
MONEY = '#,##0 "₫"'
DATE = "dd/mm/yyyy"
_THIN = Side(style="thin", color="999999")
_BORDER = Border(left=_THIN, right=_THIN, top=_THIN, bottom=_THIN)
_HEAD_FILL = PatternFill("solid", fgColor="DCE6F1")
_WARN_FILL = PatternFill("solid", fgColor="FCE4D6")


def report_dir(data_dir: Path, school_id: int) -> Path:
    d = Path(data_dir) / "reports" / "articles" / str(school_id)
    d.mkdir(parents=True, exist_ok=True)
    return d


def file_names(tr: Translator, stats: MonthStats) -> tuple[str, str]:
    """What the recipient sees as the files' names."""
    key = month_key(stats.year, stats.month)
    return (tr.t("article-report-{month}.xlsx", month=key), tr.t("article-chart-{month}.png", month=key))


def _atomic(path: Path, write: object) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".part-", suffix=path.suffix)
    os.close(fd)
    try:
        write(tmp)  # type: ignore[operator]
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# -- XLSX -----------------------------------------------------------------------------------------
def _title(ws: Worksheet, tr: Translator, school: School, heading: str, stats: MonthStats, width: int) -> int:
    ws["A1"] = school.name
    ws["A1"].font = Font(name=FONT, bold=True, size=12)
    ws["A2"] = heading
    ws["A2"].font = Font(name=FONT, bold=True, size=14)
    ws["A3"] = tr.t("Month {month}", month=month_label(stats.year, stats.month))
    ws["A3"].font = Font(name=FONT, italic=True, size=13)
    for r in (1, 2, 3):
        ws.merge_cells(start_row=r, start_column=1, end_row=r, end_column=width)
        ws.cell(r, 1).alignment = Alignment(horizontal="center")
    return 5


def _header(ws: Worksheet, row: int, labels: list[str], widths: list[int]) -> None:
    for i, (label, w) in enumerate(zip(labels, widths, strict=True), start=1):
        c = ws.cell(row, i, label)
        c.font = Font(name=FONT, bold=True, size=13)
        c.fill = _HEAD_FILL
        c.border = _BORDER
        c.alignment = Alignment(horizontal="center", vertical="center", wrap_text=True)
        ws.column_dimensions[get_column_letter(i)].width = w
    ws.freeze_panes = ws.cell(row + 1, 1)


def _row(ws: Worksheet, row: int, values: list[object], formats: dict[int, str] | None = None,
         bold: bool = False, fill: PatternFill | None = None) -> None:
    for i, v in enumerate(values, start=1):
        c = ws.cell(row, i, v)
        c.font = Font(name=FONT, size=13, bold=bold)
        c.border = _BORDER
        c.alignment = Alignment(vertical="top", wrap_text=isinstance(v, str) and len(v) > 30)
        if formats and i in formats:
            c.number_format = formats[i]
        if fill is not None:
            c.fill = fill


def build_xlsx(stats: MonthStats, school: School, tr: Translator, path: Path, generated_at: datetime) -> Path:
    wb = Workbook()
    met = tr.t("Met")
    not_met = tr.t("Not met")

    # Summary
    ws = wb.active
    assert ws is not None
    ws.title = tr.t("Summary")[:31]
    r = _title(ws, tr, school, tr.t("PORTAL ARTICLES REPORT"), stats, 2)
    people_met = sum(1 for p in stats.people if p.is_active and stats.per_person.get(p.id or 0))
    active = sum(1 for p in stats.people if p.is_active)
    units_met = sum(1 for u in stats.units if stats.per_unit.get(u))
    rows: list[tuple[str, object, str | None]] = [
        (tr.t("Articles published"), stats.total, None),
        (tr.t("Staff with at least one published article"), people_met, None),
        (tr.t("Staff without a published article"), active - people_met, None),
        (tr.t("Units with an article on their behalf"), units_met, None),
        (tr.t("Units without an article on their behalf"), len(stats.units) - units_met, None),
        (tr.t("Published late (more than {n} days after the event)", n=DEADLINE_DAYS), stats.late, None),
        (tr.t("Payment per article"), stats.rate, MONEY),
        (tr.t("Total payment"), stats.payment_total, MONEY),
        (tr.t("Generated at"), tr.datetime(generated_at), None),
    ]
    ws.column_dimensions["A"].width = 52
    ws.column_dimensions["B"].width = 22
    for label, value, fmt in rows:
        _row(ws, r, [label, value], {2: fmt} if fmt else None)
        r += 1

    # Per person
    ws = wb.create_sheet(tr.t("Per person")[:31])
    r = _title(ws, tr, school, tr.t("PUBLISHED ARTICLES PER PERSON"), stats, 5)
    _header(ws, r, [tr.t("No."), tr.t("Full name"), tr.t("Unit"), tr.t("Published articles"),
                    tr.t("Quota (at least 1 a month)")], [6, 32, 20, 16, 20])
    for i, p in enumerate(stats.people, start=1):
        n = stats.per_person.get(p.id or 0, 0)
        _row(ws, r + i, [i, p.full_name, p.unit, n, met if n else not_met], fill=None if n else _WARN_FILL)

    # Per unit
    ws = wb.create_sheet(tr.t("Units")[:31])
    r = _title(ws, tr, school, tr.t("PUBLISHED ARTICLES PER UNIT"), stats, 5)
    _header(ws, r, [tr.t("No."), tr.t("Organisation / unit"), tr.t("Articles on its behalf"),
                    tr.t("Articles by its members"), tr.t("Quota (1 a month)")], [6, 28, 16, 16, 18])
    for i, u in enumerate(stats.units, start=1):
        n = stats.per_unit.get(u, 0)
        _row(ws, r + i, [i, u, n, stats.per_unit_members.get(u, 0), met if n else not_met],
             fill=None if n else _WARN_FILL)

    # Published list
    ws = wb.create_sheet(tr.t("Published")[:31])
    r = _title(ws, tr, school, tr.t("LIST OF PUBLISHED ARTICLES"), stats, 10)
    _header(ws, r, [tr.t("No."), tr.t("Title"), tr.t("Category"), tr.t("Author"), tr.t("On behalf of"),
                    tr.t("Event date"), tr.t("Deadline"), tr.t("Published on"), tr.t("On time"), tr.t("Link")],
            [6, 40, 22, 24, 16, 13, 13, 13, 11, 50])
    for i, a in enumerate(stats.articles, start=1):
        author = stats.authors.get(a.author_id)
        published = tr.local(a.published_at).date() if a.published_at else None
        _row(ws, r + i, [i, a.title, category_title(tr, a.category), author.full_name if author else "",
                         a.unit or tr.t("Personal"), a.event_date, a.deadline, published,
                         tr.t("Late") if a.late else (tr.t("Yes") if a.deadline else "—"), a.published_url],
             {6: DATE, 7: DATE, 8: DATE})
        link = ws.cell(r + i, 10)
        if a.published_url:
            link.hyperlink = a.published_url
            link.font = Font(name=FONT, size=13, color="0563C1", underline="single")

    # Payment
    ws = wb.create_sheet(tr.t("Payment")[:31])
    r = _title(ws, tr, school, tr.t("PAYMENT FOR PORTAL ARTICLES"), stats, 7)
    ws.cell(4, 1, tr.t("Rate: {rate} per published article (Article 21).", rate=tr.money(stats.rate))
            if stats.rate else tr.t("No funding this month: the rate is 0."))
    ws.cell(4, 1).font = Font(name=FONT, italic=True, size=13)
    ws.merge_cells(start_row=4, start_column=1, end_row=4, end_column=7)
    _header(ws, r, [tr.t("No."), tr.t("Full name"), tr.t("Unit"), tr.t("Articles"), tr.t("Rate"),
                    tr.t("Amount"), tr.t("Signature")], [6, 32, 20, 10, 14, 16, 18])
    paid = [p for p in stats.people if stats.per_person.get(p.id or 0)]
    for i, p in enumerate(paid, start=1):
        n = stats.per_person[p.id or 0]
        _row(ws, r + i, [i, p.full_name, p.unit, n, stats.rate, n * stats.rate, ""], {5: MONEY, 6: MONEY})
    total_row = r + len(paid) + 1
    _row(ws, total_row, [tr.t("Total"), "", "", stats.total, "", stats.payment_total, ""], {6: MONEY}, bold=True)
    ws.merge_cells(start_row=total_row, start_column=1, end_row=total_row, end_column=3)
    sign = total_row + 2
    for col_, label in ((2, tr.t("Prepared by")), (4, tr.t("Accountant")), (6, tr.t("Principal"))):
        c = ws.cell(sign, col_, label)
        c.font = Font(name=FONT, bold=True, size=13)
        c.alignment = Alignment(horizontal="center")
        ws.cell(sign + 1, col_, tr.t("(signature, full name)")).font = Font(name=FONT, italic=True, size=11)
        ws.cell(sign + 1, col_).alignment = Alignment(horizontal="center")
    ws.page_setup.orientation = "portrait"
    ws.page_setup.fitToWidth = 1

    _atomic(path, wb.save)
    return path


# -- chart ----------------------------------------------------------------------------------------
def build_chart(stats: MonthStats, tr: Translator, path: Path) -> Path:
    """Horizontal bars per unit: articles on its behalf and by its members; the quota line at 1."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    units = list(reversed(stats.units)) or [tr.t("(no units)")]
    own = [stats.per_unit.get(u, 0) for u in units]
    members = [stats.per_unit_members.get(u, 0) for u in units]
    height = max(3.0, 0.45 * len(units) + 1.6)
    fig = Figure(figsize=(8.5, height), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ys = list(range(len(units)))
    ax.barh([y + 0.2 for y in ys], own, height=0.4, color="#2E75B6", label=tr.t("On its behalf"))
    ax.barh([y - 0.2 for y in ys], members, height=0.4, color="#A9D18E", label=tr.t("By its members"))
    for y, n in zip(ys, own, strict=True):
        ax.text(n + 0.05, y + 0.2, str(n), va="center", fontsize=8)
    ax.axvline(1, color="#C00000", linestyle="--", linewidth=1, label=tr.t("Quota: 1 a month"))
    ax.set_yticks(ys)
    ax.set_yticklabels(units)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlim(0, max([1, *own, *members]) + 1)
    ax.set_xlabel(tr.t("Published articles"))
    ax.set_title(tr.t("Published articles by unit — {month}", month=month_label(stats.year, stats.month)))
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    _atomic(path, lambda p: fig.savefig(p, format="png"))
    return path


def build(stats: MonthStats, school: School, tr: Translator, data_dir: Path,
          generated_at: datetime) -> tuple[Path, Path]:
    """Write both files (unique names, so concurrent requests never overwrite each other)."""
    assert school.id is not None
    d = report_dir(data_dir, school.id)
    stamp = generated_at.strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)
    base = f"articles-{month_key(stats.year, stats.month)}-{tr.locale}-{stamp}"
    xlsx = build_xlsx(stats, school, tr, d / f"{base}.xlsx", generated_at)
    png = build_chart(stats, tr, d / f"{base}.png")
    return xlsx, png


def summary_text(tr: Translator, stats: MonthStats) -> str:
    people_met = sum(1 for p in stats.people if p.is_active and stats.per_person.get(p.id or 0))
    active = sum(1 for p in stats.people if p.is_active)
    units_met = sum(1 for u in stats.units if stats.per_unit.get(u))
    lines = [
        tr.t("📊 <b>Portal articles, {month}</b>", month=month_label(stats.year, stats.month)),
        tr.t("Published: {n} articles ({late} late).", n=tr.number(stats.total), late=tr.number(stats.late)),
        tr.t("Staff who met the quota: {met}/{total}.", met=tr.number(people_met), total=tr.number(active)),
        tr.t("Units with an article on their behalf: {met}/{total}.", met=tr.number(units_met),
             total=tr.number(len(stats.units))),
        tr.t("Payment: {n} × {rate} = {total}.", n=tr.number(stats.total), rate=tr.money(stats.rate),
             total=tr.money(stats.payment_total)),
    ]
    return "\n".join(lines)


__all__ = ["build", "build_chart", "build_xlsx", "file_names", "report_dir", "summary_text"]
