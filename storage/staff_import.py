"""Staff list import (CSV / XLSX / XLS) and printing of invite codes, for the command line.

``python main.py import-staff FILE [--school NAME] [--dry-run]``

* The file is a table with the columns ``Họ và tên, Vai trò, Số điện thoại, Tổ, Email`` and optionally
  ``Trạng thái`` (or the English keys ``full_name, roles, phone, unit, email, status``). Headers are
  matched forgivingly (case, diacritics, NFD, common variants such as ``Họ tên``, ``SĐT``, ``Chức vụ``,
  split ``Họ đệm`` + ``Tên`` columns); the header row may sit under a title, it is searched for.
* CSV: UTF-8 with or without BOM, UTF-16 (Excel "Unicode text"), else Windows-1258 (Vietnamese
  Windows) and finally Latin-1; the delimiter (``,`` ``;`` or tab) is the one under which a header row
  is recognised. XLSX (openpyxl) and old Excel XLS (python-calamine): the first sheet. Files over
  ``MAX_FILE_BYTES`` are refused before they are parsed; cells go through :func:`bot.text.sanitize`.
* :func:`preview` (the console's upload, and ``--dry-run``) works out, without writing anything, what
  each row would do (new / updated / status change / unchanged) and every problem with its row and
  column; :func:`apply` then applies exactly that preview (refused if the school's staff changed in
  between, or if rows have problems unless told to skip them).
* Every row is validated before anything is written; if any row is bad, nothing is written and the
  report names each row as Excel numbers it. The import is one transaction and one audit event.
* People are matched by phone number within the school (or, for people recorded without a phone,
  by their name); they are updated, never duplicated, never deleted. Active people of the school who
  are missing from the file are listed, not changed. An empty status cell keeps the person's status;
  a status change records ``status_changed_at`` (account revocation hooks in elsewhere).
* The school: ``--school NAME`` (created if missing); without it, the only school in the database;
  with no school at all, one named "Trường của tôi" (the catalogue's "My school") is created and the
  report says so; with several schools, ``--school`` is required.

``python main.py invite [--person PHONE] [--school NAME] [--all]`` prints single-use, expiring codes and
``https://t.me/<bot>?start=<code>`` links (see :func:`print_invites`).
"""

from __future__ import annotations

import asyncio
import codecs
import csv
import hashlib
import hmac
import html
import io
import json
import logging
import re
import warnings
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import astuple, dataclass, field, replace
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlmodel import Session, col, select

from bot.i18n import N_, Translator
from bot.roles import ROLE_TITLES, Role, parse_roles
from bot.text import clean, fold, mask_phone, normalize_email, normalize_phone, sanitize
from storage import audit
from storage.models import ChannelIdentity, KeyValue, Person, PersonStatus, School, utcnow
from storage.people import new_invite

if TYPE_CHECKING:  # pragma: no cover
    from bot.config import Settings
    from bot.core.flow import StaffImportHook
    from storage.db import Database

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 10 * 1024 * 1024
MAX_ROWS = 5000
HEADER_SEARCH_ROWS = 30
MAX_NAME = 200
MAX_UNIT = 120
TELEGRAM_USERNAME_KEY = "telegram.username"

# -- columns ------------------------------------------------------------------------------------
#: Column titles as shown to people (catalogue msgids).
COLUMN_TITLES: dict[str, str] = {
    "full_name": N_("Full name"),
    "roles": N_("Roles"),
    "phone": N_("Phone number"),
    "unit": N_("Unit"),
    "email": N_("Email"),
    "status": N_("Status"),
}

# Folded header text (see _norm_header) → field. "family"/"given" are split name columns.
_HEADERS: dict[str, str] = {}
for _field, _names in {
    "full_name": ("full name", "fullname", "name", "ho va ten", "ho ten", "ho va ten can bo",
                  "ho ten can bo", "ho va ten giao vien", "ho ten giao vien", "ho va ten nhan vien",
                  "ho ten nhan vien", "ten can bo", "ten giao vien", "ten nhan vien", "can bo giao vien"),
    "family": ("ho", "ho dem", "ho va dem", "ho va ten dem", "ho lot", "ho va chu dem"),
    "given": ("ten",),
    "roles": ("roles", "role", "vai tro", "chuc vu", "chuc danh", "vi tri", "vi tri viec lam",
              "vai tro chuc vu", "chuc vu vai tro", "nhiem vu"),
    "phone": ("phone", "phone number", "mobile", "tel", "telephone", "so dien thoai", "sdt", "so dt",
              "dien thoai", "dt", "di dong", "so di dong", "dien thoai di dong", "so dien thoai di dong"),
    "unit": ("unit", "department", "dept", "to", "to chuyen mon", "to bo phan", "bo phan", "don vi",
             "to chuyen mon bo phan", "to van phong"),
    "email": ("email", "e mail", "mail", "thu dien tu", "dia chi email", "dia chi thu dien tu",
              "email cong vu"),
    "status": ("status", "trang thai", "tinh trang", "tinh trang cong tac"),
}.items():
    for _name in _names:
        _HEADERS[_name] = _field
_SILENT_HEADERS = {"stt", "tt", "so tt", "so thu tu", "no", ""}

# -- statuses -------------------------------------------------------------------------------------
STATUS_TITLES: dict[str, str] = {
    PersonStatus.ACTIVE: N_("in service"),
    PersonStatus.TRANSFERRED: N_("transferred"),
    PersonStatus.RETIRED: N_("retired"),
    PersonStatus.LEFT: N_("left the school"),
}
_STATUSES: dict[str, PersonStatus] = {
    "active": PersonStatus.ACTIVE, "dang lam viec": PersonStatus.ACTIVE, "lam viec": PersonStatus.ACTIVE,
    "dang cong tac": PersonStatus.ACTIVE, "con cong tac": PersonStatus.ACTIVE,
    "transferred": PersonStatus.TRANSFERRED, "chuyen cong tac": PersonStatus.TRANSFERRED,
    "chuyen truong": PersonStatus.TRANSFERRED, "da chuyen cong tac": PersonStatus.TRANSFERRED,
    "dieu chuyen": PersonStatus.TRANSFERRED,
    "retired": PersonStatus.RETIRED, "nghi huu": PersonStatus.RETIRED, "da nghi huu": PersonStatus.RETIRED,
    "huu": PersonStatus.RETIRED, "ve huu": PersonStatus.RETIRED,
    "left": PersonStatus.LEFT, "nghi viec": PersonStatus.LEFT, "da nghi viec": PersonStatus.LEFT,
    "thoi viec": PersonStatus.LEFT, "nghi": PersonStatus.LEFT,
}


