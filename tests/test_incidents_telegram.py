"""Incident reporting end to end through the real python-telegram-bot and the fake Bot API (issue 6):
an urgent report at 02:00 reaches BGH at once, the first acknowledgement wins and every card is
edited, escalation happens once across a restart, the guards' quick path (photo with caption,
voice note), a file over Telegram's download limit, the DOCX to the authority, refusals."""

from __future__ import annotations

import asyncio
import hashlib
import io
from datetime import UTC, datetime

import pytest
from docx import Document
from sqlmodel import col, select

from bot.engine.reminders import in_quiet_hours
from bot.flows.footage.models import Camera
from bot.flows.incidents.models import Incident, IncidentAttachment
from storage import audit
from storage.models import Conversation, Notice, School
from tests.fakes.tg_harness import TgHarness, payloads
from tests.helpers import make_person, make_school

G, GL, P, V, IT, T, E = 2001, 2002, 2003, 2004, 2005, 2006, 2007
NIGHT = datetime(2026, 11, 22, 19, 0, tzinfo=UTC)  # 02:00 on Monday 23/11 in Hà Nội
PHOTO = b"\xff\xd8\xff\xe0 a photo of the fence" * 20
VOICE = b"OggS voice note bytes" * 30

WORKFLOWS = ("delegation", "footage", "incidents", "profile")


@pytest.fixture
def runtime_options() -> dict[str, object]:
    """The real handlers and the workflows an incident meets (footage, delegation, profile)."""
    return {"workflows": WORKFLOWS}


@pytest.fixture
def tg(telegram):
    h = telegram

    def seed(s):
        school = make_school(s)  # TH Ngọc Thụy
        cam = Camera(school_id=school.id or 0, code="cong", name="Cổng chính", unit="Tổ bảo vệ", source="frigate:/nonexistent")
        s.add(cam)
        s.flush()
        return {"guard": make_person(s, school, "Vũ Văn Tuấn", ["guard"], unit="Tổ bảo vệ").id,
                "lead": make_person(s, school, "Bùi Đức Thắng", ["guard_lead"], unit="Tổ bảo vệ").id,
                "principal": make_person(s, school, "Nguyễn Thị Thanh Hương", ["principal"]).id,
                "vp": make_person(s, school, "Trần Văn Minh", ["vice_principal"]).id,
                "it": make_person(s, school, "Đặng Minh Khoa", ["it"]).id,
                "teacher": make_person(s, school, "Nguyễn Thị Vân", ["teacher"], unit="Tổ 1").id,
                "equipment": make_person(s, school, "Ngô Thị Thu Trang", ["equipment"], unit="Tổ 2").id,
                "camera": cam.id, "school": school.id}

    ids = h.seed(seed)
    for key, uid in (("guard", G), ("lead", GL), ("principal", P), ("vp", V), ("it", IT), ("teacher", T),
                     ("equipment", E)):
        h.link(ids[key], uid)
    h.ids = ids  # type: ignore[attr-defined]
    return h


def _incidents(tg: TgHarness) -> list[Incident]:
    return tg.seed(lambda s: list(s.exec(select(Incident).order_by(col(Incident.id)))))


def _events(tg: TgHarness, action: str) -> list:
    return tg.seed(lambda s: list(audit.events(s, action=action)))


async def _report(tg: TgHarness, uid: int, *, kind: str = "security", urgent: bool = True, area: str = "c:a2",
                  text: str = "Có người lạ trèo tường rào phía sau", photo: bool = False) -> Incident:
    """The full /suco path: type → urgency → place → description → (photo) → send."""
    await tg.command(uid, "suco")
    await tg.tap(uid, f"c:{kind}")
    await tg.tap(uid, "c:urgent" if urgent else "c:normal")
    if area:
        await tg.tap(uid, area)
    await tg.send(uid, text)
    if photo:
        await tg.send_photo(uid, PHOTO)
    await tg.tap(uid, "c:send")
    return _incidents(tg)[-1]


