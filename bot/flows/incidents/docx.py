"""The report of an incident to the Sở / Phòng GD&ĐT (002 Điều 13.2.b) as a DOCX (python-docx),
in the standard Vietnamese administrative layout (Nghị định 30/2020/NĐ-CP, Phụ lục I):

* header table: governing body and school name (upper case, bold) with the number
  ``Số: 01/BC-THNT`` on the left; Quốc hiệu ``CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM`` and Tiêu ngữ
  ``Độc lập - Tự do - Hạnh phúc`` with ``<địa danh>, ngày 05 tháng 01 năm 2026`` on the right;
* the kind of document (``BÁO CÁO``) and its summary, ``Kính gửi``, the body with the incident's
  facts, the list of attachments (name, size, SHA-256), then ``Nơi nhận`` and the signature block
  (``HIỆU TRƯỞNG``, the principal's name), all in Times New Roman 13 on A4.

The document is always Vietnamese: it is addressed to a Vietnamese authority. Its sentences are
catalogue msgids rendered with a Vietnamese translator; the Quốc hiệu and Tiêu ngữ are fixed by law
and written as they are."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo

from docx import Document
from docx.document import Document as DocxDocument
from docx.enum.table import WD_TABLE_ALIGNMENT
from docx.enum.text import WD_ALIGN_PARAGRAPH
from docx.oxml.ns import qn
from docx.shared import Cm, Pt
from docx.table import _Cell
from docx.text.paragraph import Paragraph
from sqlmodel import Session

from bot.flows.footage.models import Camera
from bot.flows.incidents.common import KINDS, attachments, group_of
from bot.flows.incidents.models import Incident, IncidentStatus
from bot.flows.incidents.settings import IncidentSettings
from bot.i18n import Translator
from bot.roles import ROLE_TITLES, Role
from bot.text import fold
from storage.models import Person, School

QUOC_HIEU = "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM"
TIEU_NGU = "Độc lập - Tự do - Hạnh phúc"
FONT = "Times New Roman"
SIZE = Pt(13)


def doc_code(school: School, configured: str = "") -> str:
    """``TH Ngọc Thụy`` → ``THNT``, ``MN Hiệp Hòa`` → ``MNHH`` (the school's own code wins)."""
    if configured.strip():
        return configured.strip()
    words = fold(school.short_name or school.name).upper().split()
    if not words:
        return "TRUONG"
    first = words[0] if len(words[0]) <= 3 else words[0][0]
    return first + "".join(w[0] for w in words[1:] if w[0].isalnum())


def vn_date(d: date) -> str:
    """``ngày 05 tháng 01 năm 2026``: days under 10 and the months 1 and 2 take a leading zero."""
    day = f"{d.day:02d}"
    month = f"{d.month:02d}" if d.month <= 2 else str(d.month)
    return f"ngày {day} tháng {month} năm {d.year}"


def _size(tr: Translator, n: int) -> str:
    if n >= 1024 * 1024:
        return tr.t("{n} MB", n=tr.number(round(n / (1024 * 1024), 1)))
    return tr.t("{n} KB", n=tr.number(max(1, round(n / 1024))))


def _font(run_or_style: object, size: Pt = SIZE, bold: bool | None = None, italic: bool | None = None) -> None:
    font = run_or_style.font  # type: ignore[attr-defined]
    font.name = FONT
    font.size = size
    if bold is not None:
        font.bold = bold
    if italic is not None:
        font.italic = italic
    element = getattr(run_or_style, "element", None)
    rpr = element.get_or_add_rPr() if element is not None and hasattr(element, "get_or_add_rPr") else None
    if rpr is not None:
        rfonts = rpr.get_or_add_rFonts()
        for attr in ("w:ascii", "w:hAnsi", "w:cs", "w:eastAsia"):
            rfonts.set(qn(attr), FONT)


def _para(container: DocxDocument | _Cell, text: str = "", *, align: int | None = None, bold: bool = False,
          italic: bool = False, size: Pt = SIZE, indent: bool = False, space_after: int = 3) -> Paragraph:
    p = container.add_paragraph()
    if align is not None:
        p.alignment = align
    fmt = p.paragraph_format
    fmt.space_after = Pt(space_after)
    fmt.space_before = Pt(0)
    if indent:
        fmt.first_line_indent = Cm(1)
    if text:
        _font(p.add_run(_plain(text)), size=size, bold=bold, italic=italic)
    return p


def _cell_first(cell: _Cell, text: str, **kw: object) -> Paragraph:
    p = cell.paragraphs[0]
    p.alignment = WD_ALIGN_PARAGRAPH.CENTER
    p.paragraph_format.space_after = Pt(0)
    _font(p.add_run(_plain(text)), **kw)  # type: ignore[arg-type]
    return p


def build_report(session: Session, inc: Incident, school: School, *, path: Path, today: date,
                 tz: ZoneInfo) -> Path:
    """Write the report of ``inc`` to ``path`` and return it."""
    tr = Translator("vi", tz)
    c = IncidentSettings.of(school)
    reporter = session.get(Person, inc.reporter_id)
    owner = session.get(Person, inc.owner_id) if inc.owner_id else None
    camera = session.get(Camera, inc.camera_id) if inc.camera_id else None
    principal = next((p for p in _people(session, school, Role.PRINCIPAL)), None)
    authority = c.authority_it if group_of(inc.kind) == "it" else c.authority

    doc = Document()
    section = doc.sections[0]
    section.page_width, section.page_height = Cm(21), Cm(29.7)
    section.top_margin, section.bottom_margin = Cm(2), Cm(2)
    section.left_margin, section.right_margin = Cm(3), Cm(2)
    normal = doc.styles["Normal"]
    _font(normal)
    rpr = normal.element.get_or_add_rPr()
    rfonts = rpr.get_or_add_rFonts()
    for attr in ("w:ascii", "w:hAnsi", "w:cs", "w:eastAsia"):
        rfonts.set(qn(attr), FONT)

    # -- header: issuing body | Quốc hiệu, Tiêu ngữ -------------------------------------------------
    head = doc.add_table(rows=1, cols=2)
    head.alignment = WD_TABLE_ALIGNMENT.CENTER
    head.autofit = False
    left, right = head.rows[0].cells
    left.width, right.width = Cm(6.5), Cm(9.5)
    if c.parent_agency.strip():
        _cell_first(left, c.parent_agency.strip().upper(), size=Pt(12))
        p = left.add_paragraph()
        p.alignment = WD_ALIGN_PARAGRAPH.CENTER
        _font(p.add_run(school.name.upper()), size=Pt(12), bold=True)
    else:
        _cell_first(left, school.name.upper(), size=Pt(12), bold=True)
    p = left.add_paragraph()
    p.alignment = WD_ALIGN_PARAGRAPH.CENTER
    _font(p.add_run(f"Số: {inc.seq:02d}/BC-{doc_code(school, c.doc_code)}"), size=SIZE)
    _cell_first(right, QUOC_HIEU, size=Pt(12), bold=True)
    p = right.add_paragraph()
    p.alignment = WD_ALIGN_PARAGRAPH.CENTER
    _font(p.add_run(TIEU_NGU), size=SIZE, bold=True)
    p = right.add_paragraph()
    p.alignment = WD_ALIGN_PARAGRAPH.CENTER
    place = c.report_place.strip() or "……………"
    _font(p.add_run(f"{place}, {vn_date(today)}"), size=SIZE, italic=True)

    # -- kind of document, summary, addressee ---------------------------------------------------------
    _para(doc, "", space_after=6)
    _para(doc, tr.t("REPORT").upper(), align=WD_ALIGN_PARAGRAPH.CENTER, bold=True, size=Pt(14), space_after=0)
    _para(doc, tr.t("On incident {number}: {kind}", number=inc.number, kind=tr.t(KINDS.get(inc.kind, KINDS["other"]))),
          align=WD_ALIGN_PARAGRAPH.CENTER, bold=True, space_after=12)
    _para(doc, tr.t("To: {authority}", authority=authority), align=WD_ALIGN_PARAGRAPH.CENTER, space_after=12)

    # -- body ----------------------------------------------------------------------------------------
    _para(doc, tr.t("{school} reports the following incident, which is beyond the school's authority to "
                    "resolve:", school=school.name), indent=True)
    facts: list[str] = [
        tr.t("Incident number: {number}.", number=inc.number),
        tr.t("Type of incident: {kind}; urgency: {urgency}.", kind=tr.t(KINDS.get(inc.kind, KINDS["other"])),
             urgency=tr.t("urgent") if inc.urgent else tr.t("normal")),
        tr.t("Time it happened: {time}.", time=tr.datetime(inc.occurred_at or inc.created_at)),
    ]
    where = inc.place or tr.t("not stated")
    if camera is not None:
        where = tr.t("{place} (camera {camera})", place=where, camera=camera.name)
    if inc.latitude is not None and inc.longitude is not None:
        where = tr.t("{place}; coordinates {lat}, {lon}", place=where, lat=f"{inc.latitude:.6f}",
                     lon=f"{inc.longitude:.6f}")
    facts.append(tr.t("Place: {place}.", place=where))
    if inc.account:
        facts.append(tr.t("Account concerned: {account}.", account=inc.account))
    facts.append(tr.t("Discovered and reported by: {name}, at {time}.",
                      name=reporter.full_name if reporter else "?", time=tr.datetime(inc.created_at)))
    description = inc.description or tr.t("(reported by voice note, attached)")
    facts.append(tr.t("What happened: {text}", text=description))
    if inc.status == IncidentStatus.RESOLVED:
        handling = tr.t("resolved by {name} at {time}: {note}", name=_name(session, inc.resolved_by),
                        time=tr.datetime(inc.resolved_at) if inc.resolved_at else "", note=inc.resolution_note)
    elif owner is not None:
        handling = tr.t("acknowledged by {name} at {time}, being handled",
                        name=owner.full_name, time=tr.datetime(inc.acknowledged_at) if inc.acknowledged_at else "")
    else:
        handling = tr.t("not yet acknowledged")
    facts.append(tr.t("Handling at the school: {handling}.", handling=handling))
    if inc.report_up_note:
        facts.append(tr.t("Why it goes beyond the school's authority: {note}", note=inc.report_up_note))
    for n, fact in enumerate(facts, 1):
        _para(doc, f"{n}. {fact}", align=WD_ALIGN_PARAGRAPH.JUSTIFY, indent=True)
    _para(doc, (tr.t("{school} asks {authority} to consider the matter and to direct and support its "
                           "handling.", school=school.name, authority=authority)),
          align=WD_ALIGN_PARAGRAPH.JUSTIFY, indent=True)

    files = attachments(session, inc)
    _para(doc, tr.t("Attached documents:"), bold=True, indent=True)
    if files:
        labels = {"photo": tr.t("Photo"), "video": tr.t("Video"), "voice": tr.t("Voice note"),
                  "audio": tr.t("Audio recording"), "video_note": tr.t("Video"), "document": tr.t("Document")}
        for n, a in enumerate(files, 1):
            _para(doc, (tr.t("{n}. {kind} {name} ({size}), SHA-256: {sha}", n=n,
                                   kind=labels.get(a.kind, tr.t("Document")), name=a.file_name or f"{inc.number}-{n}",
                                   size=_size(tr, a.size), sha=a.sha256)), indent=True, size=Pt(12))
    else:
        _para(doc, tr.t("(none)"), indent=True)

    # -- Nơi nhận | signature ------------------------------------------------------------------------------
    _para(doc, "", space_after=6)
    foot = doc.add_table(rows=1, cols=2)
    foot.autofit = False
    to_cell, sign = foot.rows[0].cells
    to_cell.width, sign.width = Cm(7.5), Cm(8.5)
    p = to_cell.paragraphs[0]
    p.paragraph_format.space_after = Pt(0)
    _font(p.add_run(_plain(tr.t("Recipients:"))), size=Pt(12), bold=True, italic=True)
    for line in (tr.t("- As above;"), tr.t("- Archive: clerical office, incident file.")):
        q = to_cell.add_paragraph()
        q.paragraph_format.space_after = Pt(0)
        _font(q.add_run(_plain(line)), size=Pt(11))
    _cell_first(sign, tr.t(ROLE_TITLES[Role.PRINCIPAL]).upper(), size=SIZE, bold=True)
    q = sign.add_paragraph()
    q.alignment = WD_ALIGN_PARAGRAPH.CENTER
    _font(q.add_run(_plain(tr.t("(Signature, full name and seal)"))), size=Pt(12), italic=True)
    for _ in range(4):
        sign.add_paragraph()
    q = sign.add_paragraph()
    q.alignment = WD_ALIGN_PARAGRAPH.CENTER
    _font(q.add_run(principal.full_name if principal else ""), size=SIZE, bold=True)

    doc.core_properties.title = f"Báo cáo sự cố {inc.number}"
    doc.core_properties.author = school.name
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    doc.save(str(tmp))
    tmp.replace(path)
    return path


def _people(session: Session, school: School, role: str) -> list[Person]:
    from storage.people import people_with_role

    return people_with_role(session, school_id=school.id or 0, role=role)


def _name(session: Session, person_id: int | None) -> str:
    p = session.get(Person, person_id) if person_id else None
    return p.full_name if p else "?"


def _plain(text: str) -> str:
    """Catalogue texts are safe HTML (placeholders escaped); a document wants the plain characters."""
    import html

    return html.unescape(text)