def parse_status(raw: str) -> PersonStatus | None:
    """``đang làm việc`` / ``chuyển công tác`` / ``nghỉ hưu`` / ``nghỉ việc`` or the keys → status."""
    return _STATUSES.get(fold(raw).replace("_", " ").strip(" ."))


# -- problems and the report ----------------------------------------------------------------------
_MESSAGES: dict[str, str] = {
    # whole file
    "not_found": N_("File not found: {path}"),
    "unreadable": N_("Cannot read the file {path}."),
    "too_big": N_("The file is too large (more than {limit} MB); is it really the staff list?"),
    "too_many_rows": N_("The file has more than {limit} rows; split it into several files."),
    "bad_type": N_("Unsupported file type “{ext}”: save the staff list as .xlsx, .xls or .csv."),
    "bad_xls": N_("The file is not a valid Excel .xls file (it is damaged, or another kind of file "
                  "renamed to .xls)."),
    "bad_xlsx": N_("The file is not a valid Excel .xlsx file (it is damaged, or another kind of file "
                   "renamed to .xlsx)."),
    "not_text": N_("The file is not a text (CSV) file."),
    "empty": N_("The file is empty."),
    "no_header": N_("No header row found. The table must start with a row naming the columns: {columns}."),
    "missing_column": N_("The column “{column}” is missing from the header row (row {row})."),
    "no_rows": N_("The table has no staff rows under the header (row {row})."),
    "several_schools": N_("There are several schools in the database ({names}); choose one with --school."),
    "no_school": N_("The school was not found."),
    "stale": N_("The staff list of the school changed after this preview; check the file again before "
                "applying it."),
    # one row
    "name_missing": N_("Row {row}: the full name is missing."),
    "name_bad": N_("Row {row}: “{value}” does not look like a full name."),
    "name_long": N_("Row {row}: the full name is too long (at most {max} characters)."),
    "phone_missing": N_("Row {row}: the phone number is missing."),
    "phone_bad": N_("Row {row}: “{value}” is not a valid Vietnamese phone number."),
    "phone_dup": N_("Row {row}: the same phone number as row {other}."),
    "roles_missing": N_("Row {row}: no role given."),
    "role_unknown": N_("Row {row}: unknown role “{value}”."),
    "email_bad": N_("Row {row}: “{value}” is not a valid e-mail address."),
    "status_bad": N_("Row {row}: unknown status “{value}” (use one of: {allowed})."),
    "unit_long": N_("Row {row}: the unit name is too long (at most {max} characters)."),
}


#: The column a row problem is about (keys of :data:`COLUMN_TITLES`).
_PROBLEM_COLUMNS: dict[str, str] = {
    "name_missing": "full_name", "name_bad": "full_name", "name_long": "full_name",
    "phone_missing": "phone", "phone_bad": "phone", "phone_dup": "phone",
    "roles_missing": "roles", "role_unknown": "roles", "email_bad": "email", "status_bad": "status",
    "unit_long": "unit",
}


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with the file (``row`` is ``None``) or with one row, as Excel numbers it."""

    code: str
    row: int | None = None
    values: tuple[tuple[str, str], ...] = ()

    @property
    def column(self) -> str | None:
        """The column (a key of :data:`COLUMN_TITLES`) a row problem is about, ``None`` for the file."""
        return _PROBLEM_COLUMNS.get(self.code)

    def column_title(self, tr: Translator) -> str:
        """The column's title in the translator's language ("" for a problem of the whole file)."""
        column = self.column
        return tr.t(COLUMN_TITLES[column]) if column else ""

    def render(self, tr: Translator) -> str:
        values = dict(self.values)
        if self.row is not None:
            values["row"] = str(self.row)
        if self.code == "status_bad":
            values["allowed"] = ", ".join(tr.t(STATUS_TITLES[s]) for s in PersonStatus)
        elif self.code == "no_header":
            values["columns"] = ", ".join(tr.t(COLUMN_TITLES[c]) for c in COLUMN_TITLES if c != "status")
        elif self.code == "missing_column":
            column_key = values["column"]
            values["column"] = tr.t(COLUMN_TITLES[column_key])
        return tr.t(_MESSAGES[self.code], **values)


def _problem(code: str, row: int | None = None, **values: object) -> Problem:
    return Problem(code, row, tuple((k, str(v)) for k, v in values.items()))


@dataclass(frozen=True, slots=True)
class PersonLine:
    """One person as the report shows them (phone masked)."""

    name: str
    phone: str
    unit: str = ""
    roles: tuple[str, ...] = ()
    changes: tuple[str, ...] = ()
    old_status: str = ""
    new_status: str = ""


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What an import did (or, with ``dry_run``, would do), or why it did nothing."""

    file: str
    dry_run: bool = False
    school: str = ""
    school_created: bool = False
    school_defaulted: bool = False
    problems: tuple[Problem, ...] = ()
    created: tuple[PersonLine, ...] = ()
    updated: tuple[PersonLine, ...] = ()
    unchanged: int = 0
    missing: tuple[PersonLine, ...] = ()
    ignored_columns: tuple[str, ...] = ()
    header_row: int = 0
    rows: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def status_changes(self) -> tuple[PersonLine, ...]:
        return tuple(p for p in self.updated if p.new_status)

    def render(self, tr: Translator) -> str:
        """The report as plain text for the terminal (in the translator's language)."""
        out: list[str] = [tr.t("Staff import: {file}", file=self.file)]
        if self.dry_run:
            out.append(tr.t("Trial run (--dry-run): nothing was saved."))
        if self.problems:
            n = len(self.problems)
            out.append(tr.t("Nothing was imported. Fix these problems in the file ({n}) and run the import "
                            "again:", n=tr.number(n)))
            out.extend("  • " + p.render(tr) for p in self.problems)
            if any(p.code == "role_unknown" for p in self.problems):
                titles = ", ".join(f"{tr.t(ROLE_TITLES[r])} ({r.value})" for r in Role)
                out.append(tr.t("Known roles: {roles}.", roles=titles))
            return html.unescape("\n".join(out))
        if self.school_defaulted:
            out.append(tr.t("No --school was given and the database had no school, so the school “{school}” "
                            "is created. To choose the name, run the first import with --school NAME.",
                            school=self.school))
        elif self.school_created:
            out.append(tr.t("The school “{school}” is created.", school=self.school))
        else:
            out.append(tr.t("School: {school}", school=self.school))
        if self.ignored_columns:
            out.append(tr.t("Columns not used: {columns}.", columns=", ".join(self.ignored_columns)))
        counts = {"created": tr.number(len(self.created)), "updated": tr.number(len(self.updated)),
                  "unchanged": tr.number(self.unchanged)}
        if self.dry_run:
            out.append(tr.t("If imported: {created} people would be added, {updated} updated, {unchanged} "
                            "unchanged.", **counts))
        else:
            out.append(tr.t("Import finished: {created} people added, {updated} updated, {unchanged} "
                            "unchanged.", **counts))
        if self.created:
            out.append(tr.t("Added:"))
            out.extend("  • " + tr.t("{name} ({phone}), {unit}: {roles}", name=p.name, phone=p.phone,
                                     unit=p.unit or "-", roles=_roles_text(tr, p.roles)) for p in self.created)
        if self.updated:
            out.append(tr.t("Updated:"))
            for p in self.updated:
                parts = [", ".join(tr.t(COLUMN_TITLES[c]) for c in p.changes if c != "status")]
                if p.new_status:
                    parts.append(tr.t("status {old} → {new}", old=tr.t(STATUS_TITLES[p.old_status]),
                                      new=tr.t(STATUS_TITLES[p.new_status])))
                changes = "; ".join(part for part in parts if part)
                out.append("  • " + tr.t("{name} ({phone}): {changes}", name=p.name, phone=p.phone,
                                         changes=changes))
        if self.missing:
            statuses = ", ".join(tr.t(STATUS_TITLES[st]) for st in PersonStatus if st != PersonStatus.ACTIVE)
            out.append(tr.t("{n} people in service at the school are not in this file; nothing was changed for "
                            "them. If they have left, list them with a status ({statuses}):",
                            n=tr.number(len(self.missing)), statuses=statuses))
            out.extend("  • " + tr.t("{name} ({phone}), {unit}", name=p.name, phone=p.phone, unit=p.unit or "-")
                       for p in self.missing)
        return html.unescape("\n".join(out))


