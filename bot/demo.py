"""The demo school: one active person of every role, ready to try in the web chat.

``python main.py demo`` calls :func:`create_demo_school`, then starts the bot with the web chat,
where each demo person can be picked and tried. Running it again updates the same school and the
same people (matched by school name and phone number); nothing is duplicated.

Later features add their own demo data (cameras and recordings, equipment, ...) by appending a
seeder to :data:`EXTRA_SEEDERS` (or passing ``extra_seeders=``): each is called with the session
and the demo school after the people exist, and must itself be idempotent."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sqlmodel import Session, select

from bot.roles import Role
from bot.text import normalize_phone
from storage.models import Person, PersonStatus, School, utcnow

DEMO_SCHOOL_NAME = "Trường Tiểu học Demo Ngọc Thụy"
DEMO_SHORT_NAME = "TH Demo Ngọc Thụy"
DEMO_EMAIL_SUFFIX = "@demo-ngocthuy.edu.vn"
DEMO_UNITS: tuple[str, ...] = ("Tổ 1", "Tổ 2", "Tổ 3", "Tổ 4", "Tổ 5", "Tổ Văn phòng")


@dataclass(frozen=True, slots=True)
class DemoPerson:
    role: Role
    full_name: str
    phone: str  # E.164, a reserved-looking demo range (+84 90000 xxxx)
    unit: str


DEMO_PEOPLE: tuple[DemoPerson, ...] = (
    DemoPerson(Role.PRINCIPAL, "Nguyễn Thị Thanh Hương", "+84900000001", "Tổ Văn phòng"),
    DemoPerson(Role.VICE_PRINCIPAL, "Trần Văn Minh", "+84900000002", "Tổ Văn phòng"),
    DemoPerson(Role.BOARD_HEAD, "Lê Thị Hồng Nhung", "+84900000003", "Tổ 5"),
    DemoPerson(Role.BOARD_MEMBER, "Phạm Quốc Bảo", "+84900000004", "Tổ 4"),
    DemoPerson(Role.SECRETARY, "Đỗ Thị Mai Anh", "+84900000005", "Tổ 3"),
    DemoPerson(Role.DEPT_HEAD, "Hoàng Thị Lan", "+84900000006", "Tổ 1"),
    DemoPerson(Role.TEACHER, "Nguyễn Thị Vân", "+84900000007", "Tổ 1"),
    DemoPerson(Role.GUARD, "Vũ Văn Tuấn", "+84900000008", "Tổ Văn phòng"),
    DemoPerson(Role.GUARD_LEAD, "Bùi Đức Thắng", "+84900000009", "Tổ Văn phòng"),
    DemoPerson(Role.IT, "Đặng Minh Khoa", "+84900000010", "Tổ Văn phòng"),
    DemoPerson(Role.EQUIPMENT, "Ngô Thị Thu Trang", "+84900000011", "Tổ 2"),
    DemoPerson(Role.ACCOUNTANT, "Phan Thị Ngọc Ánh", "+84900000012", "Tổ Văn phòng"),
    DemoPerson(Role.CLERK, "Lý Thị Hạnh", "+84900000013", "Tổ Văn phòng"),
    DemoPerson(Role.NURSE, "Trịnh Thị Hoa", "+84900000014", "Tổ Văn phòng"),
    DemoPerson(Role.STAFF, "Đinh Văn Long", "+84900000015", "Tổ Văn phòng"),
)

#: Called as ``seeder(session, school)`` after the demo people exist; each must be idempotent.
DemoSeeder = Callable[[Session, School], None]
EXTRA_SEEDERS: list[DemoSeeder] = []


def demo_email(full_name: str, suffix: str = DEMO_EMAIL_SUFFIX) -> str:
    """``Nguyễn Thị Vân`` → ``vannt@…``: given name + initials of the other names (001 Điều 5)."""
    from bot.flows.accounts.email_names import local_part

    local = local_part(full_name)
    return local + suffix if local else ""


def _upsert_school(session: Session) -> School:
    school = session.exec(select(School).where(School.name == DEMO_SCHOOL_NAME)).first()
    if school is None:
        school = School(name=DEMO_SCHOOL_NAME)
    school.short_name = DEMO_SHORT_NAME
    school.email_suffix = DEMO_EMAIL_SUFFIX
    settings = dict(school.settings or {})
    settings["units"] = list(DEMO_UNITS)
    settings["email_suffix"] = DEMO_EMAIL_SUFFIX
    settings["demo"] = True
    school.settings = settings  # a new dict, so the JSON column is seen as changed
    session.add(school)
    session.flush()
    return school


def _upsert_person(session: Session, school: School, spec: DemoPerson) -> Person:
    phone = normalize_phone(spec.phone)
    assert phone == spec.phone, f"demo phone {spec.phone} is not in E.164 form"
    person = session.exec(select(Person).where(Person.school_id == school.id, Person.phone == phone)).first()
    now = utcnow()
    if person is None:
        person = Person(school_id=school.id or 0, full_name=spec.full_name, phone=phone,
                        email=demo_email(spec.full_name), created_at=now)
    person.full_name = spec.full_name
    if spec.role.value not in person.roles:
        person.roles = [*person.roles, spec.role.value]
    person.unit = spec.unit
    if person.status != PersonStatus.ACTIVE:
        person.status = PersonStatus.ACTIVE
        person.status_changed_at = now
    person.updated_at = now
    session.add(person)
    return person


def create_demo_school(session: Session, *, extra_seeders: Iterable[DemoSeeder] | None = None) -> str:
    """Create or refresh the demo school and its people; return the school's name."""
    school = _upsert_school(session)
    for spec in DEMO_PEOPLE:
        _upsert_person(session, school, spec)
    session.flush()
    for seeder in (*EXTRA_SEEDERS, *(extra_seeders or ())):
        seeder(session, school)
    return school.name


__all__ = ["DEMO_PEOPLE", "DEMO_SCHOOL_NAME", "DEMO_UNITS", "DemoPerson", "DemoSeeder", "EXTRA_SEEDERS",
           "create_demo_school", "demo_email"]
