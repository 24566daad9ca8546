"""Equipment paths through the dispatcher (recording channel): a new item from the chat, moves and
stock-takes approved into the catalogue, a change that no longer fits is rejected automatically, an
equipment officer sends a report back, the delegate decides the month, a repair request refused; and
the stock arithmetic and period parsing themselves."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from sqlmodel import select

from bot.engine import reminders
from bot.flows.equipment.catalogue import Stock, apply_kind, find_items
from bot.flows.equipment.models import (
    EquipmentBatch,
    EquipmentChange,
    EquipmentItem,
    ItemStatus,
    RepairRequest,
)
from bot.flows.equipment.xlsx import parse_period
from bot.runtime import Runtime
from storage import audit
from storage.models import Approval, Delegation
from tests.helpers import inbound, make_person, make_school


@pytest.fixture
def env(runtime, clock):
    rt = runtime

    def seed(s):
        school = make_school(s)
        ids = {"p": make_person(s, school, "Trần Văn Đức", ["principal"], link="p").id,
               "v": make_person(s, school, "Lê Thị Hoa", ["vice_principal"], link="v").id,
               "e": make_person(s, school, "Lê Văn Thiết", ["equipment"], link="e").id,
               "t": make_person(s, school, "Nguyễn Thị Vân", ["teacher"], link="t", unit="Tổ 1").id,
               "school": school.id}
        for code, name, room, qty, dmg in (("TB-0001", "Máy chiếu Epson", "Phòng Tin học", 2, 0),
                                           ("TB-0002", "Bàn ghế học sinh", "Lớp 1A", 30, 1)):
            s.add(EquipmentItem(school_id=school.id, code=code, name=name, room=room, quantity=qty, damaged=dmg,
                                is_it=code == "TB-0001"))
        return ids

    ids = rt.db.run_sync(seed)
    return rt, rt.test_channel, ids, clock


async def _say(rt: Runtime, user: str, *steps: str) -> None:
    for step in steps:
        if step.startswith("/"):
            cmd, _, args = step[1:].partition(" ")
            await rt.dispatcher.handle(inbound(user, command=cmd, args=args))
        elif step.startswith(("c:", "eq", "ap:")):
            await rt.dispatcher.handle(inbound(user, payload=step))
        else:
            await rt.dispatcher.handle(inbound(user, text=step))


def _items(rt: Runtime) -> dict[str, EquipmentItem]:
    return rt.db.run_sync(lambda s: {i.code: i for i in s.exec(select(EquipmentItem))})


def _changes(rt: Runtime) -> list[EquipmentChange]:
    return rt.db.run_sync(lambda s: list(s.exec(select(EquipmentChange).order_by(EquipmentChange.id))))


async def _month(rt: Runtime, clock, school_id: int, when: datetime) -> EquipmentBatch | None:
    """The monthly rule, as a scheduler tick runs it."""
    clock.t = when
    rule = rt.registry.rules["equipment.monthly"]
    await rt.dispatcher.run_unit(lambda ctx: reminders.run_rule(ctx, school_id, rule), school_id=school_id)
    await rt.dispatcher.drain()  # the fan-out worker sends the queued notices
    return rt.db.run_sync(lambda s: s.exec(select(EquipmentBatch)).first())


async def test_new_item_move_and_stocktake_approved_by_the_delegate(env):
    rt, ch, ids, clock = env
    # A new item from the chat: a taken code is refused, then a code is given by the assistant.
    await _say(rt, "e", "/thietbi", "c:new", "tb-0001")
    assert "TB-0001" in ch.texts("e")[-1] and "Máy chiếu Epson" in ch.texts("e")[-1]
    await _say(rt, "e", "c:auto", "Bộ tranh Tiếng Việt lớp 1", "Tiếng Việt", "Kho thiết bị", "5", "c:today",
               "c:skip", "c:skip", "c:save")
    new = _items(rt)["TB-0003"]
    assert (new.status, new.quantity) == (ItemStatus.PROPOSED, 0)
    assert [i.code for i in rt.db.run_sync(lambda s: find_items(s, school_id=ids["school"], query="tranh tieng"))] \
        == ["TB-0003"]
    # A move (the whole item) and a stock-take (the counted number).
    await _say(rt, "e", "/thietbi", "ban ghe", "c:moved", "Lớp 1A")
    assert "Lớp 1A" in ch.texts("e")[-1]  # already there: refused
    await _say(rt, "e", "Lớp 2B", "c:today", "c:skip", "c:skip", "c:save")
    await _say(rt, "e", "/thietbi", "TB-0001", "c:stocktake", "0", "c:yesterday", "Không tìm thấy khi kiểm kê",
               "c:skip", "c:save")
    # A loss on top of a stock-take that counted 0 is refused at once (nothing left to lose).
    await _say(rt, "e", "/thietbi", "TB-0001", "c:lost")
    assert "Số lượng tồn đã bằng 0" in ch.texts("e")[-1]
    await _say(rt, "e", "/huy")
    assert [c.kind for c in _changes(rt)] == ["new", "moved", "stocktake"]

    # The principal is away: the vice principal decides the month by delegation.
    rt.db.run_sync(lambda s: s.add(Delegation(school_id=ids["school"], principal_id=ids["p"], delegate_id=ids["v"],
                                              start_date=date(2026, 11, 20), end_date=date(2026, 11, 30))))
    batch = await _month(rt, clock, ids["school"], datetime(2026, 11, 25, 1, 0, tzinfo=UTC))
    assert batch.total == 3
    assert [o for o in ch.sent if o.chat_id == "v" and o.reply.buttons]
    await _say(rt, "t", f"eqb:{batch.id}:all")  # a teacher: refused
    assert _items(rt)["TB-0003"].status == ItemStatus.PROPOSED
    await _say(rt, "v", f"eqb:{batch.id}:all")
    items = _items(rt)
    assert (items["TB-0003"].status, items["TB-0003"].quantity) == (ItemStatus.ACTIVE, 5)
    assert items["TB-0002"].room == "Lớp 2B"
    assert (items["TB-0001"].quantity, items["TB-0001"].status) == (0, ItemStatus.LOST)  # counted 0: lost
    b = rt.db.run_sync(lambda s: s.get(EquipmentBatch, batch.id))
    assert b.status == "decided" and b.by_delegation and b.decided_by == ids["v"]
    assert all(c.by_delegation for c in _changes(rt))
    # Nothing is ever deleted: TB-0001 keeps its record and code.
    assert set(items) == {"TB-0001", "TB-0002", "TB-0003"}


async def test_conflicting_change_is_rejected_automatically_and_author_told(env):
    rt, ch, ids, clock = env
    await _say(rt, "t", "/thietbi", "TB-0001", "c:damaged", "2", "c:today", "c:skip", "c:skip", "c:save")
    await _say(rt, "e", f"eqk:{_changes(rt)[0].id}:ok")
    await _say(rt, "e", "/thietbi", "TB-0001", "c:disposed", "1", "c:today", "c:skip", "c:skip", "c:save")
    # The catalogue changes under them (an --update-stock import, say): only one projector is left.
    def shrink(s):
        item = s.exec(select(EquipmentItem).where(EquipmentItem.code == "TB-0001")).one()
        item.quantity = 1
        s.add(item)
    rt.db.run_sync(shrink)
    batch = await _month(rt, clock, ids["school"], datetime(2026, 11, 25, 1, 0, tzinfo=UTC))
    await _say(rt, "p", f"eqb:{batch.id}:all")
    first, second = _changes(rt)
    assert first.status == "rejected" and "dưới 0" in first.reason
    assert second.status == "approved"
    assert "dưới 0" in ch.texts("t")[-1]  # the teacher learns why
    assert rt.db.run_sync(lambda s: list(audit.events(s, action="equipment.change_conflict")))
    assert _items(rt)["TB-0001"].status == ItemStatus.DISPOSED


async def test_officer_sends_a_report_back_with_a_reason(env, tmp_path):
    rt, ch, ids, clock = env
    await _say(rt, "t", "/thietbi", "ban ghe", "c:lost", "1", "c:today")
    # A photo sent at the note step, its caption the note: both are taken, then the summary.
    pic = rt.media.store_bytes(b"\xff\xd8 a photo of an empty place", kind="photo", mime="image/jpeg")
    await rt.dispatcher.handle(inbound("t", text="Chỗ để bàn trống", files=(pic,)))
    assert "Ảnh: đã đính kèm" in ch.texts("t")[-1]
    await _say(rt, "t", "c:save")
    change = _changes(rt)[0]
    assert change.note == "Chỗ để bàn trống" and change.photo_sha256 == pic.sha256
    await _say(rt, "t", f"eqk:{change.id}:no")  # not hers to decide
    assert _changes(rt)[0].status == "reported"
    await _say(rt, "e", f"eqk:{change.id}:no", "Bàn đã được chuyển sang lớp 1B, không mất")
    assert _changes(rt)[0].status == "rejected"
    assert "không mất" in ch.texts("t")[-1]
    await _say(rt, "e", f"eqk:{change.id}:ok")
    assert "trước đó" in ch.texts("e")[-1] and _changes(rt)[0].status == "rejected"
    batch = await _month(rt, clock, ids["school"], datetime(2026, 11, 25, 1, 0, tzinfo=UTC))
    assert batch is None  # nothing recorded this month
    assert any("không có thay đổi" in t for t in ch.texts("p"))


async def test_repair_request_refused_by_the_principal(env):
    rt, ch, ids, clock = env
    await _say(rt, "t", "/suachua", "may chieu", "c:network", "Xin tháo máy chiếu khỏi mạng để mang đi hội trường",
               "c:skip", "c:send")
    req = rt.db.run_sync(lambda s: s.exec(select(RepairRequest)).one())
    await _say(rt, "p", f"ap:{req.approval_id}:no", "Dùng máy chiếu của hội trường")
    req = rt.db.run_sync(lambda s: s.get(RepairRequest, req.id))
    assert req.status == "rejected"
    assert "Dùng máy chiếu của hội trường" in ch.texts("t")[-1]
    ap = rt.db.run_sync(lambda s: s.get(Approval, req.approval_id))
    assert ap is not None and ap.status == "rejected"
    assert rt.db.run_sync(lambda s: list(audit.events(s, action="equipment.repair_refused")))


def test_stock_arithmetic_never_goes_below_zero():
    s = Stock(5, 2, "Kho", "active")
    assert apply_kind(s, "damaged", 3) == Stock(5, 5, "Kho", "active")
    assert apply_kind(s, "damaged", 4) is None          # only 3 good units
    assert apply_kind(s, "repaired", 3) is None         # only 2 damaged
    assert apply_kind(s, "lost", 4) == Stock(1, 1, "Kho", "active")
    assert apply_kind(s, "disposed", 5) == Stock(0, 0, "Kho", "disposed")
    assert apply_kind(s, "disposed", 6) is None
    assert apply_kind(s, "stocktake", 0) == Stock(0, 0, "Kho", "lost")
    assert apply_kind(Stock(0, 0, "Kho", "lost"), "new", 2) == Stock(2, 0, "Kho", "active")
    assert apply_kind(s, "moved", 0, "kho") is None      # the same room (diacritics / case forgiven)
    assert apply_kind(s, "new", 0) is None


def test_period_parsing():
    settings = {"year_start": "08-01", "hk2_start": "01-16"}
    today = date(2026, 11, 23)
    p = parse_period("HK1 2026-2027", today=today, settings=settings)
    assert p is not None and (p.start, p.end, p.part) == (date(2026, 8, 1), date(2027, 1, 15), "HK1")
    p = parse_period("học kỳ 2 năm học 2026 - 2027", today=today, settings=settings)
    assert p is not None and (p.start, p.end) == (date(2027, 1, 16), date(2027, 7, 31))
    p = parse_period("2025-26", today=today, settings=settings)
    assert p is not None and (p.start, p.end, p.part) == (date(2025, 8, 1), date(2026, 7, 31), "CN")
    p = parse_period("hkii", today=today, settings=settings)
    assert p is not None and p.key == "2026-2027/HK2"
    p = parse_period("cả năm", today=date(2026, 3, 1), settings=settings)
    assert p is not None and p.key == "2025-2026/CN"
    assert parse_period("2026-2028", today=today, settings=settings) is None
    assert parse_period("tháng 11", today=today, settings=settings) is None
    assert parse_period("HK1 2026-2027", today=today, settings={"year_start": "09-05", "hk2_start": "01-20"}).end \
        == date(2027, 1, 19)