def _roles_text(tr: Translator, roles: Iterable[str]) -> str:
    out = []
    for r in roles:
        try:
            out.append(tr.t(ROLE_TITLES[Role(r)]))
        except ValueError:
            out.append(r)
    return ", ".join(out)


# -- reading files --------------------------------------------------------------------------------
class FileProblem(Exception):
    """The file as a whole cannot be used (carries a :class:`Problem`)."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.code)
        self.problem = problem


Table = list[tuple[int, list[str]]]  # (row number as Excel shows it, cells)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else str(value)
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date | time):
        return value.isoformat()
    # Cells come from outside like messages do: the same clean-up (control and bidi characters, NFC).
    return sanitize(str(value).replace("\u200b", ""))


def decode_text(data: bytes) -> str:
    """Bytes of a CSV file → text: UTF-8 (BOM or not), UTF-16 with BOM, else cp1258, else Latin-1."""
    if data.startswith(codecs.BOM_UTF8):
        return data[len(codecs.BOM_UTF8):].decode("utf-8", errors="replace")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16", errors="replace")
    for encoding in ("utf-8", "cp1258"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1")


def _read_csv(data: bytes) -> list[Table]:
    text = decode_text(data)
    if "\x00" in text:
        raise FileProblem(_problem("not_text"))
    tables: list[Table] = []
    for delimiter in (",", ";", "\t"):
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        table: Table = []
        try:
            for i, row in enumerate(reader, start=1):
                if i > MAX_ROWS + HEADER_SEARCH_ROWS:
                    raise FileProblem(_problem("too_many_rows", limit=MAX_ROWS))
                table.append((i, [_cell(c) for c in row]))
        except csv.Error:
            continue
        tables.append(table)
    if not tables:
        raise FileProblem(_problem("not_text"))
    return tables


def _read_xlsx(data: bytes) -> list[Table]:
    import openpyxl

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wb = openpyxl.load_workbook(io.BytesIO(data), data_only=True)
    except Exception as exc:  # openpyxl raises many kinds on a damaged or foreign file
        log.info("not a readable xlsx: %s", type(exc).__name__)
        raise FileProblem(_problem("bad_xlsx")) from None
    try:
        if not wb.worksheets:
            raise FileProblem(_problem("empty"))
        ws = wb.worksheets[0]
        if ws.max_row > MAX_ROWS + HEADER_SEARCH_ROWS:
            raise FileProblem(_problem("too_many_rows", limit=MAX_ROWS))
        table: Table = []
        for i, row in enumerate(ws.iter_rows(min_row=1, max_row=ws.max_row, values_only=True), start=1):
            table.append((i, [_cell(v) for v in row]))
        return [table]
    finally:
        wb.close()


def _read_xls(data: bytes) -> list[Table]:
    """An Excel 97-2003 workbook (BIFF8, ``.xls``), first sheet, read with python-calamine."""
    from python_calamine import CalamineWorkbook

    try:
        wb = CalamineWorkbook.from_filelike(io.BytesIO(data))
        if not wb.sheet_names:
            raise FileProblem(_problem("empty"))
        sheet = wb.get_sheet_by_index(0)
        # Row numbers must be Excel's: the leading empty rows are kept (skip_empty_area=False).
        if sheet.total_height > MAX_ROWS + HEADER_SEARCH_ROWS:
            raise FileProblem(_problem("too_many_rows", limit=MAX_ROWS))
        values = sheet.to_python(skip_empty_area=False)
    except FileProblem:
        raise
    except Exception as exc:  # calamine raises its own errors (and ValueError) on damaged files
        log.info("not a readable xls: %s", type(exc).__name__)
        raise FileProblem(_problem("bad_xls")) from None
    return [[(i, [_cell(v) for v in row]) for i, row in enumerate(values, start=1)]]


def read_table(path: str) -> list[Table]:
    """The candidate tables of a file (one per plausible CSV delimiter); raises :class:`FileProblem`."""
    p = Path(path)
    if not p.is_file():
        raise FileProblem(_problem("not_found", path=path))
    try:
        size = p.stat().st_size
        if size > MAX_FILE_BYTES:  # before reading a byte of it
            raise FileProblem(_problem("too_big", limit=MAX_FILE_BYTES // (1024 * 1024)))
        data = p.read_bytes()
    except OSError:
        raise FileProblem(_problem("unreadable", path=path)) from None
    return read_data(data, p.name)


def read_data(data: bytes, filename: str) -> list[Table]:
    """Like :func:`read_table`, for the bytes of an upload named ``filename`` (its extension and its
    first bytes decide the format: XLSX, XLS or CSV). The size limit is checked before any parsing."""
    if len(data) > MAX_FILE_BYTES:
        raise FileProblem(_problem("too_big", limit=MAX_FILE_BYTES // (1024 * 1024)))
    if not data.strip():
        raise FileProblem(_problem("empty"))
    ext = Path(filename).suffix.lower()
    is_zip = data.startswith(b"PK\x03\x04")
    is_ole = data.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1")
    if ext == ".xls" or (is_ole and ext not in (".csv", ".txt", ".tsv")):
        if not is_ole:
            # An .xlsx saved under .xls is common and harmless; anything else is not an .xls.
            if is_zip and zipfile.is_zipfile(io.BytesIO(data)):
                return _read_xlsx(data)
            raise FileProblem(_problem("bad_xls"))
        return _read_xls(data)
    if ext in (".xlsx", ".xlsm") or (is_zip and ext not in (".csv", ".txt", ".tsv")):
        if not is_zip or not zipfile.is_zipfile(io.BytesIO(data)):
            raise FileProblem(_problem("bad_xlsx"))
        return _read_xlsx(data)
    if ext in (".csv", ".txt", ".tsv", ""):
        if is_zip:
            raise FileProblem(_problem("not_text"))
        return _read_csv(data)
    raise FileProblem(_problem("bad_type", ext=ext))


def _norm_header(raw: str) -> str:
    s = fold(raw)
    s = re.sub(r"\(.*?\)|\[.*?\]|\*", " ", s)
    s = re.sub(r"[^a-z0-9]+", " ", s)
    return s.strip()


@dataclass(frozen=True, slots=True)
class Header:
    row: int
    columns: dict[str, int]
    ignored: tuple[str, ...]


def find_header(table: Table) -> Header | None:
    """The first row (of the first few) naming a name column and at least one other known column."""
    for row_no, cells in table[:HEADER_SEARCH_ROWS]:
        columns: dict[str, int] = {}
        ignored: list[str] = []
        for idx, cell in enumerate(cells):
            key = _norm_header(cell)
            fld = _HEADERS.get(key)
            if fld is None or fld in columns:
                if key not in _SILENT_HEADERS:
                    ignored.append(clean(cell))
                continue
            columns[fld] = idx
        has_name = "full_name" in columns or "given" in columns
        if has_name and len(set(columns) - {"full_name", "family", "given"}) >= 1:
            return Header(row_no, columns, tuple(ignored))
    return None


# -- validation -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class StaffRow:
    """One valid row of the file. ``None`` for unit/email means the column is absent (keep as is);
    ``None`` for status means "keep" (new people start in service)."""

    row: int
    full_name: str
    phone: str
    roles: tuple[str, ...]
    unit: str | None
    email: str | None
    has_email: bool
    status: PersonStatus | None


def _get(cells: Sequence[str], columns: dict[str, int], fld: str, *, raw: bool = False) -> str | None:
    """The cell of column ``fld`` (``None`` when the file has no such column), cleaned unless ``raw``."""
    idx = columns.get(fld)
    if idx is None:
        return None
    value = cells[idx] if idx < len(cells) else ""
    return value if raw else clean(value)


def validate(table: Table, header: Header) -> tuple[list[StaffRow], list[Problem]]:
    """Check every row under the header; return the good rows and every problem found."""
    cols = header.columns
    rows: list[StaffRow] = []
    problems: list[Problem] = []
    seen_phones: dict[str, int] = {}
    for row_no, cells in table:
        if row_no <= header.row:
            continue
        if not any(clean(cells[i]) for i in cols.values() if i < len(cells)):
            continue  # blank row (perhaps with only a running number)
        found: list[Problem] = []
        name = _get(cells, cols, "full_name") or ""
        if not name and "given" in cols:
            name = clean(f"{_get(cells, cols, 'family') or ''} {_get(cells, cols, 'given') or ''}")
        if not name:
            found.append(_problem("name_missing", row_no))
        elif len(name) > MAX_NAME:
            found.append(_problem("name_long", row_no, max=MAX_NAME))
        elif not any(ch.isalpha() for ch in name) or any(ch.isdigit() for ch in name):
            found.append(_problem("name_bad", row_no, value=name))
        raw_phone = _get(cells, cols, "phone") or ""
        phone = normalize_phone(raw_phone)
        if not raw_phone:
            found.append(_problem("phone_missing", row_no))
        elif phone is None:
            found.append(_problem("phone_bad", row_no, value=raw_phone))
        elif phone in seen_phones:
            found.append(_problem("phone_dup", row_no, other=seen_phones[phone]))
        else:
            seen_phones[phone] = row_no
        raw_roles = _get(cells, cols, "roles", raw=True) or ""  # line breaks separate roles
        roles, unknown = parse_roles(raw_roles)
        found.extend(_problem("role_unknown", row_no, value=u) for u in unknown)
        if not roles and not unknown:
            found.append(_problem("roles_missing", row_no))
        unit = _get(cells, cols, "unit")
        if unit is not None and len(unit) > MAX_UNIT:
            found.append(_problem("unit_long", row_no, max=MAX_UNIT))
        raw_email = _get(cells, cols, "email")
        email = normalize_email(raw_email) if raw_email else None
        if raw_email and email is None:
            found.append(_problem("email_bad", row_no, value=raw_email))
        raw_status = _get(cells, cols, "status") or ""
        status = parse_status(raw_status) if raw_status else None
        if raw_status and status is None:
            found.append(_problem("status_bad", row_no, value=raw_status))
        if found:
            problems.extend(found)
            continue
        assert phone is not None
        rows.append(StaffRow(row_no, name, phone, tuple(r.value for r in roles), unit, email,
                             raw_email is not None, status))
    return rows, problems


# -- the import -----------------------------------------------------------------------------------
def _find_school(session: Session, name: str) -> School | None:
    key = fold(name)
    for school in session.exec(select(School).order_by(col(School.id))):
        if fold(school.name) == key or (school.short_name and fold(school.short_name) == key):
            return school
    return None


def _line(p: Person | StaffRow, **kw: Any) -> PersonLine:
    if isinstance(p, Person):
        return PersonLine(p.full_name, mask_phone(p.phone), p.unit, tuple(p.roles), **kw)
    return PersonLine(p.full_name, mask_phone(p.phone), p.unit or "", p.roles, **kw)


# -- preview and apply ------------------------------------------------------------------------------
class RowKind(StrEnum):
    """What applying the file does to one row's person."""

    NEW = "new"
    UPDATED = "updated"
    STATUS = "status"  # updated, and the status changes (transfer, retirement, leaving)
    UNCHANGED = "unchanged"
    ERROR = "error"  # the row has problems: never applied


