"""Staff list import (CSV / XLSX) and invite codes, through the storage functions and the real CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import unicodedata
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import openpyxl
import pytest
from sqlmodel import col, select

from bot.config import Settings
from bot.i18n import Translator
from storage import audit
from storage.db import Database
from storage.models import InviteCode, KeyValue, Person, School, utcnow
from storage.people import link_identity, redeem_invite
from storage.staff_import import ImportReport, import_staff_file, print_invites

ROOT = Path(__file__).resolve().parent.parent
TR = Translator("vi")
CODE = re.compile(r"\b([A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4})\b")


def nfd(s: str) -> str:
    return unicodedata.normalize("NFD", s)


def write_csv(path: Path, rows: list[list[str]], *, sep: str = ",", encoding: str = "utf-8-sig") -> Path:
    def cell(v: str) -> str:
        return f'"{v}"' if (sep in v or "\n" in v or '"' in v) else v
    path.write_bytes("\r\n".join(sep.join(cell(c) for c in r) for r in rows).encode(encoding) + b"\r\n")
    return path


def run_import(db: Database, path: Path, *, school: str | None = None, dry_run: bool = False) -> ImportReport:
    return import_staff_file(db, str(path), school_name=school, dry_run=dry_run, tr=TR)


def people(db: Database) -> list[Person]:
    return db.run_sync(lambda s: list(s.exec(select(Person).order_by(col(Person.id)))))


def by_phone(db: Database) -> dict[str, Person]:
    return {p.phone or "": p for p in people(db)}


VI_HEADER = ["Họ và tên", "Vai trò", "Số điện thoại", "Tổ", "Email"]


# -- importing ----------------------------------------------------------------------------------
def test_csv_with_vietnamese_headers_bom_and_title_rows(db: Database, tmp_path: Path) -> None:
    f = write_csv(tmp_path / "danh_sach.csv", [
        ["DANH SÁCH CÁN BỘ, GIÁO VIÊN NĂM HỌC 2026-2027"],
        [],
        ["STT"] + [nfd(h).upper() for h in VI_HEADER] + ["Ghi chú"],
        ["1", "  Nguyễn   Thị Vân ", "Giáo viên; Tổ trưởng chuyên môn", "0912 345 678", "Tổ 1", "VanNT@School.edu.vn", ""],
        ["2", nfd("Trần Văn Đức"), "hieu truong", "+84 987 654 321", "", "", "BGH"],
        ["3", "Lê Thị Hoa", nfd("Phó Hiệu Trưởng") + ", " + "GIAO VIEN", "84.903.111.222", "Tổ 2", "", ""],
        ["4", "Phạm Văn Nam", "guard", "(090) 444-5555", "Tổ Bảo vệ", "", ""],
        ["", "", "", "", "", "", ""],
        ["5", "Đỗ Thị Mai", "Kế toán,Văn thư", "0084 988 777 666", "Văn phòng", "", ""],
    ], sep=";")
    report = run_import(db, f, school="Trường Tiểu học Thượng Thanh")
    assert report.ok, report.render(TR)
    assert report.header_row == 3
    assert (len(report.created), len(report.updated), report.unchanged) == (5, 0, 0)
    assert report.school_created and report.school == "Trường Tiểu học Thượng Thanh"
    assert report.ignored_columns == ("Ghi chú",)
    ps = by_phone(db)
    assert set(ps) == {"+84912345678", "+84987654321", "+84903111222", "+84904445555", "+84988777666"}
    van = ps["+84912345678"]
    assert van.full_name == "Nguyễn Thị Vân" and van.roles == ["teacher", "dept_head"]
    assert van.unit == "Tổ 1" and van.email == "vannt@school.edu.vn" and van.status == "active"
    assert ps["+84987654321"].full_name == unicodedata.normalize("NFC", "Trần Văn Đức")
    assert ps["+84987654321"].roles == ["principal"]
    assert ps["+84903111222"].roles == ["vice_principal", "teacher"]
    assert ps["+84904445555"].roles == ["guard"]
    assert ps["+84988777666"].roles == ["accountant", "clerk"]
    schools = db.run_sync(lambda s: list(s.exec(select(School))))
    assert [s.name for s in schools] == ["Trường Tiểu học Thượng Thanh"]
    assert all(p.school_id == schools[0].id for p in ps.values())
    text = report.render(TR)
    assert "Nguyễn Thị Vân" in text and "0912345678" not in text and "912345678" not in text
    events = db.run_sync(lambda s: list(audit.events(s, action="staff.imported")))
    assert len(events) == 1 and events[0].details["created"] == 5 and events[0].details["rows"] == 5
    assert not re.search(r"\d{6,}", json.dumps(events[0].details))  # no phone numbers


def test_xlsx_written_with_openpyxl(db: Database, tmp_path: Path) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["Trường Tiểu học Ngọc Thụy"])
    ws.append(["Danh sách nhân sự"])
    ws.append(["TT", "Họ tên", "Chức vụ", "SĐT", "Tổ chuyên môn", "E-mail", "Trạng thái"])
    ws.append([1, "Nguyễn Thị Vân", "Giáo viên\nTổ trưởng", 912345678, "Tổ 1", None, "Đang làm việc"])
    ws.append([2, "Trần Văn Đức", "Hiệu trưởng", 84987654321.0, None, "duc@x.vn", None])
    ws.append([3, "Lê Văn Bảo", "bao ve", "0903 111 222", "Tổ Bảo vệ", None, "nghỉ hưu"])
    other = wb.create_sheet("Ghi chú")
    other.append(["Họ và tên", "Vai trò", "Số điện thoại"])
    other.append(["Không Được Nhập", "Giáo viên", "0911000111"])
    f = tmp_path / "staff.xlsx"
    wb.save(f)
    report = run_import(db, f)
    assert report.ok, report.render(TR)
    assert report.header_row == 3 and len(report.created) == 3
    assert report.school_defaulted and report.school == TR.t("My school")
    ps = by_phone(db)
    assert set(ps) == {"+84912345678", "+84987654321", "+84903111222"}
    assert ps["+84912345678"].roles == ["teacher", "dept_head"]
    assert ps["+84987654321"].email == "duc@x.vn" and ps["+84987654321"].unit == ""
    bao = ps["+84903111222"]
    assert bao.status == "retired" and bao.status_changed_at is not None
    assert ps["+84912345678"].status_changed_at is None
    # A second import into the only school uses it, without --school.
    report2 = run_import(db, f)
    assert report2.ok and not report2.school_created and report2.unchanged == 3
    assert len(people(db)) == 3


def test_split_family_and_given_name_columns(db: Database, tmp_path: Path) -> None:
    f = write_csv(tmp_path / "s.csv", [["Họ đệm", "Tên", "Vai trò", "Điện thoại"],
                                       ["Nguyễn Thị", "Vân", "GV", "0912345678"]])
    assert run_import(db, f, school="A").ok
    assert people(db)[0].full_name == "Nguyễn Thị Vân"


def test_reimport_updates_never_duplicates_and_lists_the_missing(db: Database, tmp_path: Path) -> None:
    first = write_csv(tmp_path / "v1.csv", [VI_HEADER,
                                            ["Nguyễn Thị Vân", "Giáo viên", "0912345678", "Tổ 1", ""],
                                            ["Trần Văn Đức", "Hiệu trưởng", "0987654321", "", ""],
                                            ["Lê Thị Hoa", "Giáo viên", "0903111222", "Tổ 2", ""],
                                            ["Phạm Văn Nam", "Bảo vệ", "0904445555", "", ""]])
    assert run_import(db, first, school="TH Ngọc Thụy").ok
    ids = {p.phone: p.id for p in people(db)}
    second = write_csv(tmp_path / "v2.csv", [VI_HEADER + ["Trạng thái"],
                                             ["Nguyễn Thị Vân", "Giáo viên, Tổ trưởng", "+84 912 345 678", "Tổ 1", "",
                                              ""],
                                             ["Trần Văn Đức", "Hiệu trưởng", "0987.654.321", "", "", "active"],
                                             ["Lê Thị Hoa", "Giáo viên", "0903111222", "Tổ 2", "", "chuyển công tác"],
                                             ["Đỗ Thị Mai", "Kế toán", "0988777666", "Văn phòng", "", ""]])
    report = run_import(db, second, school="th ngoc thuy")  # found again despite case and diacritics
    assert report.ok, report.render(TR)
    assert not report.school_created
    assert [p.name for p in report.created] == ["Đỗ Thị Mai"]
    assert {p.name: p.changes for p in report.updated} == {"Nguyễn Thị Vân": ("roles",), "Lê Thị Hoa": ("status",)}
    assert report.unchanged == 1
    assert [(p.name, p.phone) for p in report.missing] == [("Phạm Văn Nam", "+8490****555")]
    assert [(p.name, p.old_status, p.new_status) for p in report.status_changes] == [
        ("Lê Thị Hoa", "active", "transferred")]
    ps = by_phone(db)
    assert len(ps) == 5 and len(people(db)) == 5
    assert {p: ps[p].id for p in ids} == ids  # same rows, updated in place
    assert ps["+84912345678"].roles == ["teacher", "dept_head"]
    assert ps["+84903111222"].status == "transferred" and ps["+84903111222"].status_changed_at is not None
    nam = ps["+84904445555"]
    assert nam.status == "active" and nam.roles == ["guard"]  # missing: listed, not changed
    text = report.render(TR)
    assert "Phạm Văn Nam" in text and "+8490****555" in text
    events = db.run_sync(lambda s: list(audit.events(s, action="staff.imported")))
    assert [e.details["missing"] for e in events] == [0, 1]
    assert events[1].details["status_changed"] == 1 and events[1].details["updated"] == 2
    # A third run with the same file changes nothing more.
    again = run_import(db, second, school="TH Ngọc Thụy")
    assert again.ok and again.unchanged == 4 and not again.created and not again.updated
    assert len(people(db)) == 5


def test_a_bad_row_means_nothing_is_written_and_each_row_is_named(db: Database, tmp_path: Path) -> None:
    f = write_csv(tmp_path / "bad.csv", [
        ["Danh sách"],
        VI_HEADER + ["Trạng thái"],
        ["Nguyễn Thị Vân", "Giáo viên", "0912345678", "Tổ 1", "", ""],  # row 3: good
        ["", "Giáo viên", "0912000111", "", "", ""],  # 4: no name
        ["Trần Văn Đức", "Hiệu trưởng", "12345", "", "", ""],  # 5: bad phone
        ["Lê Thị Hoa", "Giáo viên", "+84 912 345 678", "", "", ""],  # 6: same phone as row 3
        ["Phạm Văn Nam", "Phù thủy; Bảo vệ", "0904445555", "", "", ""],  # 7: unknown role
        ["Đỗ Thị Mai", "Kế toán", "0988777666", "", "mai@", ""],  # 8: bad e-mail
        ["Vũ Văn An", "", "0977000111", "", "", "đi chơi"],  # 9: no role, bad status
        ["Hồ Thị Lan", "Văn thư", "", "", "", ""],  # 10: no phone
    ])
    report = run_import(db, f, school="Trường A")
    assert not report.ok
    assert [(p.row, p.code) for p in report.problems] == [
        (4, "name_missing"), (5, "phone_bad"), (6, "phone_dup"), (7, "role_unknown"), (8, "email_bad"),
        (9, "roles_missing"), (9, "status_bad"), (10, "phone_missing")]
    assert dict(report.problems[2].values) == {"other": "3"}
    assert dict(report.problems[3].values) == {"value": "Phù thủy"}
    text = report.render(TR)
    for p in report.problems:
        assert p.render(TR) in text
        assert str(p.row) in p.render(TR)
    assert "Phù thủy" in text and "12345" in text and "mai@" in text
    assert people(db) == []
    assert db.run_sync(lambda s: list(s.exec(select(School)))) == []
    assert db.run_sync(lambda s: list(audit.events(s))) == []
    en = report.render(Translator("en"))
    assert "Row 4" in en and "Row 10" in en


@pytest.mark.parametrize(("name", "content", "code"), [
    ("empty.csv", b"", "empty"),
    ("blank.csv", b"\xef\xbb\xbf\r\n ;;\r\n", "empty"),
    ("noheader.csv", "Nguyễn Thị Vân,0912345678\n".encode(), "no_header"),
    ("broken.xlsx", b"this is not a spreadsheet", "bad_xlsx"),
    ("renamed.xlsx", None, "bad_xlsx"),  # a zip that is not a workbook
    ("old.xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 64, "bad_xls"),
    ("list.pdf", b"%PDF-1.4 ...", "bad_type"),
    ("binary.csv", b"\x00\x01\x02\x03" * 10, "not_text"),
    ("nophone.csv", "Họ và tên,Vai trò,Tổ\nA,GV,Tổ 1\n".encode(), "missing_column"),
    ("onlyheader.csv", "Họ và tên,Vai trò,SĐT\n".encode(), "no_rows"),
])
def test_unusable_files(db: Database, tmp_path: Path, name: str, content: bytes | None, code: str) -> None:
    f = tmp_path / name
    if content is None:
        import zipfile
        with zipfile.ZipFile(f, "w") as z:
            z.writestr("word/document.xml", "<w/>")
    else:
        f.write_bytes(content)
    report = run_import(db, f, school="Trường A")
    assert not report.ok
    assert [p.code for p in report.problems] == [code]
    assert report.render(TR).strip()
    assert people(db) == []


def test_missing_file(db: Database, tmp_path: Path) -> None:
    report = run_import(db, tmp_path / "nope.csv")
    assert [p.code for p in report.problems] == ["not_found"]


def _cp1258(text: str) -> bytes:
    """Encode as Vietnamese Windows does: precomposed base letters, combining tone marks."""
    tones = {"\u0300", "\u0301", "\u0303", "\u0309", "\u0323"}
    out = bytearray()
    for ch in unicodedata.normalize("NFC", text):
        try:
            out += ch.encode("cp1258")
        except UnicodeEncodeError:
            d = unicodedata.normalize("NFD", ch)
            base = unicodedata.normalize("NFC", "".join(c for c in d if c not in tones))
            out += (base + "".join(c for c in d if c in tones)).encode("cp1258")
    return bytes(out)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "cp1258", "utf-16"])
def test_encodings_and_delimiters(db: Database, tmp_path: Path, encoding: str) -> None:
    sep = "\t" if encoding == "utf-16" else ","
    text = "\r\n".join(sep.join(r) for r in [VI_HEADER, ["Nguyễn Thị Vân", "Giáo viên", "0912345678",
                                                          "Tổ Tiếng Anh", ""],
                                              ["Đặng Quốc Hưng", "Phó hiệu trưởng", "0987654321", "", ""]])
    f = tmp_path / "s.csv"
    f.write_bytes(_cp1258(text) if encoding == "cp1258" else text.encode(encoding))
    report = run_import(db, f, school="A")
    assert report.ok, report.render(TR)
    ps = by_phone(db)
    assert ps["+84912345678"].full_name == "Nguyễn Thị Vân" and ps["+84912345678"].unit == "Tổ Tiếng Anh"
    assert ps["+84987654321"].full_name == "Đặng Quốc Hưng" and ps["+84987654321"].roles == ["vice_principal"]


def test_dry_run_writes_nothing(db: Database, tmp_path: Path) -> None:
    f = write_csv(tmp_path / "s.csv", [VI_HEADER, ["Nguyễn Thị Vân", "Giáo viên", "0912345678", "", ""]])
    report = run_import(db, f, dry_run=True)
    assert report.ok and report.dry_run and len(report.created) == 1 and report.school_defaulted
    assert people(db) == [] and db.run_sync(lambda s: list(s.exec(select(School)))) == []
    assert run_import(db, f, school="A").ok
    g = write_csv(tmp_path / "t.csv", [VI_HEADER, ["Nguyễn Thị Vân", "Hiệu trưởng", "0912345678", "", ""]])
    report = run_import(db, g, dry_run=True)
    assert report.ok and [p.changes for p in report.updated] == [("roles",)]
    assert people(db)[0].roles == ["teacher"]
    assert len(db.run_sync(lambda s: list(audit.events(s)))) == 1
    assert TR.t("Trial run (--dry-run): nothing was saved.") in report.render(TR)


def test_several_schools_need_school_option(db: Database, tmp_path: Path) -> None:
    f = write_csv(tmp_path / "s.csv", [VI_HEADER, ["Nguyễn Thị Vân", "Giáo viên", "0912345678", "", ""]])
    assert run_import(db, f, school="A").ok
    assert run_import(db, f, school="B").ok  # the same phone may be at two schools
    report = run_import(db, f)
    assert [p.code for p in report.problems] == ["several_schools"]
    assert len(people(db)) == 2


# -- the command line ---------------------------------------------------------------------------
def _cli(settings: Settings, tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TELEGRAM_", "ZALO_", "WEB_", "DATABASE_URL", "DATA_DIR"))}
    env.update(DATA_DIR=str(tmp_path / "data"), DATABASE_URL=settings.database_url, LOG_LEVEL="WARNING",
               PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *argv], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)


def test_cli_import_staff(settings: Settings, db: Database, tmp_path: Path) -> None:
    good = write_csv(tmp_path / "good.csv", [VI_HEADER, ["Nguyễn Thị Vân", "Giáo viên", "0912345678", "", ""],
                                             ["Trần Văn Đức", "Hiệu trưởng", "0987654321", "", ""]])
    dry = _cli(settings, tmp_path, "import-staff", str(good), "--school", "Trường A", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert people(db) == []
    ok = _cli(settings, tmp_path, "import-staff", str(good), "--school", "Trường A")
    assert ok.returncode == 0, ok.stderr
    assert "Nguyễn Thị Vân" in ok.stdout and "Traceback" not in ok.stderr
    assert len(people(db)) == 2
    bad = write_csv(tmp_path / "bad.csv", [VI_HEADER, ["Lê Thị Hoa", "Giáo viên", "0903111222", "", ""],
                                           ["Phạm Văn Nam", "Phù thủy", "0904445555", "", ""]])
    res = _cli(settings, tmp_path, "import-staff", str(bad), "--school", "Trường A")
    assert res.returncode == 1
    assert TR.t("Row {row}: unknown role “{value}”.", row=3, value="Phù thủy") in res.stdout
    assert "Traceback" not in res.stderr
    assert len(people(db)) == 2


def test_cli_invite_without_token_prints_codes(settings: Settings, db: Database, tmp_path: Path) -> None:
    good = write_csv(tmp_path / "good.csv", [VI_HEADER, ["Nguyễn Thị Vân", "Giáo viên", "0912345678", "", ""]])
    assert run_import(db, good, school="Trường A").ok
    res = _cli(settings, tmp_path, "invite")
    assert res.returncode == 0, res.stderr
    codes = CODE.findall(res.stdout)
    assert len(codes) == 1 and "t.me/" not in res.stdout
    assert "+8491****678" in res.stdout and "0912345678" not in res.stdout
    person, reason = db.run_sync(lambda s: redeem_invite(s, code=codes[0], now=utcnow()))
    assert person is not None and person.full_name == "Nguyễn Thị Vân" and reason == ""


# -- invites ------------------------------------------------------------------------------------
def _staff(db: Database, tmp_path: Path) -> dict[str, Person]:
    f = write_csv(tmp_path / "staff.csv", [
        VI_HEADER + ["Trạng thái"],
        ["Nguyễn Thị Vân", "Giáo viên", "0912345678", "Tổ 1", "", ""],
        ["Trần Văn Đức", "Hiệu trưởng", "0987654321", "", "", ""],
        ["Lê Thị Hoa", "Giáo viên", "0903111222", "", "", "nghỉ hưu"],
    ])
    assert run_import(db, f, school="Trường A").ok
    return by_phone(db)


def _invite(db: Database, settings: Settings, capsys: pytest.CaptureFixture[str], **kw: object) -> tuple[int, str]:
    args: dict[str, object] = {"phone": None, "school_name": None, "include_linked": False}
    args.update(kw)
    rc = print_invites(db, settings, tr=TR, **args)  # type: ignore[arg-type]
    return rc, capsys.readouterr().out


def test_invite_codes_are_single_use_and_expire(db: Database, settings: Settings, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    ps = _staff(db, tmp_path)
    rc, out = _invite(db, settings, capsys)
    assert rc == 0
    codes = CODE.findall(out)
    assert len(codes) == 2  # the retired teacher gets none
    assert "Lê Thị Hoa" not in out and "Nguyễn Thị Vân" in out and "Trần Văn Đức" in out
    assert "0912345678" not in out and "+84912345678" not in out
    now = utcnow()
    person, reason = db.run_sync(lambda s: redeem_invite(s, code=codes[0], now=now))
    assert person is not None and reason == ""
    person, reason = db.run_sync(lambda s: redeem_invite(s, code=codes[0], now=now))
    assert person is None and reason == "used"
    later = now + timedelta(hours=settings.invite_ttl_hours, minutes=1)
    person, reason = db.run_sync(lambda s: redeem_invite(s, code=codes[1].replace("-", ""), now=later))
    assert person is None and reason == "expired"
    person, reason = db.run_sync(lambda s: redeem_invite(s, code=codes[1], now=now + timedelta(hours=1)))
    assert person is not None and reason == ""
    rows = db.run_sync(lambda s: list(s.exec(select(InviteCode))))
    assert len(rows) == 2 and all(codes[0].replace("-", "") not in r.code_hash for r in rows)
    ev = db.run_sync(lambda s: list(audit.events(s, action="invite.issued")))
    assert ev and ev[0].details["count"] == 2 and "912345678" not in json.dumps(ev[0].details)
    assert {ps["+84912345678"].id, ps["+84987654321"].id} == set(ev[0].details["person_ids"])


def test_invite_skips_linked_people_unless_all(db: Database, settings: Settings, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    ps = _staff(db, tmp_path)
    db.run_sync(lambda s: link_identity(s, person=s.get(Person, ps["+84987654321"].id), channel="telegram",
                                        external_id="900", chat_id="900"))
    rc, out = _invite(db, settings, capsys)
    assert rc == 0 and len(CODE.findall(out)) == 1 and "Trần Văn Đức" not in out
    rc, out = _invite(db, settings, capsys, include_linked=True)
    assert rc == 0 and len(CODE.findall(out)) == 2
    rc, out = _invite(db, settings, capsys, phone="+84 987 654 321")
    assert rc == 0 and len(CODE.findall(out)) == 1 and "Trần Văn Đức" in out
    rc, out = _invite(db, settings, capsys, phone="0903111222")  # retired
    assert rc == 1 and not CODE.findall(out) and "Lê Thị Hoa" in out
    rc, out = _invite(db, settings, capsys, phone="0911000999")
    assert rc == 1 and not CODE.findall(out)
    rc, out = _invite(db, settings, capsys, phone="hello")
    assert rc == 1 and not CODE.findall(out)
    rc, out = _invite(db, settings, capsys, school_name="Trường Không Có")
    assert rc == 1 and "Trường A" in out


def test_invite_without_school(db: Database, settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out = _invite(db, settings, capsys)
    assert rc == 1 and "import-staff" in out


class _FakeTelegram:
    """A tiny Bot API server answering getMe, counting calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        fake = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                fake.calls.append(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                if self.path.endswith("/getMe"):
                    body = {"ok": True, "result": {"id": 4242, "is_bot": True, "first_name": "Trợ lý",
                                                   "username": "truong_a_bot"}}
                else:
                    body = {"ok": False, "error_code": 404, "description": "Not Found"}
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


@pytest.fixture
def fake_telegram() -> Iterator[_FakeTelegram]:
    fake = _FakeTelegram()
    fake.thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def test_invite_links_use_the_bot_username_from_get_me(db: Database, settings: Settings, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str],
                                                       fake_telegram: _FakeTelegram) -> None:
    ps = _staff(db, tmp_path)
    # Linked on another channel only: still needs a Telegram link.
    db.run_sync(lambda s: link_identity(s, person=s.get(Person, ps["+84987654321"].id), channel="zalo_oa",
                                        external_id="z1", chat_id="z1"))
    tg = settings.model_copy(update={"telegram_bot_token": "123456:TEST-token",
                                     "telegram_base_url": f"http://127.0.0.1:{fake_telegram.port}/bot"})
    rc, out = _invite(db, tg, capsys)
    assert rc == 0
    codes = CODE.findall(out)
    assert len(codes) == 2
    for code in codes:
        assert f"https://t.me/truong_a_bot?start={code.replace('-', '')}" in out
    assert fake_telegram.calls == ["/bot123456:TEST-token/getMe"]
    kv = db.run_sync(lambda s: s.get(KeyValue, "telegram.username"))
    assert kv is not None and kv.value == "truong_a_bot"
    rc, out = _invite(db, tg, capsys, phone="0912345678")
    assert rc == 0 and "t.me/truong_a_bot?start=" in out
    assert len(fake_telegram.calls) == 1  # cached
    person, _ = db.run_sync(lambda s: redeem_invite(s, code=CODE.findall(out)[0].replace("-", ""), now=utcnow()))
    assert person is not None and person.phone == "+84912345678"


def test_invite_when_telegram_is_unreachable(db: Database, settings: Settings, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    _staff(db, tmp_path)
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    tg = settings.model_copy(update={"telegram_bot_token": "123456:TEST-token",
                                     "telegram_base_url": f"http://127.0.0.1:{port}/bot"})
    rc, out = _invite(db, tg, capsys)
    assert rc == 0 and len(CODE.findall(out)) == 2 and "t.me/" not in out
    assert db.run_sync(lambda s: s.get(KeyValue, "telegram.username")) is None
