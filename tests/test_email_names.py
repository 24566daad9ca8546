"""Official e-mail names (seed 001 Điều 5): the rule, clashes with leadership priority, đ, NFD input,
extra spaces, one-word names — expected addresses written by hand — through the pure function, the
database proposals, the staff import for newcomers and the real ``main.py email-names`` command."""

from __future__ import annotations

import os
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
from sqlmodel import col, select

from bot.config import Settings
from bot.demo import demo_email
from bot.flows.accounts.email_names import NameEntry, assign, local_part, proposals
from bot.i18n import Translator
from storage import audit
from storage.db import Database
from storage.models import Person, School
from storage.staff_import import import_staff_file

ROOT = Path(__file__).resolve().parent.parent
TR = Translator("vi")
SUFFIX = "@thtt.edu.vn"


def nfd(s: str) -> str:
    return unicodedata.normalize("NFD", s)


def test_the_examples_of_the_regulation() -> None:
    assert local_part("Nguyễn Thị Vân") == "vannt"
    assert local_part("Trần Văn Đức") == "ductv"
    assert local_part("Nguyễn Thị Thanh Vân") == "vanntt"


def test_spaces_nfd_case_dd_and_one_word() -> None:
    assert local_part("  Nguyễn   Thị\tVân  ") == "vannt"
    assert local_part(nfd("Nguyễn Thị Vân")) == "vannt"
    assert nfd("Đỗ Đức Độ") != "Đỗ Đức Độ" and local_part(nfd("Đỗ Đức Độ")) == "dodd"
    assert local_part("ĐẶNG ĐÌNH ĐẠT") == "datdd"
    assert local_part("Mai") == "mai"
    assert local_part("Hồ Thị Ngọc-Ánh") == "ngocanhht"
    assert local_part("  ") is None and local_part("123") is None


def test_a_staff_list_with_clashes_and_leadership_priority() -> None:
    # (key, name, rank): rank 0 principal, 1 vice principal, 2 head of department, 9 everyone else.
    staff = [
        NameEntry(1, "Nguyễn Thị Vân", 9),             # a teacher, recorded first
        NameEntry(2, "Trần Văn Đức", 9),
        NameEntry(3, "  Nguyễn   Thị  Vân ", 0),        # the principal: keeps the plain name
        NameEntry(4, "Nguyễn Thị Thanh Vân", 9),
        NameEntry(5, nfd("Ngô Thị Vân"), 9),            # NFD input, same initials: vannt too
        NameEntry(6, "Đặng Đình Đạt", 9),
        NameEntry(7, "Mai", 9),                          # a one-word name
        NameEntry(8, "Lò Văn Đức", 9),
        NameEntry(9, "Lê Văn Đức", 1),                   # vice principal: keeps duclv
        NameEntry(10, "Lưu Văn Đức", 2),                 # head of department: before the teacher Lò
    ]
    got = assign(staff, suffix=SUFFIX)
    assert got == {
        1: "vannt1@thtt.edu.vn",
        2: "ductv@thtt.edu.vn",
        3: "vannt@thtt.edu.vn",
        4: "vanntt@thtt.edu.vn",
        5: "vannt2@thtt.edu.vn",
        6: "datdd@thtt.edu.vn",
        7: "mai@thtt.edu.vn",
        8: "duclv2@thtt.edu.vn",
        9: "duclv@thtt.edu.vn",
        10: "duclv1@thtt.edu.vn",
    }
    # Where the leader stands in the list does not matter: the principal keeps vannt anyway.
    again = assign([staff[2], *staff[:2], *staff[3:]], suffix=SUFFIX)
    assert again[3] == "vannt@thtt.edu.vn" and again[9] == "duclv@thtt.edu.vn"


def test_existing_addresses_are_never_taken_and_suffix_forms() -> None:
    got = assign([NameEntry("a", "Trần Văn Đức"), NameEntry("b", "Trịnh Văn Đức")], suffix="thtt.edu.vn",
                  taken=["DUCTV@thtt.edu.vn", "ductv2@thtt.edu.vn"])
    assert got == {"a": "ductv1@thtt.edu.vn", "b": "ductv3@thtt.edu.vn"}
    # The regulation's own form: <tên><họ và tên lót viết tắt>.thtt@gmail.com
    assert assign([NameEntry(1, "Nguyễn Thị Vân")], suffix=".thtt@gmail.com") == {1: "vannt.thtt@gmail.com"}
    assert demo_email("Trần Văn Đức", "@x.edu.vn") == "ductv@x.edu.vn"


def _school_with_people(db: Database) -> int:
    def go(s):
        school = School(name="Trường Tiểu học Thượng Thanh", email_suffix=SUFFIX)
        s.add(school)
        s.flush()
        for i, (name, roles, email) in enumerate([("Nguyễn Thị Vân", ["teacher"], None),
                                                  ("Trần Văn Đức", ["teacher"], "ductv@thtt.edu.vn"),
                                                  (nfd("Nguyễn Thị Vân"), ["principal"], None),
                                                  ("Lê Văn Đức", ["teacher"], None),
                                                  ("Trần Văn Đạt", ["teacher"], None)]):
            s.add(Person(school_id=school.id, full_name=name, roles=roles, email=email, phone=f"+8490300000{i}"))
        s.flush()
        left = Person(school_id=school.id, full_name="Phạm Văn Nam", roles=["teacher"], status="left")
        s.add(left)
        return school.id
    return db.run_sync(go)