@dataclass(frozen=True, slots=True)
class _Outcome:
    row: int
    kind: RowKind
    person_id: int | None
    changes: tuple[str, ...] = ()
    old_status: str = ""
    new_status: str = ""


@dataclass(frozen=True, slots=True)
class PreviewRow:
    """One row of the file as the preview shows it: the person read from it (a valid phone number is
    masked), what applying would do, and every problem of the row (``kind`` is ``ERROR`` then)."""

    row: int
    kind: RowKind
    full_name: str
    phone: str
    roles: tuple[str, ...]  # role keys for a valid row; the cell's text otherwise
    unit: str
    email: str
    status: str  # a PersonStatus value, or "" (keep the person's status)
    person_id: int | None = None
    changes: tuple[str, ...] = ()  # keys of COLUMN_TITLES
    old_status: str = ""
    new_status: str = ""
    problems: tuple[Problem, ...] = ()


@dataclass(frozen=True, slots=True)
class Preview:
    """What importing a staff file would do, computed without writing anything (:func:`preview`), and
    what :func:`apply` then applies: the valid rows, exactly as shown."""

    file: str
    report: ImportReport  # the dry-run report; its ``problems`` are the file's and every row's
    rows: tuple[PreviewRow, ...] = ()
    school_id: int | None = None
    school_name: str | None = None
    default_name: str = "My school"
    header: Header | None = field(default=None, repr=False)
    valid: tuple[StaffRow, ...] = field(default=(), repr=False)
    plan: tuple[_Outcome, ...] = field(default=(), repr=False)

    @property
    def problems(self) -> tuple[Problem, ...]:
        return self.report.problems

    @property
    def file_problems(self) -> tuple[Problem, ...]:
        """Problems of the whole file (nothing can be applied while there is one)."""
        return tuple(p for p in self.report.problems if p.row is None or p.code in ("missing_column", "no_rows"))

    @property
    def row_problems(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.report.problems if p not in self.file_problems)

    @property
    def ok(self) -> bool:
        return not self.report.problems

    def count(self, kind: RowKind) -> int:
        return sum(1 for r in self.rows if r.kind == kind)

    @property
    def digest(self) -> str:
        """A fingerprint of what this preview would apply (the school, each valid row and its outcome,
        the problems). A page can carry it in its confirm form instead of keeping the preview: the file
        posted again is applied only if its new preview has the same digest (``apply(expected=...)``)."""
        body = json.dumps([self.school_id, self.school_name, [astuple(r) for r in self.valid],
                           [astuple(o) for o in self.plan], [astuple(p) for p in self.report.problems]],
                          default=str, ensure_ascii=False)
        return hashlib.sha256(body.encode()).hexdigest()

    def render(self, tr: Translator) -> str:
        """Plain text: the report, then (when some rows have problems) what the other rows would do."""
        text = self.report.render(tr)
        if self.row_problems and not self.file_problems and self.valid:
            counts = {k.value: tr.number(self.count(k))
                      for k in (RowKind.NEW, RowKind.UPDATED, RowKind.STATUS, RowKind.UNCHANGED)}
            text += "\n" + html.unescape(tr.t(
                "Rows without problems: {new} new, {updated} updated, {status} status changes, {unchanged} "
                "unchanged.", **counts))
        return text


