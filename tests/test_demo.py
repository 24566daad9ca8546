"""The demo school: one active person per role, idempotent, and ``main.py demo --no-serve``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlmodel import select

from bot.demo import DEMO_SCHOOL_NAME, DEMO_UNITS, create_demo_school
from bot.roles import Role
from bot.text import normalize_phone
from storage.db import Database
from storage.models import Person, PersonStatus, School

ROOT = Path(__file__).resolve().parent.parent


def _people(db: Database) -> list[Person]:
    def go(s):
        school = s.exec(select(School).where(School.name == DEMO_SCHOOL_NAME)).one()
        return list(s.exec(select(Person).where(Person.school_id == school.id)))
    return db.run_sync(go)


def test_one_active_person_per_role(db: Database) -> None:
    name = db.run_sync(lambda s: create_demo_school(s))
    assert name == DEMO_SCHOOL_NAME
    people = _people(db)
    for role in Role:
        holders = [p for p in people if role.value in p.roles]
        assert len(holders) == 1, f"{role}: {[p.full_name for p in holders]}"
        assert holders[0].status == PersonStatus.ACTIVE
    phones = [p.phone for p in people]
    assert len(set(phones)) == len(phones) == len(list(Role))
    assert all(p is not None and normalize_phone(p) == p and p.startswith("+8490000") for p in phones)
    assert all(p.unit in DEMO_UNITS for p in people)
    assert all(any(c not in "abcdefghijklmnopqrstuvwxyz " for c in p.full_name.lower()) for p in people)
    school = db.run_sync(lambda s: s.exec(select(School).where(School.name == DEMO_SCHOOL_NAME)).one())
    assert school.settings["units"] == list(DEMO_UNITS)
    assert school.email_suffix.startswith("@") and school.settings["email_suffix"] == school.email_suffix
    teacher = next(p for p in people if "teacher" in p.roles)
    assert teacher.email == "vannt" + school.email_suffix


def test_rerun_is_idempotent_and_repairs(db: Database) -> None:
    db.run_sync(lambda s: create_demo_school(s))
    first = {p.id: (p.full_name, p.phone, tuple(p.roles)) for p in _people(db)}

    def disturb(s):
        guard = next(p for p in s.exec(select(Person)) if "guard" in p.roles)
        guard.status = PersonStatus.LEFT
        guard.unit = "Tổ 9"
        s.add(guard)
    db.run_sync(disturb)

    calls: list[str] = []
    name = db.run_sync(lambda s: create_demo_school(s, extra_seeders=[lambda _s, school: calls.append(school.name)]))
    assert calls == [name]
    again = _people(db)
    assert {p.id: (p.full_name, p.phone, tuple(p.roles)) for p in again} == first
    assert all(p.status == PersonStatus.ACTIVE for p in again)
    assert next(p for p in again if "guard" in p.roles).unit == "Tổ Văn phòng"
    assert db.run_sync(lambda s: len(s.exec(select(School)).all())) == 1


def test_main_demo_no_serve(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TELEGRAM_", "WEB_", "DATABASE_URL", "DATA_DIR", "ZALO_"))}
    env["DATA_DIR"] = str(tmp_path / "data")
    for _ in range(2):  # the second run must also succeed and change nothing
        proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "demo", "--no-serve"], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert DEMO_SCHOOL_NAME in proc.stdout
    db = Database(f"sqlite:///{tmp_path / 'data' / 'school.db'}")
    try:
        assert len(_people(db)) == len(list(Role))
        from sqlmodel import select

        from bot.flows.accounts.models import Account
        from bot.flows.equipment.models import EquipmentItem
        from bot.flows.footage.models import Camera

        # every workflow has something to show in the demo, and the second run duplicated nothing
        counts = db.run_sync(lambda s: (len(s.exec(select(Camera)).all()), len(s.exec(select(EquipmentItem)).all()),
                                        len(s.exec(select(Account)).all())))
        assert all(n > 0 for n in counts), counts
    finally:
        db.dispose()
