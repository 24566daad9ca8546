"""Teaching equipment end to end through the real python-telegram-bot and the fake Bot API:
a teacher reports damage → the equipment officer records it → on the month's day the principal gets
one card (with the Excel list) → ✅ Duyệt tất cả → the catalogue changes (a second tap is harmless);
item-by-item review with a rejection whose reason reaches the author; refusals of a future date and
of a quantity that would take the stock below zero; the 10-working-day deadline across Tết 2027."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime

import holidays
import pytest
from openpyxl import load_workbook
from sqlmodel import select

from bot.engine import reminders
from bot.flows.equipment.models import EquipmentBatch, EquipmentChange, EquipmentItem
from bot.flows.equipment.service import deadline_for
from storage import audit
from storage.models import School
from tests.fakes.tg_harness import TgHarness, payloads
from tests.helpers import make_person, make_school

P, E, T, D, V, T2 = 2001, 2002, 2003, 2004, 2005, 2006
PHOTO = b"\xff\xd8\xff\xe0" + b"JFIF-fake-photo-of-a-broken-kit" * 20


@pytest.fixture
def tg(telegram):
    h = telegram

    def seed(s):
        school = make_school(s, name="Trường Tiểu học Bùi Thanh Khiết", short_name="TH Bùi Thanh Khiết")
        ids = {"principal": make_person(s, school, "Phạm Thị Thúy Liễu", ["principal"]).id,
               "officer": make_person(s, school, "Lê Văn Thiết", ["equipment"]).id,
               "teacher": make_person(s, school, "Nguyễn Thị Vân", ["teacher"], unit="Tổ 3").id,
               "head": make_person(s, school, "Trần Thị Hạnh", ["dept_head", "teacher"], unit="Tổ 3").id,
               "vice": make_person(s, school, "Đỗ Văn Phó", ["vice_principal"]).id,
               "teacher2": make_person(s, school, "Hoàng Văn Nam", ["teacher"], unit="Tổ 5").id,
               "school": school.id}
        s.add(EquipmentItem(school_id=school.id, code="TB-0001", name="Máy chiếu Epson EB-X06", category="CNTT",
                            room="Phòng Tin học", quantity=2, damaged=0, is_it=True))
        s.add(EquipmentItem(school_id=school.id, code="TB-0003", name="Bộ lắp ghép mô hình kĩ thuật",
                            category="Công nghệ", room="Kho thiết bị", quantity=20, damaged=2))
        return ids

    ids = h.seed(seed)
    for key, uid in (("principal", P), ("officer", E), ("teacher", T), ("head", D), ("vice", V),
                     ("teacher2", T2)):
        h.link(ids[key], uid)
    h.ids = ids  # type: ignore[attr-defined]
    return h


def _item(tg: TgHarness, code: str) -> EquipmentItem:
    return tg.seed(lambda s: s.exec(select(EquipmentItem).where(EquipmentItem.code == code)).one())


def _changes(tg: TgHarness) -> list[EquipmentChange]:
    return tg.seed(lambda s: list(s.exec(select(EquipmentChange).order_by(EquipmentChange.id))))


async def _report_damage(tg: TgHarness, uid: int, query: str, n: str, day: str = "c:today",
                         note: str | None = None, photo: bool = False) -> None:
    await tg.command(uid, "thietbi")
    await tg.send(uid, query)
    await tg.tap(uid, "c:damaged")
    await tg.send(uid, n)
    if day.startswith("c:"):
        await tg.tap(uid, day)
    else:
        await tg.send(uid, day)
    if note:
        await tg.send(uid, note)
    else:
        await tg.tap(uid, "c:skip")
    if photo:
        await tg.send_photo(uid, PHOTO)
    else:
        await tg.tap(uid, "c:skip")
    await tg.tap(uid, "c:save")


async def test_damage_reported_recorded_monthly_card_approve_all(tg, clock):
    # 09:00 Monday 23/11/2026. The teacher types part of the name without diacritics.
    await _report_damage(tg, T, "lap ghep mo hinh", "3", note="Gãy khớp nối khi lớp 3A dùng", photo=True)
    last = await tg.last(T)
    assert "Lê Văn Thiết" in last.text and "08/12/2026" in last.text  # sent to the officer; deadline shown
    ch = _changes(tg)[0]
    assert (ch.kind, ch.quantity, ch.status, ch.happened_on) == ("damaged", 3, "reported", date(2026, 11, 23))
    assert ch.photo_sha256 and ch.photo_path
    # 10 working days after Mon 23/11/2026 (Tue 24/11 is Vietnam Cultural Day, weekends skipped):
    # Wed 25 (1), 26 (2), Fri 27 (3), Mon 30 (4), 1/12 (5), 2 (6), 3 (7), Fri 4 (8), Mon 7 (9), Tue 8/12 (10).
    assert ch.due_on == date(2026, 12, 8)
    card = await tg.wait_for_message(E, predicate=lambda m: f"eqk:{ch.id}:ok" in payloads(m))
    assert f"eqk:{ch.id}:ok" in payloads(card)
    photo = await tg.wait_for_message(E, predicate=lambda m: m.media_kind == "photo")
    assert photo.file is not None and photo.file.data == PHOTO
    # A teacher cannot record it (forged tap), the officer can; the catalogue is not touched yet.
    await tg.tap(T, f"eqk:{ch.id}:ok")
    assert _changes(tg)[0].status == "reported"
    await tg.tap(E, f"eqk:{ch.id}:ok")
    assert _changes(tg)[0].status == "pending"
    await tg.wait_for_message(T, contains="đã được Lê Văn Thiết ghi nhận", after=last.message_id)
    replay = await tg.tap(E, f"eqk:{ch.id}:ok")
    assert any("trước đó" in m.text for m in replay)
    assert _item(tg, "TB-0003").damaged == 2

    # The monthly card: the 25th at 08:00 (Wednesday 25/11/2026).
    clock.t = datetime(2026, 11, 25, 1, 0, tzinfo=UTC)
    await tg.tick()
    card = await tg.wait_for_message(P, predicate=lambda m: any(p.startswith("eqb:") for p in payloads(m)))
    batch = tg.seed(lambda s: s.exec(select(EquipmentBatch)).one())
    assert payloads(card) == [f"eqb:{batch.id}:all", f"eqb:{batch.id}:items"]
    assert "Hỏng: 1" in card.text and "TB-0003" in card.text
    doc = await tg.wait_for_message(P, predicate=lambda m: m.media_kind == "document")
    ws = load_workbook(io.BytesIO(doc.file.data)).active
    rows = list(ws.iter_rows(values_only=True))
    assert rows[1][2] == "TB-0003" and rows[1][4] == "Hỏng" and rows[1][5] == 3
    await tg.tick()  # the same day again: no second card
    assert len([m for m in tg.messages(P) if "eqb:" in "".join(payloads(m))]) == 1

    # Someone who is not the principal cannot approve (forged payload); nothing changes.
    refused = await tg.tap(T, f"eqb:{batch.id}:all")
    assert refused and _item(tg, "TB-0003").damaged == 2
    await tg.tap(P, f"eqb:{batch.id}:all")
    item = _item(tg, "TB-0003")
    assert (item.quantity, item.damaged) == (20, 5)
    assert _changes(tg)[0].status == "approved"
    await tg.wait_for_message(T, contains="đã duyệt")
    await tg.fake.wait_until(lambda: card.edits, 5, "the card to be edited")
    assert not card.inline_buttons and "Phạm Thị Thúy Liễu" in card.text
    # A second tap is harmless.
    again = await tg.tap(P, f"eqb:{batch.id}:all", message_id=card.message_id)
    assert any("đã được" in m.text for m in again)
    assert _item(tg, "TB-0003").damaged == 5
    approved = tg.seed(lambda s: list(audit.events(s, action="equipment.change_approved")))
    assert len(approved) == 1 and approved[0].details["after"]["damaged"] == 5
    assert tg.seed(lambda s: audit.verify(s)).ok


async def test_review_one_by_one_reject_with_reason(tg, clock):
    # A teacher's report (recorded by the officer) and the officer's own change.
    await _report_damage(tg, T, "TB-0001", "1", day="20/11")
    first = _changes(tg)[0]
    await tg.tap(E, f"eqk:{first.id}:ok")
    await tg.command(E, "thietbi")
    await tg.send(E, "lắp ghép")
    await tg.tap(E, "c:new")
    await tg.send(E, "10")
    await tg.tap(E, "c:today")
    await tg.tap(E, "c:skip")
    await tg.tap(E, "c:skip")
    await tg.tap(E, "c:save")
    second = _changes(tg)[1]
    assert second.status == "pending" and second.kind == "new"

    # This school moved the monthly approval to the 27th (the calendar's per-school setting).
    rule = tg.rt.registry.rules["equipment.monthly"]
    await tg.rt.dispatcher.run_unit(lambda ctx: reminders.set_rule(ctx, tg.ids["school"], rule, params={"day": 27}),
                                    school_id=tg.ids["school"])
    clock.t = datetime(2026, 11, 25, 1, 0, tzinfo=UTC)
    await tg.tick()
    assert tg.seed(lambda s: s.exec(select(EquipmentBatch)).first()) is None
    clock.t = datetime(2026, 11, 27, 1, 0, tzinfo=UTC)
    await tg.tick()
    card = await tg.wait_for_message(P, predicate=lambda m: any(p.startswith("eqb:") for p in payloads(m)))
    batch_id = tg.seed(lambda s: s.exec(select(EquipmentBatch)).one().id)
    # /duyetthietbi shows the open card again, with its buttons, to the principal only.
    r = await tg.command(T, "duyetthietbi")
    assert not payloads(r[-1])
    r = await tg.command(P, "duyetthietbi")
    assert f"eqb:{batch_id}:items" in payloads(r[-1])
    await tg.tap(P, f"eqb:{batch_id}:items")
    shown = await tg.last(P)
    assert f"#{first.id}" in shown.text and "c:no" in payloads(shown)
    await tg.tap(P, "c:no")
    await tg.send(P, "Máy chiếu vẫn chạy tốt, không phải hỏng")
    told = await tg.wait_for_message(T, contains="Máy chiếu vẫn chạy tốt")
    assert f"#{first.id}" in told.text
    shown = await tg.last(P)
    assert f"#{second.id}" in shown.text
    await tg.tap(P, "c:ok")
    done = await tg.last(P)
    assert "1" in done.text and "11/2026" in done.text
    statuses = [c.status for c in _changes(tg)]
    assert statuses == ["rejected", "approved"]
    assert _item(tg, "TB-0001").damaged == 0  # the rejected change did not touch the catalogue
    assert _item(tg, "TB-0003").quantity == 30
    assert tg.seed(lambda s: s.get(EquipmentBatch, batch_id).status) == "decided"
    await tg.fake.wait_until(lambda: not card.inline_buttons, 5, "the card to lose its buttons")
    # The card is decided: "approve all" now changes nothing.
    await tg.tap(P, f"eqb:{batch_id}:all", message_id=card.message_id)
    assert _item(tg, "TB-0003").quantity == 30 and _item(tg, "TB-0001").damaged == 0


async def test_future_date_and_negative_quantity_refused(tg):
    await tg.command(T, "thietbi")
    await tg.send(T, "may chieu")
    await tg.tap(T, "c:damaged")
    r = await tg.send(T, "-1")
    assert "âm" in r[-1].text
    r = await tg.send(T, "5")  # only 2 good units
    assert "dưới 0" in r[-1].text and "2" in r[-1].text
    await tg.send(T, "2")
    r = await tg.send(T, "30/11/2026")  # today is 23/11/2026
    assert "tương lai" in r[-1].text
    r = await tg.send(T, "31/02")
    assert "21/11" in r[-1].text
    await tg.send(T, "hôm nay")
    await tg.tap(T, "c:skip")
    r = await tg.send(T, "không có ảnh")
    assert "ảnh" in r[-1].text.lower()
    await tg.tap(T, "c:skip")
    await tg.tap(T, "c:cancel")
    assert _changes(tg) == []
    # A loss larger than the stock is refused too; a stock-take may not count below zero.
    await tg.command(E, "thietbi")
    await tg.send(E, "TB-0001")
    await tg.tap(E, "c:lost")
    r = await tg.send(E, "3")
    assert "dưới 0" in r[-1].text
    await tg.command(E, "thietbi")
    await tg.send(E, "TB-0001")
    await tg.tap(E, "c:stocktake")
    r = await tg.send(E, "-2")
    assert "âm" in r[-1].text
    assert _changes(tg) == []


def test_vietnamese_holidays_known_for_tet_2027():
    """The hand-worked dates below assume what the holidays package lists for Tết 2027."""
    vn = holidays.country_holidays("VN", years=2027)
    assert {date(2027, 2, d) for d in (4, 5, 6, 7, 8, 9, 10)} <= set(vn)
    assert date(2027, 2, 3) not in vn and date(2027, 2, 11) not in vn


def test_deadline_across_tet_and_weekends():
    school = School(name="x", settings={})
    # Tue 2/2/2027: Wed 3/2 (1); Thu 4 – Wed 10/2 Tết (and a weekend); Thu 11 (2), Fri 12 (3),
    # Mon 15 (4), 16 (5), 17 (6), 18 (7), Fri 19 (8), Mon 22 (9), Tue 23/2/2027 (10).
    assert deadline_for(school, date(2027, 2, 2)) == date(2027, 2, 23)
    # Fri 4/12/2026 → Mon 7 (1) … Fri 11 (5), Mon 14 (6) … Fri 18/12/2026 (10): two weekends.
    assert deadline_for(school, date(2026, 12, 4)) == date(2026, 12, 18)
    # A school's own extra day off (e.g. a decision of the district) counts too.
    extra = School(name="y", settings={"days_off": ["2026-12-18"]})
    assert deadline_for(extra, date(2026, 12, 4)) == date(2026, 12, 21)


async def test_deadline_reminders_across_tet_2027_then_marked_late(tg, clock):
    # Friday 12/02/2027 09:00: a teacher reports damage that happened on Tuesday 2/2, before Tết.
    clock.t = datetime(2027, 2, 12, 2, 0, tzinfo=UTC)
    await _report_damage(tg, T, "TB-0003", "1", day="2/2")
    ch = _changes(tg)[0]
    assert ch.due_on == date(2027, 2, 23)
    assert "23/02/2027" in (await tg.last(T)).text
    # Wednesday 17/2: 4 working days left (18, 19, 22, 23) — no reminder yet.
    clock.t = datetime(2027, 2, 17, 2, 0, tzinfo=UTC)
    await tg.tick()
    assert not [m for m in tg.messages(D) if "23/02/2027" in m.text]
    # Thursday 18/2: 3 working days left → the reporter, the head of Tổ 3 and the officer; not Tổ 5.
    clock.t = datetime(2027, 2, 18, 2, 0, tzinfo=UTC)
    await tg.tick()
    for uid in (T, D, E):
        await tg.wait_for_message(uid, contains="23/02/2027")
    officer_note = [m for m in tg.messages(E) if "23/02/2027" in m.text and f"eqk:{ch.id}:ok" in payloads(m)]
    assert officer_note
    assert not [m for m in tg.messages(T2) if "23/02/2027" in m.text]
    await tg.tick()
    await tg.restart()
    await tg.tick()
    assert len([m for m in tg.messages(D) if "23/02/2027" in m.text]) == 1
    # Saturday 20/2 is not a working day: nothing. Tuesday 23/2 is the last day.
    clock.t = datetime(2027, 2, 23, 2, 0, tzinfo=UTC)
    await tg.tick()
    await tg.wait_for_message(D, contains="ngày cuối cùng")
    # Recorded on Wednesday 24/2: one day late, so it is marked late.
    clock.t = datetime(2027, 2, 24, 2, 0, tzinfo=UTC)
    r = await tg.tap(E, f"eqk:{ch.id}:ok", message_id=officer_note[0].message_id)
    assert any("trễ hạn" in m.text for m in r)
    assert _changes(tg)[0].late is True