def _parse(data: bytes, filename: str) -> tuple[Table, Header, list[StaffRow], list[Problem]]:
    """Read and validate; raises :class:`FileProblem` when the file as a whole is unusable."""
    candidates = read_data(data, filename)
    best: tuple[Table, Header] | None = None
    for table in candidates:
        header = find_header(table)
        if header and (best is None or len(header.columns) > len(best[1].columns)):
            best = (table, header)
    if best is None:
        non_empty = any(any(ch.isalnum() for c in cells for ch in c) for t in candidates for _, cells in t)
        raise FileProblem(_problem("no_header" if non_empty else "empty"))
    table, header = best
    rows, problems = validate(table, header)
    return table, header, rows, problems


def _error_row(row_no: int, cells: Sequence[str], cols: dict[str, int], problems: tuple[Problem, ...]) -> PreviewRow:
    name = _get(cells, cols, "full_name") or ""
    if not name and "given" in cols:
        name = clean(f"{_get(cells, cols, 'family') or ''} {_get(cells, cols, 'given') or ''}")
    raw_phone = _get(cells, cols, "phone") or ""
    phone = normalize_phone(raw_phone)
    status = parse_status(_get(cells, cols, "status") or "")
    return PreviewRow(row_no, RowKind.ERROR, name, mask_phone(phone) if phone else raw_phone,
                      tuple(x for x in [_get(cells, cols, "roles") or ""] if x), _get(cells, cols, "unit") or "",
                      _get(cells, cols, "email") or "", status.value if status else "", problems=problems)


