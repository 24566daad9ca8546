"""The use log (Mượn / Trả), repair requests for IT equipment (004 Điều 8.3), the semester report with
its archived Excel file, and the quarterly backup reminder — through the real python-telegram-bot."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import pytest
from openpyxl import load_workbook
from sqlmodel import select

from bot.flows.equipment.models import (
    EquipmentChange,
    EquipmentItem,
    EquipmentReport,
    EquipmentUse,
    RepairRequest,
)
from bot.i18n import Translator
from storage import audit
from storage.backup import record_backup, run_backup
from tests.fakes.tg_harness import payloads
from tests.helpers import make_person, make_school

P, E, T, T2, IT_, T3 = 3001, 3002, 3003, 3004, 3005, 3006


@pytest.fixture
def tg(telegram):
    h = telegram

    def seed(s):
        school = make_school(s, name="Trường Mầm non Hiệp Hòa", short_name="MN Hiệp Hòa")
        ids = {"principal": make_person(s, school, "Vũ Thị Hiệu", ["principal"]).id,
               "officer": make_person(s, school, "Lê Văn Thiết", ["equipment"]).id,
               "teacher": make_person(s, school, "Nguyễn Thị Vân", ["teacher"], unit="Tổ 3").id,
               "teacher2": make_person(s, school, "Hoàng Văn Nam", ["teacher"], unit="Tổ 5").id,
               "it": make_person(s, school, "Phan Tin Học", ["it"]).id,
               "teacher3": make_person(s, school, "Đinh Thị Ba", ["teacher"]).id,
               "school": school.id}
        s.add(EquipmentItem(school_id=school.id, code="TB-0001", name="Máy chiếu Epson EB-X06", category="CNTT",
                            room="Phòng Tin học", quantity=2, damaged=0, is_it=True))
        s.add(EquipmentItem(school_id=school.id, code="TB-0003", name="Bộ lắp ghép mô hình kĩ thuật",
                            category="Công nghệ", room="Kho thiết bị", quantity=20, damaged=2))
        s.add(EquipmentItem(school_id=school.id, code="TB-0009", name="Đàn organ Yamaha", category="Âm nhạc",
                            room="Phòng Âm nhạc", quantity=1, damaged=0))
        return ids

    ids = h.seed(seed)
    for key, uid in (("principal", P), ("officer", E), ("teacher", T), ("teacher2", T2), ("it", IT_),
                     ("teacher3", T3)):
        h.link(ids[key], uid)
    h.ids = ids  # type: ignore[attr-defined]
    return h


async def test_borrow_return_damage_then_semester_report(tg, clock):
    await tg.command(T, "muon")
    await tg.send(T, "may chieu")
    await tg.send(T, "3A")
    r = await tg.tap(T, "c:1")
    assert "3A" in r[-1].text
    await tg.command(T2, "muon")
    await tg.send(T2, "TB-0001")
    r = await tg.send(T2, "Lớp 4B")  # one good unit left: recorded at once
    assert "4B" in r[-1].text
    await tg.command(T3, "muon")
    await tg.send(T3, "TB-0001")
    r = await tg.last(T3)
    assert "Nguyễn Thị Vân" in r.text and "Hoàng Văn Nam" in r.text  # nothing free: who has them
    await tg.command(T, "tra")
    r = await tg.tap(T, "c:ok")
    assert "Đã trả" in r[-1].text
    await tg.command(T2, "tra")
    await tg.tap(T2, "c:bad")  # damaged on return: straight on to record the change
    await tg.send(T2, "1")
    await tg.tap(T2, "c:today")
    await tg.send(T2, "Rơi khi tháo ra, vỡ ống kính")
    await tg.tap(T2, "c:skip")
    await tg.tap(T2, "c:save")
    uses = tg.seed(lambda s: list(s.exec(select(EquipmentUse).order_by(EquipmentUse.id))))
    assert [(u.class_name, u.returned_at is not None, u.return_ok) for u in uses] == [
        ("3A", True, True), ("Lớp 4B", True, False)]
    ch = tg.seed(lambda s: s.exec(select(EquipmentChange)).one())
    assert (ch.kind, ch.quantity, ch.status) == ("damaged", 1, "reported")
    assert tg.seed(lambda s: list(audit.events(s, action="equipment.use_damage_recorded")))

    # A teacher may not make reports; the principal may, by typed period.
    r = await tg.command(T, "baocao_thietbi", "HK1 2026-2027")
    assert r and not any(m.media_kind for m in r)
    await tg.command(P, "baocao_thietbi", "HK1 2026-2027")
    summary = await tg.wait_for_message(P, contains="Học kỳ 1 2026-2027")
    assert "01/08/2026" in summary.text and "15/01/2027" in summary.text and "2" in summary.text
    doc = await tg.wait_for_message(P, predicate=lambda m: m.media_kind == "document")
    wb = load_workbook(io.BytesIO(doc.file.data))
    assert {"Tổng hợp", "Theo phòng", "Danh mục", "Thay đổi", "Tần suất sử dụng"} <= set(wb.sheetnames)
    use_rows = list(wb["Tần suất sử dụng"].iter_rows(values_only=True))
    assert use_rows[1][:1] == ("TB-0001",) and use_rows[1][3:] == (2, 2)  # borrowed twice, two units
    assert ("TB-0009", "Đàn organ Yamaha", "Âm nhạc", 0, 0) in use_rows  # never used: listed with 0
    change_rows = list(wb["Thay đổi"].iter_rows(values_only=True))
    assert change_rows[1][1] == "TB-0001" and change_rows[1][3] == "Hỏng: 1"
    summary_rows = {r[0]: r[1] for r in wb["Tổng hợp"].iter_rows(values_only=True) if r and r[0]}
    assert summary_rows["Số đơn vị"] == 23 and summary_rows["Số đơn vị hỏng"] == 2
    assert summary_rows["Số lượt mượn trong kỳ"] == 2
    row = tg.seed(lambda s: s.exec(select(EquipmentReport)).one())
    assert row.period == "2026-2027/HK1" and Path(row.path).is_file()
    assert Path(row.path).parent == tg.settings.data_dir / "reports" / str(tg.ids["school"]) / "thiet-bi" / \
        "2026-2027" / "HK1"
    # Without an argument: buttons for the current school year; the whole year needs its own file.
    r = await tg.command(P, "baocao_thietbi")
    assert "c:p2" in payloads(r[-1])
    await tg.tap(P, "c:p2")
    await tg.wait_for_message(P, contains="Cả năm học 2026-2027")
    assert len(tg.seed(lambda s: list(s.exec(select(EquipmentReport))))) == 2


async def test_it_repair_request_confirmed_then_resolved(tg):
    await tg.command(T, "suachua")
    r = await tg.send(T, "bộ lắp ghép")  # not IT equipment
    assert "CNTT" in r[-1].text
    await tg.send(T, "máy chiếu")
    await tg.tap(T, "c:repair")
    await tg.send(T, "Máy chiếu phòng Tin học không lên hình, đèn báo đỏ")
    await tg.tap(T, "c:skip")
    await tg.tap(T, "c:send")
    req = tg.seed(lambda s: s.exec(select(RepairRequest)).one())
    assert req.status == "pending" and req.approval_id
    card = await tg.wait_for_message(P, contains=f"#{req.approval_id}")
    assert f"ap:{req.approval_id}:ok" in payloads(card) and "TB-0001" in card.text
    assert not [m for m in tg.messages(IT_) if "TB-0001" in m.text]  # nothing for IT before the principal
    await tg.tap(P, f"ap:{req.approval_id}:ok")
    task = await tg.wait_for_message(IT_, predicate=lambda m: f"eqr:{req.id}:done" in payloads(m))
    assert "Vũ Thị Hiệu" in task.text
    r = await tg.tap(T, f"eqr:{req.id}:done")  # a forged tap by the teacher
    assert r and tg.seed(lambda s: s.get(RepairRequest, req.id).status) == "approved"
    await tg.tap(IT_, f"eqr:{req.id}:ack")
    await tg.wait_for_message(T, contains="Phan Tin Học")
    await tg.tap(IT_, f"eqr:{req.id}:done")
    await tg.send(IT_, "Đã thay bóng đèn máy chiếu, hoạt động bình thường")
    req = tg.seed(lambda s: s.get(RepairRequest, req.id))
    assert req.status == "resolved" and req.resolution.startswith("Đã thay bóng đèn")
    await tg.wait_for_message(T, contains="Đã thay bóng đèn")
    await tg.wait_for_message(P, contains="Đã thay bóng đèn")
    await tg.fake.wait_until(lambda: not task.inline_buttons, 5, "the task card to be closed")
    again = await tg.tap(IT_, f"eqr:{req.id}:done", message_id=task.message_id)
    assert any("trước đó" in m.text for m in again)
    actions = [e.action for e in tg.seed(lambda s: list(audit.events(s))) if e.action.startswith("equipment.repair")]
    assert actions == ["equipment.repair_requested", "equipment.repair_confirmed", "equipment.repair_taken",
                       "equipment.repair_resolved"]


async def test_quarterly_backup_reminder_and_last_date_for_the_principal(tg, clock, tmp_path):
    r = await tg.command(P, "saoluu")
    assert "Chưa có bản sao lưu" in r[-1].text
    result = run_backup(tg.settings, tmp_path / "nas", tr=Translator("vi"), now=clock.now())
    assert result.ok
    record_backup(tg.db, result, now=clock.now())
    r = await tg.command(P, "saoluu")
    assert "23/11/2026" in r[-1].text
    r = await tg.command(T, "saoluu")
    assert "23/11/2026" not in r[-1].text  # not for teachers
    # Q1 2027: 1 January is New Year's Day and 2–3 January a weekend → Monday 4/1/2027 at 08:00.
    clock.t = datetime(2027, 1, 1, 2, 0, tzinfo=UTC)
    await tg.tick()
    assert not [m for m in tg.messages(IT_) if "main.py backup" in m.text]
    clock.t = datetime(2027, 1, 4, 1, 0, tzinfo=UTC)
    await tg.tick()
    note = await tg.wait_for_message(IT_, contains="main.py backup")
    assert "23/11/2026" in note.text
    await tg.tick()
    clock.t = datetime(2027, 2, 10, 3, 0, tzinfo=UTC)
    await tg.tick()
    assert len([m for m in tg.messages(IT_) if "main.py backup" in m.text]) == 1  # once per quarter
    # More than 3 months later the principal is warned.
    clock.t = datetime(2027, 3, 1, 2, 0, tzinfo=UTC)
    r = await tg.command(P, "saoluu")
    assert "⚠️" in r[-1].text