async def test_urgent_report_at_2am_reaches_bgh_at_once(tg, clock):
    clock.t = NIGHT
    local = clock.t.astimezone(tg.settings.tz)
    assert local.hour == 2 and in_quiet_hours(tg.settings.quiet_window(), local.time())  # quiet hours are on
    inc = await _report(tg, G, area="c:a0", photo=True)  # Cổng chính: the camera of that name is linked
    assert inc.number == "SC-2026-0001" and inc.urgent and inc.place == "Cổng chính"
    assert inc.camera_id == tg.ids["camera"]
    for uid in (P, V, GL):  # BGH (urgent) and the guard lead (security), no tick needed
        card = await tg.wait_for_message(uid, contains="SC-2026-0001")
        assert "KHẨN CẤP" in card.text and "Cổng chính" in card.text and "Vũ Văn Tuấn" in card.text
        assert {f"ic:{inc.id}:ack", f"ic:{inc.id}:done", f"ic:{inc.id}:up", f"ic:{inc.id}:cam"} <= set(payloads(card))
        photo = await tg.wait_for_message(uid, predicate=lambda m: m.media_kind == "photo")
        assert photo.file.data == PHOTO
    for uid in (IT, T, E):  # not routed
        assert not any("SC-2026-0001" in t for t in tg.texts(uid))
    confirmation = tg.fake.last(G)
    assert "SC-2026-0001" in confirmation.text and "Nguyễn Thị Thanh Hương" in confirmation.text
    ev = _events(tg, "incident.reported")
    assert len(ev) == 1 and ev[0].details["held"] is False


async def test_normal_report_at_night_waits_for_the_morning(tg, clock):
    clock.t = NIGHT
    inc = await _report(tg, G, urgent=False)
    assert not any(inc.number in t for t in tg.texts(GL))
    assert "06:30" in tg.fake.last(G).text and f"ic:{inc.id}:urgent" in payloads(tg.fake.last(G))
    await tg.tick()
    assert not any(inc.number in t for t in tg.texts(GL))
    clock.advance(hours=4, minutes=31)  # 06:31
    await tg.tick()
    card = await tg.wait_for_message(GL, contains=inc.number)
    assert f"ic:{inc.id}:ack" in payloads(card)
    await tg.tick()
    assert len([t for t in tg.texts(GL) if inc.number in t]) == 1


async def test_first_acknowledgement_wins_and_every_card_updates(tg):
    inc = await _report(tg, G)
    for uid in (GL, P, V):
        await tg.wait_for_message(uid, contains=inc.number)
    results = await asyncio.gather(tg.tap(GL, f"ic:{inc.id}:ack"), tg.tap(V, f"ic:{inc.id}:ack"))
    assert len(_events(tg, "incident.acknowledged")) == 1
    after = _incidents(tg)[-1]
    assert after.status == "acknowledged" and after.owner_id in (tg.ids["lead"], tg.ids["vp"])
    owner = "Bùi Đức Thắng" if after.owner_id == tg.ids["lead"] else "Trần Văn Minh"
    loser = results[1] if after.owner_id == tg.ids["lead"] else results[0]
    assert any(owner in m.text for m in loser)  # told who took it
    for uid in (GL, P, V):
        card = next(m for m in tg.messages(uid) if inc.number in m.text and m.method == "sendMessage")
        assert card.edits, f"the card in chat {uid} was not edited"
        assert owner in card.text and f"ic:{inc.id}:ack" not in payloads(card)
    await tg.wait_for_message(G, contains=owner)  # the reporter is told
    # a second tap on a stale card changes nothing
    replies = await tg.tap(P, f"ic:{inc.id}:ack")
    assert any(owner in m.text for m in replies) and len(_events(tg, "incident.acknowledged")) == 1


async def test_escalation_after_timeout_once_across_restart(tg, clock):
    inc = await _report(tg, G)  # urgent, Sân trường
    clock.advance(minutes=9)
    await tg.tick()
    assert _events(tg, "incident.escalated") == []
    clock.advance(minutes=2)
    await tg.tick()
    await tg.fake.wait_until(lambda: len([m for m in tg.messages(P) if inc.number in m.text]) == 2, 5,
                             "the escalation card")
    await tg.restart()
    await tg.tick()
    ev = _events(tg, "incident.escalated")
    assert [e.details["level"] for e in ev] == [1] and ev[0].details["to"] == [tg.ids["principal"]]
    assert len([m for m in tg.messages(P) if inc.number in m.text]) == 2  # the first card + one escalation
    await tg.wait_for_message(G, contains="đã chuyển lên Hiệu trưởng")
    clock.advance(minutes=10)
    await tg.tick()
    await tg.restart()
    clock.advance(minutes=30)
    await tg.tick()
    ev = _events(tg, "incident.escalated")
    assert [e.details["level"] for e in ev] == [1, 2]
    assert sorted(ev[1].details["to"]) == sorted([tg.ids["principal"], tg.ids["vp"]])
    assert len([m for m in tg.messages(V) if inc.number in m.text]) == 2
    assert len(tg.seed(lambda s: list(s.exec(select(Notice).where(Notice.rule == "incidents.urgent_escalation"))))) == 5
    # acknowledging after the escalation updates every card, the escalation cards included
    await tg.tap(V, f"ic:{inc.id}:ack", message_id=tg.messages(V)[-1].message_id)
    for uid in (P, V, GL):
        for m in (m for m in tg.messages(uid) if inc.number in m.text):
            assert f"ic:{inc.id}:ack" not in payloads(m)