def preview(db: Database, data: bytes, filename: str, *, school_id: int | None = None,
            school_name: str | None = None, tr: Translator | None = None) -> Preview:
    """What importing ``data`` (an upload named ``filename``: XLSX, XLS or CSV) into the school would do,
    row by row, with every problem; writes nothing. The school: ``school_id`` (the console), else
    ``school_name`` / the only school / a new one, as on the command line."""
    shown = Path(filename).name or filename or "?"
    default_name = tr.t("My school") if tr is not None else "My school"

    def made(report: ImportReport, **kw: Any) -> Preview:
        return Preview(shown, report, school_id=school_id, school_name=school_name, default_name=default_name, **kw)

    try:
        table, header, rows, problems = _parse(data, filename)
    except FileProblem as fp:
        return made(ImportReport(shown, True, problems=(fp.problem,)))
    missing_cols = [c for c in ("phone", "roles") if c not in header.columns]
    if missing_cols:
        return made(ImportReport(shown, True, header_row=header.row, problems=tuple(
            _problem("missing_column", column=c, row=header.row) for c in missing_cols)), header=header)
    if not rows and not problems:
        return made(ImportReport(shown, True, header_row=header.row, problems=(_problem("no_rows", row=header.row),)),
                    header=header)
    outcomes: list[_Outcome] = []
    if rows:
        report = db.run_sync(lambda s: _apply(s, rows, header=header, file=shown, school_name=school_name,
                                              default_name=default_name, dry_run=True, after=(),
                                              school_id=school_id, outcomes=outcomes))
    else:
        report = ImportReport(shown, True, header_row=header.row)
    if problems:
        report = replace(report, problems=report.problems + tuple(problems))
    by_row = {o.row: o for o in outcomes}
    good = {r.row: r for r in rows}
    bad: dict[int, list[Problem]] = {}
    for pr in problems:
        bad.setdefault(pr.row or 0, []).append(pr)
    shown_rows: list[PreviewRow] = []
    for row_no, cells in table:
        if row_no in bad:
            shown_rows.append(_error_row(row_no, cells, header.columns, tuple(bad[row_no])))
        elif row_no in good and row_no in by_row:
            r, o = good[row_no], by_row[row_no]
            shown_rows.append(PreviewRow(row_no, o.kind, r.full_name, mask_phone(r.phone), r.roles, r.unit or "",
                                         r.email or "", r.status.value if r.status else "", o.person_id,
                                         o.changes, o.old_status, o.new_status))
    return made(report, rows=tuple(shown_rows), header=header, valid=tuple(rows), plan=tuple(outcomes))


def _hooks(after: Sequence[StaffImportHook] | None) -> tuple[StaffImportHook, ...]:
    if after is None:
        from bot.core.flow import discover_workflows

        after = [wf.on_staff_import for wf in discover_workflows() if wf.on_staff_import is not None]
    return tuple(after)


def apply(db: Database, source: Preview | bytes, filename: str = "", *, school_id: int | None = None,
          school_name: str | None = None, skip_bad_rows: bool = False, actor_id: int | None = None,
          channel: str = "web", tr: Translator | None = None, expected: str | None = None,
          after: Sequence[StaffImportHook] | None = None) -> ImportReport:
    """Apply a :class:`Preview` (or the bytes of a file, previewed first) exactly as it was shown, in one
    transaction with one audit event and the workflows' ``on_staff_import`` hooks.

    Refused (nothing written, the report's ``problems`` say why) when the file as a whole is unusable,
    when rows have problems (unless ``skip_bad_rows``: then only the valid rows are applied), and when
    the school's staff changed since the preview (``stale``: preview again). ``expected``: the
    :attr:`Preview.digest` the person saw; a different preview now is ``stale`` too."""
    if isinstance(source, bytes):
        source = preview(db, source, filename, school_id=school_id, school_name=school_name, tr=tr)
    pv = source
    if expected is not None and not hmac.compare_digest(expected, pv.digest):
        return ImportReport(pv.file, header_row=pv.header.row if pv.header else 0, problems=(_problem("stale"),))
    if pv.file_problems or pv.header is None:
        return replace(pv.report, dry_run=False, problems=pv.file_problems or pv.report.problems)
    if pv.row_problems and not skip_bad_rows:
        return replace(pv.report, dry_run=False, created=(), updated=(), unchanged=0, missing=())
    if not pv.valid:
        return ImportReport(pv.file, header_row=pv.header.row, problems=(_problem("no_rows", row=pv.header.row),))
    hooks = _hooks(after)
    header = pv.header
    skipped = len({p.row for p in pv.row_problems})

    def unit_of_work(s: Session) -> ImportReport:
        if pv.school_id is not None:  # two uploads applied at once: one after the other (PostgreSQL)
            s.exec(select(School).where(School.id == pv.school_id).with_for_update()).first()
        now_plan: list[_Outcome] = []
        kw: dict[str, Any] = {"header": header, "file": pv.file, "school_name": pv.school_name,
                              "default_name": pv.default_name, "school_id": pv.school_id}
        check = _apply(s, pv.valid, dry_run=True, after=(), outcomes=now_plan, **kw)
        if check.problems:
            return replace(check, dry_run=False)
        if tuple(now_plan) != pv.plan:
            return ImportReport(pv.file, header_row=header.row, problems=(_problem("stale"),))
        return _apply(s, pv.valid, dry_run=False, after=hooks, channel=channel, actor_id=actor_id,
                      skipped=skipped, **kw)

    return db.run_sync(unit_of_work)


