"""Staff list upload for the console: a dry-run preview of every row (XLSX, XLS, CSV), then applying
exactly what the preview showed. Real files (openpyxl, the committed xlwt-made .xls, CSV bytes), the
real database (SQLite and PostgreSQL) and the real CLI."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from sqlmodel import col, select

from bot.config import Settings
from bot.i18n import Translator
from storage import audit
from storage.db import Database
from storage.models import Person, School, utcnow
from storage.staff_import import MAX_FILE_BYTES, Preview, RowKind, apply, import_staff_file, preview

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
VI = Translator("vi")
EN = Translator("en")

_spec = importlib.util.spec_from_file_location("make_staff_xls", FIXTURES / "make_staff_xls.py")
assert _spec is not None and _spec.loader is not None
_gen = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_gen)
ROWS: list[list[str]] = _gen.ROWS
XLS = (FIXTURES / "staff_preview.xls").read_bytes()
HEADER = ["Họ và tên", "Vai trò", "Số điện thoại", "Tổ", "Email"]


def xlsx_bytes(rows: list[list[str]]) -> bytes:
    wb = openpyxl.Workbook()
    ws = wb.active
    for r, row in enumerate(rows, start=1):
        for c, value in enumerate(row, start=1):
            if value:
                ws.cell(row=r, column=c, value=value)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def csv_bytes(rows: list[list[str]], *, sep: str = ",", encoding: str = "utf-8-sig") -> bytes:
    buf = io.StringIO(newline="")
    csv.writer(buf, delimiter=sep, lineterminator="\r\n").writerows(rows)
    return buf.getvalue().encode(encoding)


def people(db: Database) -> list[Person]:
    return db.run_sync(lambda s: list(s.exec(select(Person).order_by(col(Person.id)))))


def snapshot(db: Database) -> list[tuple[Any, ...]]:
    return [(p.id, p.full_name, p.phone, tuple(p.roles), p.unit, p.email, p.status, p.status_changed_at,
             p.updated_at) for p in people(db)]


def seed(db: Database) -> int:
    """The school as it stands before the upload: Vân (teacher), Đức, Hoa (in service), Khoa."""
    data = csv_bytes([HEADER, ["Nguyễn Thị Vân", "Giáo viên", "0912345678", "Tổ 1", "van@truong.edu.vn"],
                      ["Trần Văn Đức", "Hiệu trưởng", "0987654321", "", ""],
                      ["Lê Thị Hoa", "Giáo viên", "0903111222", "Tổ 2", ""],
                      ["Bùi Minh Khoa", "Giáo viên", "0977000111", "Tổ 2", ""]])
    report = apply(db, data, "seed.csv", school_name="Trường Tiểu học Ngọc Thụy", channel="cli", after=())
    assert report.ok, report.render(VI)
    school = db.run_sync(lambda s: s.exec(select(School)).one())
    assert school.id is not None
    return school.id


def shape(pv: Preview) -> list[tuple[Any, ...]]:
    return [(r.row, r.kind, r.full_name, r.phone, r.roles, r.unit, r.email, r.status, r.changes, r.old_status,
             r.new_status, tuple((p.code, p.row, p.column, p.values) for p in r.problems)) for r in pv.rows]


EXPECTED_KINDS = {4: RowKind.UPDATED, 5: RowKind.UNCHANGED, 6: RowKind.STATUS, 7: RowKind.NEW,
                  8: RowKind.ERROR, 9: RowKind.ERROR, 10: RowKind.ERROR}


@pytest.mark.parametrize("fmt", ["xlsx", "xls", "csv", "csv-utf16-tab"])
def test_the_three_formats_give_the_same_preview_and_write_nothing(db: Database, fmt: str) -> None:
    school_id = seed(db)
    before = snapshot(db)
    events = len(db.run_sync(lambda s: list(audit.events(s))))
    data = {"xlsx": lambda: xlsx_bytes(ROWS), "xls": lambda: XLS, "csv": lambda: csv_bytes(ROWS),
            "csv-utf16-tab": lambda: csv_bytes(ROWS, sep="\t", encoding="utf-16")}[fmt]()
    name = "danh_sach." + fmt.split("-")[0]
    pv = preview(db, data, name, school_id=school_id, tr=VI)
    reference = preview(db, csv_bytes(ROWS), "ref.csv", school_id=school_id, tr=VI)
    assert shape(pv) == shape(reference)
    assert pv.digest == reference.digest
    assert {r.row: r.kind for r in pv.rows} == EXPECTED_KINDS
    rows = {r.row: r for r in pv.rows}
    assert rows[4].changes == ("roles",) and rows[4].roles == ("teacher", "dept_head")
    assert rows[4].phone == "+8491****678" and rows[4].person_id is not None
    assert (rows[6].old_status, rows[6].new_status) == ("active", "transferred")
    assert rows[7].full_name == "<b>Phạm</b> Văn Nam <script>" and rows[7].person_id is None
    assert (pv.count(RowKind.NEW), pv.count(RowKind.UPDATED), pv.count(RowKind.STATUS),
            pv.count(RowKind.UNCHANGED), pv.count(RowKind.ERROR)) == (1, 1, 1, 1, 3)
    assert [p.name for p in pv.report.missing] == ["Bùi Minh Khoa"]
    assert not pv.ok and not pv.file_problems
    # A dry run: nothing written, no audit event.
    assert snapshot(db) == before
    assert len(db.run_sync(lambda s: list(audit.events(s)))) == events


def test_every_error_is_listed_with_row_column_and_a_vietnamese_message(db: Database) -> None:
    school_id = seed(db)
    pv = preview(db, XLS, "staff_preview.xls", school_id=school_id, tr=VI)
    listed = [(p.row, p.column, p.code) for p in pv.row_problems]
    assert listed == [(8, "roles", "role_unknown"), (9, "phone", "phone_dup"), (10, "phone", "phone_bad"),
                      (10, "email", "email_bad")]
    assert [(p.row, p.column) for r in pv.rows for p in r.problems] == [(r, c) for r, c, _ in listed]
    dup = pv.row_problems[1]
    assert dict(dup.values) == {"other": "4"}
    assert dup.render(VI) == "Dòng 9: số điện thoại trùng với dòng 4."
    assert dup.column_title(VI) == "Số điện thoại"
    assert pv.row_problems[0].render(VI) == "Dòng 8: không nhận ra vai trò “Phù thủy”."
    assert pv.row_problems[3].column_title(VI) == "Email"
    for p in pv.row_problems:
        assert f"Dòng {p.row}" in p.render(VI) and "Row" not in p.render(VI)
        assert f"Row {p.row}" in p.render(EN)
    bad = {r.row: r for r in pv.rows}[10]
    assert (bad.full_name, bad.phone, bad.email, bad.roles) == ("Hồ Thị Lan", "12345", "lan@", ("Văn thư",))
    # The duplicate is a valid number: masked, even on an error row.
    assert {r.row: r for r in pv.rows}[9].phone == "+8491****678"
    text = pv.render(VI)
    for p in pv.row_problems:
        assert p.render(VI) in text
    assert VI.t("Rows without problems: {new} new, {updated} updated, {status} status changes, {unchanged} "
                "unchanged.", new=1, updated=1, status=1, unchanged=1) in text


def test_apply_refuses_errors_unless_told_to_skip_them_then_matches_the_preview(db: Database) -> None:
    school_id = seed(db)
    principal = db.run_sync(lambda s: s.exec(select(Person).where(Person.phone == "+84987654321")).one())
    before = snapshot(db)
    pv = preview(db, XLS, "staff_preview.xls", school_id=school_id, tr=VI)
    refused = apply(db, pv, actor_id=principal.id, after=())
    assert not refused.ok and [p.code for p in refused.problems] == [p.code for p in pv.row_problems]
    assert not refused.created and not refused.updated
    assert snapshot(db) == before
    done = apply(db, pv, skip_bad_rows=True, actor_id=principal.id, after=())
    assert done.ok, done.render(VI)
    assert not done.dry_run
    assert [p.name for p in done.created] == [p.name for p in pv.report.created]
    assert [(p.name, p.changes, p.new_status) for p in done.updated] == [
        (p.name, p.changes, p.new_status) for p in pv.report.updated]
    assert done.unchanged == pv.report.unchanged == 1
    after = {p.phone: p for p in people(db)}
    assert len(after) == 5  # 4 + the one new row; the three bad rows are not applied
    for r in pv.rows:
        if r.kind == RowKind.ERROR:
            continue
        person = next(p for p in after.values() if p.full_name == r.full_name)
        assert list(person.roles) == list(r.roles) and person.unit == r.unit
        assert person.status == (r.new_status or r.status or "active")
        if r.person_id is not None:
            assert person.id == r.person_id
    assert "+84988777666" not in after and "Vũ Văn An" not in {p.full_name for p in after.values()}
    nam = after["+84904445555"]
    assert nam.full_name == "<b>Phạm</b> Văn Nam <script>"  # stored as text, exactly
    assert after["+84903111222"].status == "transferred" and after["+84903111222"].status_changed_at is not None
    assert after["+84912345678"].roles == ["teacher", "dept_head"]
    assert after["+84977000111"].status == "active"  # missing from the file: listed, never changed
    events = db.run_sync(lambda s: list(audit.events(s, action="staff.imported")))
    last = events[-1]
    assert (last.channel, last.actor_id, last.school_id) == ("web", principal.id, school_id)
    assert last.details["skipped_rows"] == 3 and last.details["created"] == 1 and last.details["updated"] == 2
    assert not re.search(r"\d{6,}", json.dumps(last.details))
    # The same preview applied again is stale now (the school changed under it): refused.
    again = apply(db, pv, skip_bad_rows=True, after=())
    assert [p.code for p in again.problems] == ["stale"]
    assert "kiểm tra lại" in again.render(VI)


def test_apply_refuses_a_preview_the_school_has_moved_past(db: Database) -> None:
    school_id = seed(db)
    clean_rows = [HEADER, ["Nguyễn Thị Vân", "Giáo viên", "0912345678", "Tổ 1", "van@truong.edu.vn"],
                  ["Đinh Thị Thu", "Kế toán", "0966000222", "Văn phòng", ""]]
    pv = preview(db, xlsx_bytes(clean_rows), "a.xlsx", school_id=school_id)
    assert pv.ok and [r.kind for r in pv.rows] == [RowKind.UNCHANGED, RowKind.NEW]

    def edit(s: Any) -> None:
        van = s.exec(select(Person).where(Person.phone == "+84912345678")).one()
        van.unit, van.updated_at = "Tổ 3", utcnow()
        s.add(van)

    db.run_sync(edit)
    before = snapshot(db)
    report = apply(db, pv, after=())
    assert [p.code for p in report.problems] == ["stale"]
    # A page that kept only the digest and posts the file again: refused the same way.
    report = apply(db, xlsx_bytes(clean_rows), "a.xlsx", school_id=school_id, expected=pv.digest, after=())
    assert [p.code for p in report.problems] == ["stale"]
    assert snapshot(db) == before
    # Previewed again, it applies, and exactly that.
    pv2 = preview(db, xlsx_bytes(clean_rows), "a.xlsx", school_id=school_id)
    assert [r.kind for r in pv2.rows] == [RowKind.UPDATED, RowKind.NEW] and pv2.rows[0].changes == ("unit",)
    assert pv2.digest != pv.digest
    assert apply(db, xlsx_bytes(clean_rows), "a.xlsx", school_id=school_id, expected=pv2.digest, after=()).ok
    assert {p.full_name: p.unit for p in people(db)}["Nguyễn Thị Vân"] == "Tổ 1"


def test_size_limit_is_checked_before_parsing(db: Database, tmp_path: Path) -> None:
    school_id = seed(db)
    row = "Nguyễn Thị Vân,Giáo viên,0912345678,Tổ 1,\r\n".encode()
    big = csv_bytes([HEADER]) + row * (50 * 1024 * 1024 // len(row))  # a valid CSV of 50 MB
    assert len(big) > 49 * 1024 * 1024
    started = time.perf_counter()
    pv = preview(db, big, "danh_sach.csv", school_id=school_id, tr=VI)
    elapsed = time.perf_counter() - started
    assert [p.code for p in pv.problems] == ["too_big"] and pv.rows == ()
    assert elapsed < 1.0, elapsed  # parsing 50 MB of rows would take seconds
    assert pv.problems[0].render(VI) == VI.t(
        "The file is too large (more than {limit} MB); is it really the staff list?", limit=MAX_FILE_BYTES >> 20)
    just_over = csv_bytes([HEADER]) + b" " * MAX_FILE_BYTES
    assert [p.code for p in preview(db, just_over, "x.csv", school_id=school_id).problems] == ["too_big"]
    report = apply(db, big, "danh_sach.csv", school_id=school_id, after=())
    assert [p.code for p in report.problems] == ["too_big"]
    assert len(people(db)) == 4


def _ole_junk() -> bytes:
    return b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(range(256)) * 8


@pytest.mark.parametrize(("name", "data", "code"), [
    ("empty.xlsx", b"", "empty"),
    ("blank.csv", b"\r\n,,\r\n", "empty"),
    ("broken.xls", _ole_junk(), "bad_xls"),
    ("text.xls", "Họ và tên,Vai trò,SĐT\nA,GV,0912345678\n".encode(), "bad_xls"),
    ("truncated.xls", XLS[: len(XLS) // 2], "bad_xls"),
    ("broken.xlsx", b"PK\x03\x04 not really a zip", "bad_xlsx"),
    ("truncated.xlsx", xlsx_bytes(ROWS)[:700], "bad_xlsx"),
    ("program.csv", b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff", "not_text"),
    ("photo.jpg", b"\xff\xd8\xff\xe0\x00\x10JFIF", "bad_type"),
    ("list.ods", b"PK\x03\x04", "bad_xlsx"),
    ("noheader.csv", "Nguyễn Thị Vân,0912345678\n".encode(), "no_header"),
    ("onlyheader.xlsx", xlsx_bytes(ROWS[:3]), "no_rows"),
])
def test_unusable_files_are_refused_with_a_clear_message(db: Database, name: str, data: bytes, code: str) -> None:
    school_id = seed(db)
    before = snapshot(db)
    pv = preview(db, data, name, school_id=school_id, tr=VI)
    assert [p.code for p in pv.problems] == [code]
    assert pv.file_problems == pv.problems and pv.rows == ()
    message = pv.problems[0].render(VI)
    assert message.strip() and "Traceback" not in message and "{" not in message
    report = apply(db, pv, skip_bad_rows=True, after=())
    assert [p.code for p in report.problems] == [code]
    assert snapshot(db) == before


def test_an_xlsx_named_xls_is_read_and_the_xls_message_names_the_formats(db: Database) -> None:
    school_id = seed(db)
    pv = preview(db, xlsx_bytes(ROWS), "saved_as.xls", school_id=school_id)
    assert {r.row: r.kind for r in pv.rows} == EXPECTED_KINDS
    bad_type = preview(db, b"%PDF-1.4", "list.pdf", school_id=school_id).problems[0]
    assert ".xls" in bad_type.render(VI) and ".xlsx" in bad_type.render(VI)


def test_control_and_bidi_characters_are_removed_and_nul_bytes_refused(db: Database) -> None:
    school_id = seed(db)
    rows = [HEADER, ["Nguyễn\u202e Thị\x07 Thu\u200b", "Giáo\x1b viên", "0966\x00000222", "Tổ\u2066 1", ""]]
    pv = preview(db, csv_bytes(rows), "s.csv", school_id=school_id)
    assert [p.code for p in pv.problems] == ["not_text"]  # a NUL byte: not a text file
    rows[1][2] = "0966000222"
    pv = preview(db, csv_bytes(rows), "s.csv", school_id=school_id)
    assert pv.ok, pv.render(VI)
    (row,) = pv.rows
    assert (row.kind, row.full_name, row.roles, row.unit) == (RowKind.NEW, "Nguyễn Thị Thu", ("teacher",), "Tổ 1")
    assert apply(db, pv, after=()).ok
    thu = {p.phone: p for p in people(db)}["+84966000222"]
    assert thu.full_name == "Nguyễn Thị Thu" and thu.unit == "Tổ 1"


def test_the_cli_keeps_its_behaviour_on_top_of_preview_and_apply(db: Database, tmp_path: Path) -> None:
    f = tmp_path / "ds.xls"
    f.write_bytes(XLS)
    report = import_staff_file(db, str(f), school_name="Trường A", dry_run=False, tr=VI, after=())
    assert not report.ok and len(report.problems) == 4 and not report.created
    assert people(db) == [] and db.run_sync(lambda s: list(s.exec(select(School)))) == []


# -- the command line ---------------------------------------------------------------------------
def _cli(settings: Settings, tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TELEGRAM_", "ZALO_", "WEB_", "DATABASE_URL", "DATA_DIR"))}
    env.update(DATA_DIR=str(tmp_path / "data"), DATABASE_URL=settings.database_url, LOG_LEVEL="WARNING",
               PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *argv], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)


def test_cli_dry_run_prints_the_preview_of_an_xls_file(settings: Settings, db: Database, tmp_path: Path) -> None:
    seed(db)
    before = snapshot(db)
    f = tmp_path / "danh_sach.xls"
    f.write_bytes(XLS)
    res = _cli(settings, tmp_path, "import-staff", str(f), "--dry-run")
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr
    assert VI.t("Trial run (--dry-run): nothing was saved.") in res.stdout
    for line in ("Dòng 8: không nhận ra vai trò “Phù thủy”.", "Dòng 9: số điện thoại trùng với dòng 4."):
        assert line in res.stdout
    assert "Dòng 10" in res.stdout and "12345" in res.stdout and "lan@" in res.stdout
    assert "0912345678" not in res.stdout
    assert snapshot(db) == before
    fixed = tmp_path / "sua.xlsx"
    fixed.write_bytes(xlsx_bytes(ROWS[:7]))
    ok = _cli(settings, tmp_path, "import-staff", str(fixed), "--dry-run")
    assert ok.returncode == 0, ok.stderr
    assert VI.t("Trial run (--dry-run): nothing was saved.") in ok.stdout
    assert "<b>Phạm</b> Văn Nam <script>" in ok.stdout and "Bùi Minh Khoa" in ok.stdout
    assert snapshot(db) == before
    done = _cli(settings, tmp_path, "import-staff", str(fixed))
    assert done.returncode == 0, done.stderr
    assert len(people(db)) == 5


def test_the_same_preview_applied_twice_at_once_is_applied_once(db: Database) -> None:
    school_id = seed(db)
    rows = [HEADER] + [[f"Người Số {chr(65 + i)}", "Giáo viên", f"09660002{i:02d}", "", ""] for i in range(20)]
    pv = preview(db, csv_bytes(rows), "s.csv", school_id=school_id)
    assert pv.ok and pv.count(RowKind.NEW) == 20
    results: list[Any] = []
    barrier = threading.Barrier(2)

    def run() -> None:
        barrier.wait()
        try:
            results.append(apply(db, pv, after=()))
        except Exception as exc:  # noqa: BLE001 - the test reports what happened
            results.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    codes = sorted(tuple(p.code for p in r.problems) if not isinstance(r, Exception) else (repr(r),)
                   for r in results)
    assert codes == [(), ("stale",)]
    assert len(people(db)) == 24