async def test_normal_incident_escalates_after_a_day(tg, clock):
    inc = await _report(tg, T, kind="equipment", urgent=False, area="c:a5", text="Máy chiếu phòng 2A hỏng")
    await tg.wait_for_message(E, contains=inc.number)
    assert not any(inc.number in t for t in tg.texts(P))
    clock.advance(hours=23)
    await tg.tick()
    assert not any(inc.number in t for t in tg.texts(P))
    clock.advance(hours=2)  # 10:00 next day, outside quiet hours
    await tg.tick()
    await tg.wait_for_message(P, contains=inc.number)
    assert [e.details["level"] for e in _events(tg, "incident.escalated")] == [1]


async def test_photo_with_caption_opens_a_quick_report(tg):
    replies = await tg.send_photo(G, PHOTO, caption="Cổng phụ bị cạy khóa, khẩn cấp!")
    assert replies and payloads(replies[-1])[:2] == ["c:security", "c:camera"]  # only the type is asked
    replies = await tg.tap(G, "c:security")
    assert "c:send" in payloads(replies[-1])  # urgency, place and description came from the caption
    await tg.tap(G, "c:send")
    inc = _incidents(tg)[-1]
    assert inc.urgent and inc.place == "Cổng phụ" and inc.description == "Cổng phụ bị cạy khóa, khẩn cấp!"
    files = tg.seed(lambda s: list(s.exec(select(IncidentAttachment))))
    assert [(f.kind, f.sha256) for f in files] == [("photo", hashlib.sha256(PHOTO).hexdigest())]
    await tg.wait_for_message(P, contains=inc.number)
    # the menu still answers everyone else's attachments and any idle text
    replies = await tg.send_photo(T, PHOTO, caption="ảnh hoạt động")
    assert any("m:" in p for m in replies for p in payloads(m))
    assert len(_incidents(tg)) == 1
    replies = await tg.send(G, "xin chào")
    assert any(p.startswith("m:") for m in replies for p in payloads(m))


async def test_voice_note_report(tg):
    replies = await tg.send_file(G, "voice", VOICE)
    assert "c:security" in payloads(replies[-1])
    await tg.tap(G, "c:equipment")
    await tg.tap(G, "c:normal")
    replies = await tg.tap(G, "c:a5")  # Phòng học
    assert "c:send" in payloads(replies[-1])  # the voice note is the description
    await tg.tap(G, "c:send")
    inc = _incidents(tg)[-1]
    assert inc.kind == "equipment" and inc.description == "" and inc.place == "Phòng học"
    files = tg.seed(lambda s: list(s.exec(select(IncidentAttachment))))
    assert [(f.kind, f.sha256) for f in files] == [("voice", hashlib.sha256(VOICE).hexdigest())]
    card = await tg.wait_for_message(E, contains=inc.number)
    assert "ghi âm" in card.text
    doc = await tg.wait_for_message(E, predicate=lambda m: m.media_kind is not None)
    assert doc.file.data == VOICE


async def test_file_over_the_download_limit_gets_a_clear_reply(tg):
    big = 25 * 1024 * 1024
    replies = await tg.send_file(G, "video", None, file_size=big, caption="Camera sân trường bị che")
    text = "\n".join(m.text for m in replies)
    assert "25 MB" in text and "20 MB" in text and "Telegram" in text
    assert "c:security" in payloads(replies[-1])  # the report is open all the same
    await tg.tap(G, "c:camera")
    await tg.tap(G, "c:normal")
    await tg.tap(G, f"c:cam{tg.ids['camera']}")
    await tg.tap(G, "c:now")
    replies = await tg.send_file(G, "video", None, file_size=big)  # again, inside the flow
    assert "25 MB" in "\n".join(m.text for m in replies)
    await tg.tap(G, "c:send")
    inc = _incidents(tg)[-1]
    assert inc.kind == "camera" and inc.camera_id == tg.ids["camera"] and inc.occurred_at is not None
    assert tg.seed(lambda s: list(s.exec(select(IncidentAttachment)))) == []


