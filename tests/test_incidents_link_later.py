"""Incident cards for people who have not linked the assistant yet (issue #20): an urgent report
reaches a vice principal and a head of department who link only later — each gets the card, as the
incident stands then and with its attachments, once, when they link; the reporter is told who is
still to link and the IT team is told once per person who must link and how. Through the real
python-telegram-bot and the fake Bot API, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlmodel import col, select

from bot.flows.incidents.models import Incident
from storage import audit
from tests.fakes.tg_harness import TgHarness, payloads
from tests.helpers import make_person, make_school

T, E, P, V, D, IT = 3001, 3002, 3003, 3004, 3005, 3006
VP_PHONE, HEAD_PHONE = "+84912300004", "+84912300005"
PHOTO = b"\xff\xd8\xff\xe0 a photo of the broken projector" * 20


@pytest.fixture
def runtime_options() -> dict[str, object]:
    return {"workflows": ("delegation", "footage", "incidents", "profile")}


@pytest.fixture
def tg(telegram):
    def seed(s):
        school = make_school(s)
        return {"teacher": make_person(s, school, "Nguyễn Thị Vân", ["teacher"], unit="Tổ 1").id,
                "equipment": make_person(s, school, "Ngô Thị Thu Trang", ["equipment"], unit="Tổ 2").id,
                "principal": make_person(s, school, "Nguyễn Thị Thanh Hương", ["principal"]).id,
                "vp": make_person(s, school, "Trần Văn Minh", ["vice_principal"], phone=VP_PHONE).id,
                "head": make_person(s, school, "Phạm Thị Lan", ["dept_head", "teacher"], unit="Tổ 1",
                                    phone=HEAD_PHONE).id,
                "it": make_person(s, school, "Đặng Minh Khoa", ["it"]).id}

    ids = telegram.seed(seed)
    for key, uid in (("teacher", T), ("equipment", E), ("principal", P), ("it", IT)):
        telegram.link(ids[key], uid)  # the vice principal and the head of department have not linked
    telegram.ids = ids  # type: ignore[attr-defined]
    return telegram


def _incident(tg: TgHarness) -> Incident:
    return tg.seed(lambda s: s.exec(select(Incident).order_by(col(Incident.id).desc())).first())


async def _urgent_equipment_report(tg: TgHarness) -> Incident:
    await tg.command(T, "suco")
    await tg.tap(T, "c:equipment")
    await tg.tap(T, "c:urgent")
    await tg.send(T, "Phòng 2A")
    await tg.send(T, "Máy chiếu phòng 2A bốc khói")
    await tg.send_photo(T, PHOTO)
    await tg.tap(T, "c:send")
    return _incident(tg)


def _cards(tg: TgHarness, uid: int, inc: Incident) -> list:
    return [m for m in tg.messages(uid) if inc.number in m.text and "KHẨN CẤP" in m.text and m.method == "sendMessage"]


async def test_an_urgent_report_reaches_the_vice_principal_and_the_head_of_department_when_they_link(tg):
    inc = await _urgent_equipment_report(tg)
    assert inc.urgent and set(inc.recipient_ids) == {tg.ids["equipment"], tg.ids["head"], tg.ids["principal"],
                                                     tg.ids["vp"]}
    for uid in (E, P):
        await tg.wait_for_message(uid, contains=inc.number)
    told = tg.fake.last(T).text
    assert "Trần Văn Minh (Phó hiệu trưởng)" in told and "Phạm Thị Lan" in told
    assert "sẽ nhận được ngay khi liên kết" in told
    it_msgs = [t for t in tg.texts(IT) if "chưa liên kết" in t]
    assert len(it_msgs) == 2 and any("Trần Văn Minh" in t for t in it_msgs) and any("Phạm Thị Lan" in t for t in it_msgs)

    await tg.share_contact(V, VP_PHONE)
    card = await tg.wait_for_message(V, contains=inc.number)
    assert "KHẨN CẤP" in card.text and "Máy chiếu phòng 2A bốc khói" in card.text
    assert {f"ic:{inc.id}:ack", f"ic:{inc.id}:done", f"ic:{inc.id}:up"} <= set(payloads(card))
    photo = await tg.wait_for_message(V, predicate=lambda m: m.media_kind == "photo")
    assert photo.file.data == PHOTO

    await tg.share_contact(D, HEAD_PHONE)
    await tg.wait_for_message(D, contains=inc.number)
    await tg.tap(D, f"ic:{inc.id}:ack")  # the kept card's buttons work
    after = _incident(tg)
    assert after.status == "acknowledged" and after.owner_id == tg.ids["head"]
    await tg.wait_for_message(T, contains="Phạm Thị Lan")

    await tg.share_contact(V, VP_PHONE)  # again: already linked
    await tg.command(V, "start")
    await tg.tick()  # the scheduler's sweep finds nothing left
    assert len(_cards(tg, V, inc)) == 1 and len(_cards(tg, D, inc)) == 1
    vp_card = _cards(tg, V, inc)[0]
    assert vp_card.edits and "Phạm Thị Lan" in vp_card.text  # edited like every card: who took it
    assert f"ic:{inc.id}:ack" not in payloads(vp_card)
    assert len([t for t in tg.texts(IT) if "chưa liên kết" in t]) == 2
    ev = tg.seed(lambda s: list(audit.events(s, action="incident.delivered_on_link")))
    assert sorted(e.details["incidents"] for e in ev) == [[inc.number], [inc.number]]


async def test_a_report_nobody_could_receive_yet_tells_the_reporter_who_must_link(tg):
    def unlink_all_but_the_teacher(s):
        from storage.models import ChannelIdentity

        for ident in s.exec(select(ChannelIdentity).where(ChannelIdentity.external_id.in_([str(E), str(P)]))):
            ident.active = False
            s.add(ident)

    tg.seed(unlink_all_but_the_teacher)
    inc = await _urgent_equipment_report(tg)
    told = tg.fake.last(T).text
    assert inc.number in told and "đang chờ" in told and "liên kết tài khoản" in told
    assert "Nguyễn Thị Thanh Hương (Hiệu trưởng)" in told
    assert len([t for t in tg.texts(IT) if "chưa liên kết" in t]) == 4