def import_staff_file(db: Database, path: str, *, school_name: str | None, dry_run: bool,
                      tr: Translator, after: Sequence[StaffImportHook] | None = None) -> ImportReport:
    """Validate the whole file, then (unless ``dry_run``) apply it in one transaction: the command line's
    :func:`preview` + :func:`apply`.

    ``after``: hooks run in that transaction once the file is applied; by default every discovered
    workflow's :attr:`~bot.core.Workflow.on_staff_import`."""
    shown = Path(path).name or path
    try:
        p = Path(path)
        if not p.is_file():
            raise FileProblem(_problem("not_found", path=path))
        try:
            if p.stat().st_size > MAX_FILE_BYTES:  # before reading a byte of it
                raise FileProblem(_problem("too_big", limit=MAX_FILE_BYTES // (1024 * 1024)))
            data = p.read_bytes()
        except OSError:
            raise FileProblem(_problem("unreadable", path=path)) from None
    except FileProblem as fp:
        return ImportReport(shown, dry_run, problems=(fp.problem,))
    pv = preview(db, data, shown, school_name=school_name, tr=tr)
    if pv.problems:
        return replace(pv.report, dry_run=dry_run, created=(), updated=(), unchanged=0, missing=())
    if dry_run:
        return pv.report
    return apply(db, pv, channel="cli", after=after)


def _apply(s: Session, rows: Sequence[StaffRow], *, header: Header, file: str, school_name: str | None,
           default_name: str, dry_run: bool, after: Sequence[StaffImportHook], school_id: int | None = None,
           channel: str = "cli", actor_id: int | None = None, outcomes: list[_Outcome] | None = None,
           skipped: int = 0) -> ImportReport:
    """Apply (or with ``dry_run`` only work out) the valid ``rows``; ``outcomes`` collects, per row,
    what happens to it. ``school_id`` (the console) wins over ``school_name`` (the CLI)."""
    created_school = defaulted = False
    school: School | None
    if school_id is not None:
        school = s.get(School, school_id)
        if school is None:
            return ImportReport(file, dry_run, header_row=header.row, problems=(_problem("no_school"),))
    elif school_name and clean(school_name):
        name = clean(school_name)[:200]
        school = _find_school(s, name)
        if school is None:
            created_school = True
            school = School(name=name)
    else:
        schools = list(s.exec(select(School).order_by(col(School.id))))
        if len(schools) > 1:
            return ImportReport(file, dry_run, header_row=header.row, problems=(
                _problem("several_schools", names=", ".join(x.name for x in schools)),))
        if schools:
            school = schools[0]
        else:
            created_school = defaulted = True
            school = School(name=default_name)
    if created_school and not dry_run:
        s.add(school)
        s.flush()
    people = list(s.exec(select(Person).where(Person.school_id == school.id).order_by(col(Person.id)))) \
        if school.id is not None else []
    by_phone = {p.phone: p for p in people if p.phone}
    phoneless: dict[str, list[Person]] = {}
    for p in people:
        if not p.phone:
            phoneless.setdefault(fold(p.full_name), []).append(p)
    now = utcnow()
    created: list[PersonLine] = []
    updated: list[PersonLine] = []
    unchanged = 0
    matched: set[int] = set()
    was_active = {p.id for p in people if p.status == PersonStatus.ACTIVE}  # for the accounts hook below
    for row in rows:
        person = by_phone.get(row.phone)
        if person is None:
            same_name = phoneless.get(fold(row.full_name), [])
            if len(same_name) == 1 and same_name[0].id not in matched:
                person = same_name[0]
        if person is None:
            created.append(_line(row))
            if outcomes is not None:
                outcomes.append(_Outcome(row.row, RowKind.NEW, None))
            if not dry_run:
                assert school.id is not None
                s.add(Person(school_id=school.id, full_name=row.full_name, phone=row.phone,
                             roles=list(row.roles), unit=row.unit or "", email=row.email,
                             status=row.status or PersonStatus.ACTIVE,
                             status_changed_at=now if row.status not in (None, PersonStatus.ACTIVE) else None,
                             created_at=now, updated_at=now))
            continue
        assert person.id is not None
        matched.add(person.id)
        new_values: dict[str, Any] = {"full_name": row.full_name, "phone": row.phone, "roles": list(row.roles)}
        if row.unit is not None:
            new_values["unit"] = row.unit
        if row.has_email:
            new_values["email"] = row.email
        if row.status is not None:
            new_values["status"] = row.status.value
        changes = [k for k, v in new_values.items() if getattr(person, k) != v]
        old_status = person.status
        status_changed = "status" in changes
        if outcomes is not None:
            kind = RowKind.STATUS if status_changed else RowKind.UPDATED if changes else RowKind.UNCHANGED
            outcomes.append(_Outcome(row.row, kind, person.id, tuple(c for c in changes if c in COLUMN_TITLES),
                                     old_status if status_changed else "",
                                     new_values["status"] if status_changed else ""))
        if not changes:
            unchanged += 1
            continue
        updated.append(_line(row, changes=tuple(c for c in changes if c in COLUMN_TITLES),
                             old_status=old_status if status_changed else "",
                             new_status=new_values["status"] if status_changed else ""))
        if not dry_run:
            for k in changes:
                setattr(person, k, new_values[k])
            person.updated_at = now
            if status_changed:
                person.status_changed_at = now
            s.add(person)
    missing = tuple(_line(p) for p in people
                    if p.id not in matched and p.status == PersonStatus.ACTIVE)
    report = ImportReport(file, dry_run, school=school.name, school_created=created_school,
                          school_defaulted=defaulted, created=tuple(created), updated=tuple(updated),
                          unchanged=unchanged, missing=missing, ignored_columns=header.ignored,
                          header_row=header.row, rows=len(rows))
    if not dry_run:
        s.flush()
        audit.record(s, action="staff.imported", school_id=school.id, channel=channel, actor_id=actor_id,
                     subject=f"school:{school.id}",
                     details={"file": file, "rows": len(rows), "created": len(created), "updated": len(updated),
                              "unchanged": unchanged, "status_changed": len(report.status_changes),
                              "missing": len(missing), "school_created": created_school,
                              **({"skipped_rows": skipped} if skipped else {})})
        for hook in after:  # the workflows' (accounts: revocation checklists, newcomers' e-mail names)
            hook(s, school=school, known=people, was_active=was_active, now=now)
    return report


# -- invites --------------------------------------------------------------------------------------
def telegram_username(db: Database, settings: Settings) -> str | None:
    """The bot's username: cached in the KeyValue table, else asked once from Telegram (getMe)."""
    cached = db.run_sync(lambda s: s.get(KeyValue, TELEGRAM_USERNAME_KEY))
    if cached is not None and cached.value:
        return cached.value
    if not settings.telegram_bot_token:
        return None
    from telegram import Bot

    async def get_me() -> str | None:
        bot = Bot(settings.telegram_bot_token, base_url=settings.telegram_base_url,
                  base_file_url=settings.telegram_base_file_url)
        async with bot:
            return bot.username or None

    try:
        username = asyncio.run(get_me())
    except Exception as exc:  # network down, bad token: codes are still useful without links
        log.warning("getMe failed: %s", type(exc).__name__)
        return None
    if not username:
        return None

    def save(s: Session) -> None:
        kv = s.get(KeyValue, TELEGRAM_USERNAME_KEY) or KeyValue(key=TELEGRAM_USERNAME_KEY)
        kv.value, kv.updated_at = username, utcnow()
        s.add(kv)

    db.run_sync(save)
    return username


@dataclass(frozen=True, slots=True)
class _Invite:
    name: str
    phone: str
    unit: str
    code: str


def print_invites(db: Database, settings: Settings, *, phone: str | None, school_name: str | None,
                  include_linked: bool, tr: Translator) -> int:
    """Print a single-use, expiring code (and a Telegram link when the bot is known) for each active
    person not yet linked (``include_linked``: everyone active), or for the one person ``phone``.

    "Linked" means an active Telegram identity when Telegram is configured, else any active identity.
    Returns the process exit code."""
    username = telegram_username(db, settings)
    ttl = timedelta(hours=settings.invite_ttl_hours)
    linked_channels = ("telegram",) if settings.telegram_bot_token else None

    def unit_of_work(s: Session) -> tuple[int, list[str]]:
        lines: list[str] = []
        schools = list(s.exec(select(School).order_by(col(School.id))))
        if not schools:
            return 1, [tr.t("No school in the database yet: import the staff list first "
                            "(python main.py import-staff FILE).")]
        school: School | None = None
        if school_name:
            school = _find_school(s, school_name)
            if school is None:
                return 1, [tr.t("School “{school}” not found. Schools: {names}.", school=school_name,
                                names=", ".join(x.name for x in schools))]
        people: list[Person]
        if phone is not None:
            norm = normalize_phone(phone)
            if norm is None:
                return 1, [tr.t("“{phone}” is not a valid Vietnamese phone number.", phone=phone)]
            q = select(Person).where(Person.phone == norm)
            if school is not None:
                q = q.where(Person.school_id == school.id)
            people = list(s.exec(q.order_by(col(Person.id))))
            if not people:
                return 1, [tr.t("Nobody with the phone number {phone} is on the staff list.",
                                phone=mask_phone(norm))]
            if len(people) > 1:
                return 1, [tr.t("The phone number {phone} is listed at several schools; choose one with "
                                "--school.", phone=mask_phone(norm))]
            person = people[0]
            school = s.get(School, person.school_id)
            if person.status != PersonStatus.ACTIVE:
                return 1, [tr.t("{name} is no longer in service ({status}); no code was made.",
                                name=person.full_name, status=tr.t(STATUS_TITLES.get(person.status,
                                                                                     person.status)))]
        else:
            if school is None:
                if len(schools) > 1:
                    return 1, [tr.t("There are several schools in the database ({names}); choose one with "
                                    "--school.", names=", ".join(x.name for x in schools))]
                school = schools[0]
            people = list(s.exec(select(Person).where(Person.school_id == school.id,
                                                      Person.status == PersonStatus.ACTIVE)
                                 .order_by(col(Person.id))))
            if not include_linked:
                lq = select(ChannelIdentity.person_id).where(col(ChannelIdentity.active).is_(True))
                if linked_channels:
                    lq = lq.where(col(ChannelIdentity.channel).in_(linked_channels))
                linked = set(s.exec(lq).all())
                people = [p for p in people if p.id not in linked]
            if not people:
                return 0, [tr.t("Everyone in service at {school} is already linked. Use --all to make new "
                                "codes anyway.", school=school.name)]
        assert school is not None
        now = utcnow()
        invites = [_Invite(p.full_name, mask_phone(p.phone), p.unit, new_invite(s, person=p, ttl=ttl, now=now))
                   for p in people]
        audit.record(s, action="invite.issued", school_id=school.id, channel="cli", subject=f"school:{school.id}",
                     details={"count": len(invites), "person_ids": [p.id for p in people],
                              "ttl_hours": settings.invite_ttl_hours})
        lines.append(tr.t("Link codes for {school}: each works once, until {expires}.", school=school.name,
                          expires=tr.datetime(now + ttl)))
        for inv in invites:
            lines.append("")
            lines.append(tr.t("{name} ({phone}), {unit}", name=inv.name, phone=inv.phone, unit=inv.unit or "-"))
            lines.append("   " + tr.t("Code: {code}", code=inv.code))
            if username:
                link = f"https://t.me/{username}?start={inv.code.replace('-', '')}"
                lines.append("   " + tr.t("Link: {link}", link=link))
        lines.append("")
        if username:
            lines.append(tr.t("Each person opens their link in Telegram and taps Start, or sends their code as a "
                              "message to the school's bot on Zalo or Telegram."))
        elif settings.telegram_bot_token:
            lines.append(tr.t("Telegram could not be reached to read the bot's name, so only codes are shown. "
                              "Each person sends their code as a message to the school's bot on Zalo or "
                              "Telegram."))
        else:
            lines.append(tr.t("Telegram is not configured, so there are no links. Give each person their code: "
                              "they send it as a message to the school's bot on Zalo or Telegram to link "
                              "their account."))
        return 0, lines

    code, lines = db.run_sync(unit_of_work)
    print(html.unescape("\n".join(lines)), flush=True)
    return code


__all__ = ["ImportReport", "PersonLine", "Preview", "PreviewRow", "Problem", "RowKind", "StaffRow", "apply",
           "decode_text", "find_header", "import_staff_file", "parse_status", "preview", "print_invites", "read_data",
           "read_table", "telegram_username", "validate"]
