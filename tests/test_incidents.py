"""Incidents below the channel: race-safe numbering (real threads, SQLite and PostgreSQL), school
settings over the defaults, routing, Vietnamese date/time parsing, the DOCX helpers and the flow's
quick-path inference — through the dispatcher with a recording channel where a flow is involved."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import Session, col, select

from bot.flows.footage.models import Camera
from bot.flows.incidents import service as incidents
from bot.flows.incidents.docx import doc_code, vn_date
from bot.flows.incidents.models import IncidentCounter
from bot.flows.incidents.report import parse_when
from storage.models import School
from tests.helpers import make_person, make_school

TZ = ZoneInfo("Asia/Ho_Chi_Minh")


def test_numbers_are_unique_under_concurrency(db):
    with db.session() as s:
        school_id: int = make_school(s).id or 0
        other_id: int = make_school(s, name="Trường Mầm non Hiệp Hòa", short_name="MN Hiệp Hòa").id or 0
    n_threads = 8
    barrier = threading.Barrier(n_threads)
    got: list[tuple[int, int]] = []
    errors: list[BaseException] = []

    def work(i: int) -> None:
        sid = school_id if i % 4 else other_id
        try:
            barrier.wait()
            with Session(db.engine) as s:
                n = incidents.allocate_number(s, school_id=sid, year=2026)
                s.commit()
            got.append((sid, n))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    mine = sorted(n for sid, n in got if sid == school_id)
    theirs = sorted(n for sid, n in got if sid == other_id)
    assert mine == list(range(1, 7)) and theirs == [1, 2]  # per school, no gaps, no duplicates
    with db.session() as s:
        assert incidents.allocate_number(s, school_id=school_id, year=2027) == 1  # a new year starts at 1
        rows = {(r.school_id, r.year): r.last for r in s.exec(select(IncidentCounter))}
    assert rows == {(school_id, 2026): 6, (other_id, 2026): 2, (school_id, 2027): 1}
    assert incidents.format_number(2026, 7) == "SC-2026-0007"


def test_school_settings_override_defaults_and_bad_values_fall_back():
    school = School(name="x", settings={"incidents": {
        "areas": ["Khu A"], "routes": {"it": ["it"], "security": "not a list"}, "urgent_escalate_minutes": 5,
        "normal_escalate_hours": -3, "hold_normal_at_night": "no", "authority": "Sở GD&ĐT Quảng Ninh"}})
    c = incidents.conf(school)
    assert c["areas"] == ["Khu A"] and c["routes"]["it"] == ["it"]
    assert c["routes"]["security"] == incidents.DEFAULTS["routes"]["security"]  # a bad value is ignored
    assert c["urgent_escalate_minutes"] == 5 and c["normal_escalate_hours"] == 24
    assert c["hold_normal_at_night"] is True and c["authority"] == "Sở GD&ĐT Quảng Ninh"
    assert incidents.DEFAULTS["areas"][0] == "Cổng chính"  # the defaults themselves are untouched
    assert incidents.conf(None)["routes"]["camera"] == ["camera_unit", "guard_lead", "it"]


def test_routing_defaults(db):
    with db.session() as s:
        school = make_school(s)
        guard = make_person(s, school, "Bảo vệ A", ["guard"], unit="Tổ bảo vệ")
        lead = make_person(s, school, "Trưởng BV", ["guard_lead"], unit="Tổ bảo vệ")
        principal = make_person(s, school, "Hiệu trưởng", ["principal"])
        vp = make_person(s, school, "Phó HT", ["vice_principal"])
        it = make_person(s, school, "CNTT", ["it"])
        head2 = make_person(s, school, "Tổ trưởng tổ 2", ["dept_head", "teacher"], unit="Tổ 2")
        teacher2 = make_person(s, school, "GV tổ 2", ["teacher"], unit="Tổ 2")
        equip = make_person(s, school, "Thiết bị", ["equipment"])
        cam = Camera(school_id=school.id or 0, code="hl2", name="Hành lang tầng 2", unit="tổ 2")
        s.add(cam)
        s.flush()

        def ids(kind: str, urgent: bool, reporter, camera=None) -> list[int | None]:
            return [p.id for p in incidents.route(s, school, kind=kind, urgent=urgent, reporter=reporter,
                                                  camera=camera)]

        assert ids("security", False, guard) == [lead.id, principal.id, vp.id]
        assert ids("security", True, lead) == [principal.id, vp.id]  # never the reporter
        assert ids("camera", False, guard, cam) == [head2.id, lead.id, it.id]  # the unit keeping it (Điều 6)
        assert ids("it_phishing", False, teacher2) == [it.id, principal.id]
        assert ids("it_data_loss", True, teacher2) == [it.id, principal.id, vp.id]
        assert ids("equipment", False, teacher2) == [equip.id, head2.id]  # the reporter's own head of unit
        assert ids("it_account", False, it) == [principal.id]  # IT reports: the principal still gets it
        # with nobody in the route, the principal gets it rather than nobody
        s.delete(equip)
        s.delete(head2)
        s.flush()
        assert ids("equipment", False, teacher2) == [principal.id]


@pytest.mark.parametrize(("text", "expected"), [
    ("8h30", datetime(2026, 11, 23, 8, 30)),
    ("21/11 8h30", datetime(2026, 11, 21, 8, 30)),
    ("8 giờ 30 21/11/2026", datetime(2026, 11, 21, 8, 30)),
    ("lúc 17:05 ngày 22-11", datetime(2026, 11, 22, 17, 5)),
    ("hôm qua 22h", datetime(2026, 11, 22, 22, 0)),
    ("ngày mai 7h", datetime(2026, 11, 24, 7, 0)),
    ("08.30", datetime(2026, 11, 23, 8, 30)),
])
def test_parse_when(text, expected):
    assert parse_when(text, today=date(2026, 11, 23), tz=TZ) == expected.replace(tzinfo=TZ)


@pytest.mark.parametrize("text", ["", "mai nhé", "31/02 8h", "25h", "21/11"])
def test_parse_when_refuses(text):
    assert parse_when(text, today=date(2026, 11, 23), tz=TZ) is None


def test_docx_helpers():
    assert vn_date(date(2026, 1, 5)) == "ngày 05 tháng 01 năm 2026"
    assert vn_date(date(2026, 11, 23)) == "ngày 23 tháng 11 năm 2026"
    assert vn_date(date(2026, 3, 9)) == "ngày 09 tháng 3 năm 2026"
    assert doc_code(School(name="Trường Tiểu học Ngọc Thụy", short_name="TH Ngọc Thụy")) == "THNT"
    assert doc_code(School(name="Trường Mầm non Hiệp Hòa", short_name="MN Hiệp Hòa")) == "MNHH"
    assert doc_code(School(name="Trường Tiểu học Trung Trắc", short_name="TH Trung Trắc")) == "THTT"
    assert doc_code(School(name="x", short_name="TH A"), "TH-BTK") == "TH-BTK"


def test_age_text():
    from datetime import timedelta

    from bot.i18n import Translator

    tr = Translator("vi")
    assert incidents.age_text(tr, timedelta(minutes=7)) == "7 phút"
    assert incidents.age_text(tr, timedelta(hours=2, minutes=5)) == "2 giờ 5 phút"
    assert incidents.age_text(tr, timedelta(days=1, hours=3, minutes=59)) == "1 ngày 3 giờ"


def test_payloads_are_parsed_strictly():
    assert incidents.parse_payload("ic:12:ack") == (12, "ack")
    for bad in ("ic:12:delete", "ic:x:ack", "ic:12", "ap:12:ok", "ic:12:ack:1", "", None, "ic:" + "9" * 13 + ":ack"):
        assert incidents.parse_payload(bad) is None


def test_quiet_hours_window_is_what_holds_normal_reports(settings):
    from bot.engine.reminders import in_quiet_hours

    window = settings.quiet_window()
    assert window is not None
    assert in_quiet_hours(window, time(2, 0)) and not in_quiet_hours(window, time(6, 31))
    assert datetime(2026, 11, 22, 19, 0, tzinfo=UTC).astimezone(TZ).time() == time(2, 0)


def test_demo_seed_is_idempotent(db):
    from bot.flows.incidents.models import Incident

    with db.session() as s:
        school = make_school(s)
        for name, roles in (("Vũ Văn Tuấn", ["guard"]), ("Bùi Đức Thắng", ["guard_lead"]),
                            ("Nguyễn Thị Vân", ["teacher"]), ("Ngô Thị Thu Trang", ["equipment"]),
                            ("Nguyễn Thị Thanh Hương", ["principal"])):
            make_person(s, school, name, roles)
        incidents.demo_seed(s, school)
        incidents.demo_seed(s, school)
        rows = list(s.exec(select(Incident).order_by(col(Incident.seq))))
    assert [(r.kind, r.status) for r in rows] == [("security", "resolved"), ("equipment", "open")]
    assert rows[0].number.startswith("SC-") and rows[1].seq == 2 and rows[1].recipient_ids