def test_proposals_in_the_database(db: Database) -> None:
    school_id = _school_with_people(db)

    def go(s):
        school = s.get(School, school_id)
        return [(p.full_name, p.address) for p in proposals(s, school=school)]

    got = db.run_sync(go)
    assert [(unicodedata.normalize("NFC", n), a) for n, a in got] == [
        ("Nguyễn Thị Vân", "vannt1@thtt.edu.vn"),   # a teacher: the principal of the same name keeps vannt
        ("Nguyễn Thị Vân", "vannt@thtt.edu.vn"),    # the principal (typed in NFD)
        ("Lê Văn Đức", "duclv@thtt.edu.vn"),
        ("Trần Văn Đạt", "dattv@thtt.edu.vn"),
    ]  # Trần Văn Đức keeps his address; Phạm Văn Nam has left: none proposed


def _cli(settings: Settings, tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TELEGRAM_", "ZALO_", "WEB_", "DATABASE_URL", "DATA_DIR"))}
    env.update(DATA_DIR=str(tmp_path / "data"), DATABASE_URL=settings.database_url, LOG_LEVEL="WARNING",
               PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *argv], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)


def test_cli_proposes_then_applies(settings: Settings, db: Database, tmp_path: Path) -> None:
    school_id = _school_with_people(db)
    res = _cli(settings, tmp_path, "email-names")
    assert res.returncode == 0, res.stderr
    assert "vannt1@thtt.edu.vn" in res.stdout and "duclv@thtt.edu.vn" in res.stdout
    assert "--apply" in res.stdout
    emails = lambda: db.run_sync(lambda s: [p.email for p in s.exec(select(Person).order_by(col(Person.id)))])  # noqa: E731
    assert emails()[0] is None  # nothing saved yet
    res = _cli(settings, tmp_path, "email-names", "--school", "truong tieu hoc THUONG THANH", "--apply")
    assert res.returncode == 0, res.stderr
    assert emails() == ["vannt1@thtt.edu.vn", "ductv@thtt.edu.vn", "vannt@thtt.edu.vn", "duclv@thtt.edu.vn",
                        "dattv@thtt.edu.vn", None]
    ev = db.run_sync(lambda s: list(audit.events(s, action="email.names_assigned")))
    assert len(ev) == 1 and ev[0].details["count"] == 4 and ev[0].school_id == school_id
    res = _cli(settings, tmp_path, "email-names")
    assert res.returncode == 0 and TR.t("Everyone in service already has an e-mail address.") in res.stdout


def test_cli_without_suffix_says_how(settings: Settings, db: Database, tmp_path: Path) -> None:
    db.run_sync(lambda s: s.add(School(name="Trường A")))
    res = _cli(settings, tmp_path, "email-names")
    assert res.returncode == 1 and "--suffix" in res.stdout
    res = _cli(settings, tmp_path, "email-names", "--suffix", "truonga.edu.vn", "--apply")
    assert res.returncode == 0, res.stderr
    assert db.run_sync(lambda s: s.exec(select(School)).one().email_suffix) == "@truonga.edu.vn"


def test_staff_import_names_newcomers(db: Database, tmp_path: Path) -> None:
    school_id = _school_with_people(db)
    f = tmp_path / "staff.csv"
    f.write_text("Họ và tên,Vai trò,Số điện thoại,Tổ,Email\n"
                 "Trần Văn Đức,Phó hiệu trưởng,0912000001,,\n"           # a newcomer, vice principal
                 "Đoàn Thị Mai,Giáo viên,0912000002,,\n"
                 "Hà Thị Lan,Giáo viên,0912000003,,lan.ha@gmail.com\n", encoding="utf-8")
    report = import_staff_file(db, str(f), school_name="Trường Tiểu học Thượng Thanh", dry_run=False, tr=TR)
    assert report.ok, report.render(TR)

    def got(s):
        return {p.full_name: p.email for p in s.exec(select(Person).where(Person.school_id == school_id))}

    emails = db.run_sync(got)
    # ductv is held by the teacher already recorded (who keeps it): the new vice principal gets the
    # next number, since an existing address is never changed.
    ducs = db.run_sync(lambda s: [(p.phone, p.email) for p in s.exec(
        select(Person).where(Person.full_name == "Trần Văn Đức").order_by(col(Person.id)))])
    assert ducs == [("+84903000001", "ductv@thtt.edu.vn"), ("+84912000001", "ductv1@thtt.edu.vn")]
    assert emails["Đoàn Thị Mai"] == "maidt@thtt.edu.vn"
    assert emails["Hà Thị Lan"] == "lan.ha@gmail.com"  # given in the file: kept
    # people recorded before the import are not renamed by it
    assert emails["Lê Văn Đức"] is None


@pytest.mark.parametrize("name", ["", "   ", "!!!"])
def test_names_without_letters_get_no_address(name: str) -> None:
    assert assign([NameEntry(1, name)], suffix=SUFFIX) == {}