async def test_pass_up_sends_the_principal_a_docx_with_the_facts(tg):
    inc = await _report(tg, G, area="c:a0", text="Đối tượng lạ đập phá camera cổng chính", photo=True)
    await tg.wait_for_message(GL, contains=inc.number)
    await tg.tap(GL, f"ic:{inc.id}:ack")
    await tg.tap(GL, f"ic:{inc.id}:up")
    await tg.send(GL, "Có dấu hiệu phá hoại tài sản, cần công an phường hỗ trợ")
    msg = await tg.wait_for_message(P, predicate=lambda m: m.media_kind == "document")
    assert msg.file.data[:2] == b"PK"  # a zip container, as every .docx
    doc = Document(io.BytesIO(msg.file.data))
    cells = [c.text for t in doc.tables for row in t.rows for c in row.cells]
    body = "\n".join([p.text for p in doc.paragraphs] + cells)
    for needle in ("CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", "Độc lập - Tự do - Hạnh phúc",
                   "TRƯỜNG TIỂU HỌC NGỌC THỤY", "Số: 01/BC-THNT", "ngày 23 tháng 11 năm 2026", "BÁO CÁO",
                   "SC-2026-0001", "Cổng chính", "Đối tượng lạ đập phá camera cổng chính", "Vũ Văn Tuấn",
                   "Bùi Đức Thắng", "cần công an phường hỗ trợ", "Kính gửi: Phòng Giáo dục và Đào tạo",
                   hashlib.sha256(PHOTO).hexdigest(), "Nơi nhận", "HIỆU TRƯỞNG", "Nguyễn Thị Thanh Hương"):
        assert needle in body, needle
    assert doc.styles["Normal"].font.name == "Times New Roman"
    runs = [r for p in doc.paragraphs for r in p.runs] + [r for t in doc.tables for row in t.rows
                                                        for c in row.cells for p in c.paragraphs for r in p.runs]
    assert runs and all(r.font.name in (None, "Times New Roman") for r in runs)
    await tg.wait_for_message(G, contains="Bùi Đức Thắng", predicate=lambda m: "⬆️" in m.text)
    assert len(_events(tg, "incident.passed_up")) == 1
    replies = await tg.tap(V, f"ic:{inc.id}:up")  # already passed up: told, nothing repeated
    assert any("Bùi Đức Thắng" in m.text for m in replies) and len(_events(tg, "incident.passed_up")) == 1


async def test_people_outside_the_routing_cannot_acknowledge(tg):
    inc = await _report(tg, G)
    await tg.wait_for_message(GL, contains=inc.number)
    for uid in (E, T, G):  # equipment officer and teacher were not sent it; the reporter does not acknowledge
        await tg.command(uid, "menu")
        replies = await tg.tap(uid, f"ic:{inc.id}:ack", message_id=tg.fake.last(uid).message_id)
        assert replies and "SC-2026-0001" not in "".join(m.text for m in replies if uid != G)
    assert _incidents(tg)[-1].status == "open"
    assert len(_events(tg, "incident.refused")) == 3
    replies = await tg.tap(E, "ic:99999:ack", message_id=tg.fake.last(E).message_id)  # a forged id
    assert replies and _incidents(tg)[-1].status == "open"


async def test_account_misuse_principal_orders_the_lock(tg):
    await tg.command(T, "suco")
    await tg.tap(T, "c:it_account")
    await tg.send(T, "Thư công vụ vannt@ngocthuy.edu.vn")
    replies = await tg.tap(T, "c:normal")  # no place asked for IT security
    assert "c:a0" not in payloads(replies[-1])
    await tg.send(T, "Có người đăng nhập hộp thư của tôi lúc nửa đêm")
    await tg.tap(T, "c:send")
    inc = _incidents(tg)[-1]
    await tg.wait_for_message(IT, contains=inc.number)
    card = await tg.wait_for_message(P, contains=inc.number)
    assert f"ic:{inc.id}:lock" in payloads(card)
    it_card = await tg.wait_for_message(IT, contains=inc.number)
    assert f"ic:{inc.id}:lock" not in payloads(it_card)
    await tg.tap(IT, f"ic:{inc.id}:lock")  # not the principal: refused
    assert _incidents(tg)[-1].lock_ordered_at is None
    await tg.tap(P, f"ic:{inc.id}:lock")
    await tg.wait_for_message(IT, contains="vannt@ngocthuy.edu.vn", predicate=lambda m: "🔒" in m.text and not payloads(m))
    ev = _events(tg, "incident.account_lock_ordered")
    assert len(ev) == 1 and ev[0].details["account"] == "Thư công vụ vannt@ngocthuy.edu.vn"
    await tg.wait_for_message(T, contains="khóa")


