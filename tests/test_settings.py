"""Typed per-school settings (``bot/settings.py`` and each workflow's ``settings.py``): defaults when
nothing is stored, a bad stored value reported by the setting's name while the steps keep working,
old top-level footage keys still read after an upgrade, and ``python main.py settings show|set``."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from sqlmodel import col, select

import main
from bot.config import Settings
from bot.core import load_registry
from bot.engine.reminders import Scheduler
from bot.flows.accounts.settings import AccountSettings
from bot.flows.equipment.settings import EquipmentSettings
from bot.flows.footage.settings import FootageSettings
from bot.flows.incidents.models import Incident
from bot.flows.incidents.settings import IncidentSettings
from bot.i18n import Translator
from bot.settings import WorkflowSettings, describe, save, set_value
from storage import audit
from storage.db import Database
from storage.models import School
from tests.helpers import inbound, make_school

TR = Translator("vi")
MODELS: dict[str, type[WorkflowSettings]] = load_registry().settings_models()


def _school(**stored: Any) -> School:
    return School(name="Trường Tiểu học Ngọc Thụy", short_name="TH Ngọc Thụy", settings=stored)


# -- reading ------------------------------------------------------------------------------------
def test_every_workflow_with_school_settings_declares_a_model() -> None:
    assert set(MODELS) == {"accounts", "articles", "equipment", "footage", "incidents"}
    assert all(cls.section == name for name, cls in MODELS.items())


def test_a_school_with_nothing_stored_gets_every_default_and_no_problem() -> None:
    school = _school()
    for cls in MODELS.values():
        model, problems = cls.load(school)
        assert problems == []
        assert model.model_dump(mode="json") == cls.defaults()
    incidents = IncidentSettings.of(school)
    assert incidents.urgent_escalate_minutes == 10 and incidents.hold_normal_at_night is True
    assert AccountSettings.of(None).password_delete_minutes == 10  # no school at all: the defaults too


def test_a_bad_stored_value_falls_back_to_its_default_and_is_reported_by_name(caplog) -> None:
    school = _school(incidents={"urgent_escalate_minutes": "abc", "normal_escalate_hours": 6})
    with caplog.at_level(logging.WARNING, logger="bot.settings"):
        model, problems = IncidentSettings.load(school)
    assert model.urgent_escalate_minutes == 10  # the default
    assert model.normal_escalate_hours == 6  # the good value next to it is kept
    assert [p.key for p in problems] == ["incidents.urgent_escalate_minutes"]
    assert str(problems[0]).startswith("incidents.urgent_escalate_minutes: ")
    assert "incidents.urgent_escalate_minutes" in caplog.text
    assert "phải là số nguyên" in problems[0].text(TR)


def test_a_value_outside_its_bounds_is_a_bad_value_too() -> None:
    model, problems = IncidentSettings.load(_school(incidents={"max_attachments": 0}))
    assert model.max_attachments == 10 and [p.key for p in problems] == ["incidents.max_attachments"]
    assert "phải lớn hơn 0" in problems[0].text(TR)


def test_a_section_that_is_not_a_table_gives_the_defaults() -> None:
    model, problems = FootageSettings.load(_school(footage="yes"))
    assert model == FootageSettings() and [p.key for p in problems] == ["footage"]


def test_a_day_of_the_year_must_exist_every_year() -> None:
    model, problems = EquipmentSettings.load(_school(equipment={"year_start": "09-05", "hk2_start": "02-29"}))
    assert model.year_start_md == (9, 5) and model.hk2_start == "01-16"
    assert [p.key for p in problems] == ["equipment.hk2_start"]


# -- the old top-level footage keys -------------------------------------------------------------
def test_a_school_from_before_the_upgrade_keeps_its_footage_settings() -> None:
    school = _school(footage_direct_extract=True, footage_watermark=True)
    model, problems = FootageSettings.load(school)
    assert model.direct_extract is True and model.watermark is True and problems == []


def test_the_footage_section_wins_over_an_old_top_level_key() -> None:
    school = _school(footage={"watermark": False}, footage_watermark=True, footage_direct_extract=True)
    model = FootageSettings.of(school)
    assert model.watermark is False and model.direct_extract is True


def test_changing_a_footage_setting_moves_the_old_keys_into_the_section() -> None:
    school = _school(footage_direct_extract=True, units=["Tổ 1"])
    result = set_value(school, "footage.watermark", "có", models=MODELS, tr=TR)
    assert result.ok, result.message
    assert school.settings == {"units": ["Tổ 1"], "footage": {"direct_extract": True, "watermark": True}}


# -- writing ------------------------------------------------------------------------------------
def test_saving_writes_only_what_was_stored_or_changed_and_keeps_unknown_keys() -> None:
    school = _school(incidents={"doc_code": "THNT", "from_a_newer_version": 1})
    before = school.settings
    save(school, IncidentSettings.of(school).updated(report_place="Long Biên"))
    assert school.settings == {"incidents": {"doc_code": "THNT", "from_a_newer_version": 1,
                                             "report_place": "Long Biên"}}
    assert school.settings is not before  # a new dict: the JSON column sees the change


def test_a_typed_value_is_read_by_the_settings_type() -> None:
    school = _school()
    assert set_value(school, "incidents.areas", "Cổng A, , Cổng B", models=MODELS, tr=TR).ok
    assert set_value(school, "incidents.hold_normal_at_night", "không", models=MODELS, tr=TR).ok
    assert set_value(school, "incidents.routes", '{"it": ["it"]}', models=MODELS, tr=TR).ok
    assert set_value(school, "articles.rate", "50000", models=MODELS, tr=TR).ok
    model = IncidentSettings.of(school)
    assert model.areas == ["Cổng A", "Cổng B"] and model.hold_normal_at_night is False
    assert model.routes["it"] == ["it"] and model.routes["security"] == ["guard_lead", "bgh"]
    assert school.settings["articles"] == {"rate": 50000}


def test_a_value_that_cannot_be_read_is_refused_with_a_message_and_nothing_changes() -> None:
    school = _school(incidents={"doc_code": "THNT"})
    for key, raw, expected in (("incidents.routes", "{not json", "không phải JSON hợp lệ"),
                               ("incidents.hold_normal_at_night", "có lẽ", "phải là có hoặc không"),
                               ("articles.approver", "the janitor", "phải là một trong"),
                               ("equipment.year_start", "31-08", "MM-DD")):
        result = set_value(school, key, raw, models=MODELS, tr=TR)
        assert not result.ok and expected in result.message and key in result.message
    assert school.settings == {"incidents": {"doc_code": "THNT"}}


# -- a step with a bad value stored -------------------------------------------------------------
@pytest.mark.parametrize("runtime_options", [{"workflows": ("delegation", "footage", "incidents", "profile")}])
async def test_an_incident_report_still_goes_out_and_escalates_on_the_default(runtime, clock) -> None:
    rt = runtime
    people = rt.enrol({"the guard": ("Vũ Văn Tuấn", ["guard"], {"unit": "Tổ bảo vệ"}),
                       "the head of the guards": ("Bùi Đức Thắng", ["guard_lead"], {"unit": "Tổ bảo vệ"}),
                       "the principal": ("Nguyễn Thị Thanh Hương", ["principal"])})

    def garbage(s: Any) -> None:
        school = s.get(School, people.school_id)
        school.settings = {"incidents": {"urgent_escalate_minutes": "abc", "max_attachments": -1}}
        s.add(school)

    rt.db.run_sync(garbage)
    guard = people["the guard"].chat
    for step in ({"command": "suco"}, {"payload": "c:security"}, {"payload": "c:urgent"}, {"payload": "c:a2"},
                 {"text": "Có người lạ trèo tường rào phía sau"}, {"payload": "c:send"}):
        await rt.dispatcher.handle(inbound(guard, **step))
    incidents = rt.db.run_sync(lambda s: list(s.exec(select(Incident).order_by(col(Incident.id)))))
    assert len(incidents) == 1 and incidents[0].urgent
    number = incidents[0].number
    assert any(number in t for t in rt.test_channel.texts(people["the head of the guards"].chat))

    async def tick() -> None:
        sched = Scheduler(rt)
        try:
            await sched.tick()
        finally:
            sched.leadership.release()

    clock.advance(minutes=9)
    await tick()
    assert len(rt.db.run_sync(lambda s: list(audit.events(s, action="incident.escalated")))) == 0
    clock.advance(minutes=2)  # past the default ten minutes
    await tick()
    assert len(rt.db.run_sync(lambda s: list(audit.events(s, action="incident.escalated")))) == 1


# -- python main.py settings ----------------------------------------------------------------------
@pytest.fixture
def cli(settings: Settings, db: Database, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """``main.py settings ...`` in this process, on the test database; returns (exit code, output)."""
    monkeypatch.setenv("DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    db.run_sync(lambda s: make_school(s, settings={"incidents": {"doc_code": "THNT"}}))

    def run(*argv: str) -> tuple[int, str]:
        code = main.main(["settings", *argv])
        out = capsys.readouterr()
        return code, out.out + out.err
    return run


def _stored(db: Database) -> dict[str, Any]:
    return db.run_sync(lambda s: dict(s.exec(select(School)).one().settings))


def test_settings_show_lists_every_setting_with_its_value_default_and_label(cli) -> None:
    code, out = cli("show")
    assert code == 0
    for info in describe(MODELS, None):
        assert f"\n{info.key} = " in out
    for key in ("incidents.parent_agency", "incidents.report_place", "incidents.doc_code",
                "accounts.password_delete_minutes", "footage.direct_extract", "footage.watermark",
                "equipment.year_start", "articles.rate"):
        assert f"\n{key} = " in out
    assert 'incidents.doc_code = "THNT"  (mặc định: "")' in out
    assert "incidents.urgent_escalate_minutes = 10  (mặc định)" in out
    assert "Cơ quan chủ quản ở đầu báo cáo" in out and "Số phút mật khẩu tạm được giữ" in out


def test_settings_set_saves_a_valid_value_and_audits_it(cli, db: Database) -> None:
    code, out = cli("set", "incidents.urgent_escalate_minutes", "15")
    assert code == 0 and "incidents.urgent_escalate_minutes = 15 (trước đây: 10)" in out
    assert _stored(db)["incidents"] == {"doc_code": "THNT", "urgent_escalate_minutes": 15}
    ev = db.run_sync(lambda s: list(audit.events(s, action="settings.changed")))
    assert len(ev) == 1 and ev[0].channel == "cli" and ev[0].details == {"old": 10, "new": 15}


def test_settings_set_refuses_a_value_outside_its_bounds(cli, db: Database) -> None:
    code, out = cli("set", "incidents.urgent_escalate_minutes", "0")
    assert code == 2 and "phải lớn hơn 0" in out and "Chưa lưu gì" in out
    code, out = cli("set", "accounts.password_delete_minutes", "abc")
    assert code == 2 and "phải là số nguyên" in out
    assert _stored(db) == {"incidents": {"doc_code": "THNT"}}
    assert db.run_sync(lambda s: list(audit.events(s, action="settings.changed"))) == []


def test_settings_set_names_an_unknown_setting_clearly(cli) -> None:
    code, out = cli("set", "incidents.urgent_minutes", "5")
    assert code == 2 and "Không có cài đặt “incidents.urgent_minutes”" in out
    assert "incidents.urgent_escalate_minutes" in out  # the known ones are listed