async def test_resolve_with_note_footage_button_and_lists(tg):
    inc = await _report(tg, G, area="c:a0")
    await tg.wait_for_message(GL, contains=inc.number)
    await tg.tap(GL, f"ic:{inc.id}:cam")  # the footage workflow starts pre-filled
    conv = tg.seed(lambda s: s.exec(select(Conversation).where(Conversation.chat_id == str(GL))).one())
    local = (inc.created_at.astimezone(tg.settings.tz))
    assert conv.flow == "footage" and conv.data["camera_id"] == tg.ids["camera"]
    assert conv.data["date"] == local.date().isoformat() and len(conv.data["time"]) == 5
    assert conv.state == "duration"  # camera, day and time taken from the incident: only the length is asked
    replies = await tg.command(P, "suco_dangmo")
    assert inc.number in replies[-1].text and "phút" in replies[-1].text
    await tg.tap(GL, f"ic:{inc.id}:done", message_id=next(m for m in tg.messages(GL) if inc.number in m.text).message_id)
    await tg.send(GL, "Đã mời người lạ ra khỏi trường, báo công an phường")
    after = _incidents(tg)[-1]
    assert after.status == "resolved" and after.owner_id == tg.ids["lead"]
    assert "báo công an phường" in after.resolution_note
    await tg.wait_for_message(G, contains="báo công an phường")
    replies = await tg.command(G, "suco_cuatoi")
    assert inc.number in replies[-1].text
    replies = await tg.command(P, "suco_dangmo")
    assert inc.number not in replies[-1].text


async def test_outage_notice_reaches_everyone_once(tg):
    await tg.command(IT, "ngungdichvu")
    await tg.tap(IT, "c:s0")
    await tg.send(IT, "24/11 8h00")
    await tg.send(IT, "10h30")
    await tg.send(IT, "Nâng cấp máy chủ thư")
    await tg.tap(IT, "c:send")
    for uid in (G, GL, P, V, T, E):
        m = await tg.wait_for_message(uid, contains="Thư điện tử công vụ")
        assert "08:00" in m.text and "10:30" in m.text and "24/11/2026" in m.text and "Nâng cấp máy chủ thư" in m.text
    rows = tg.seed(lambda s: list(s.exec(select(Notice).where(Notice.rule == "outage"))))
    assert len(rows) == 6 == len({n.key for n in rows}) and tg.ids["it"] not in {n.person_id for n in rows}
    await tg.tap(IT, "c:send")  # a stale tap sends nothing again
    assert len(tg.seed(lambda s: list(s.exec(select(Notice).where(Notice.rule == "outage"))))) == 6


async def test_school_settings_change_areas_and_routing(tg):
    def change(s):
        school = s.get(School, tg.ids["school"])
        school.settings = {**school.settings, "incidents": {
            "areas": ["Khu A", "Khu B"], "routes": {"security": [f"person:{tg.ids['it']}"]}}}
        s.add(school)
    tg.seed(change)
    inc = await _report(tg, T, urgent=False, area="c:a1", text="Cửa sổ khu B bị vỡ")
    assert inc.place == "Khu B"
    await tg.wait_for_message(IT, contains=inc.number)
    assert not any(inc.number in t for t in tg.texts(GL) + tg.texts(P))


async def test_night_report_made_urgent_by_the_reporter_goes_out_at_once(tg, clock):
    clock.t = NIGHT
    inc = await _report(tg, G, urgent=False)
    assert not any(inc.number in t for t in tg.texts(P))
    await tg.tap(G, f"ic:{inc.id}:urgent")
    for uid in (GL, P, V):
        await tg.wait_for_message(uid, contains=inc.number)
    assert _incidents(tg)[-1].urgent
    clock.advance(hours=4, minutes=31)
    await tg.tick()  # the morning release finds nothing held any more
    assert len([t for t in tg.texts(GL) if inc.number in t]) == 1
    replies = await tg.tap(GL, f"ic:{inc.id}:urgent", message_id=tg.messages(GL)[-1].message_id)
    assert replies and len(_events(tg, "incident.made_urgent")) == 1  # only the reporter (or BGH) may


async def test_shared_location_is_the_place(tg):
    await tg.command(T, "suco")
    await tg.tap(T, "c:other")
    await tg.tap(T, "c:normal")
    replies = await tg.send_location(T, 21.0481, 105.8779)
    assert "c:send" not in payloads(replies[-1])  # the description is still missing
    await tg.send(T, "Cây đổ chắn lối vào trường")
    await tg.tap(T, "c:send")
    inc = _incidents(tg)[-1]
    assert inc.latitude is not None and inc.longitude is not None and inc.place == ""
    assert (round(inc.latitude, 4), round(inc.longitude, 4)) == (21.0481, 105.8779)
    card = await tg.wait_for_message(GL, contains=inc.number)
    assert "maps.google.com/?q=21.048100,105.877900" in card.text
