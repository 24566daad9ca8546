"""Zalo Official Account adapter end to end: a fake OA API on 127.0.0.1, the real aiohttp client and
server, the real dispatcher, flows and database (SQLite, and PostgreSQL with TEST_DATABASE_URL)."""

from __future__ import annotations

import asyncio
import inspect
import io
import json
import logging
import os
from datetime import timedelta

import aiohttp
import pytest
from sqlmodel import select

from bot.channels.zalo_common import html_to_plain
from bot.channels.zalo_oa import ZaloOAChannel, ZaloOAError, can_reach, reach_window
from bot.core import Button, Outbound, OutFile, Reply, keyboard
from bot.i18n import Translator
from bot.runtime import Runtime
from storage import audit
from storage.models import ChannelIdentity, Conversation, KeyValue, Person
from storage.people import new_invite
from tests.fakes.zalo_servers import FakeZaloOA
from tests.helpers import make_person, make_school

VI = Translator("vi")


def plain(msgid: str, **kw: object) -> str:
    return html_to_plain(VI.t(msgid, **kw))


@pytest.fixture
async def fake():
    server = await FakeZaloOA().start()
    yield server
    await server.stop()


async def _start(settings, clock, fake: FakeZaloOA, **over: object) -> tuple[Runtime, ZaloOAChannel, str]:
    values = {"zalo_oa_app_id": fake.app_id, "zalo_oa_secret_key": fake.oa_secret_key,
              "zalo_oa_app_secret": fake.app_secret, "zalo_oa_access_token": fake.access_token,
              "zalo_oa_refresh_token": fake.refresh_token, "zalo_oa_api_base": fake.base_url,
              "zalo_oa_oauth_base": fake.base_url, "web_chat_enabled": False, "telegram_bot_token": ""}
    values.update(over)
    rt = Runtime(settings.model_copy(update=values), clock=clock)
    rt.build_channels()
    (ch,) = [c for c in rt.channels if isinstance(c, ZaloOAChannel)]
    kwargs = {"scheduler": False} if "scheduler" in inspect.signature(rt.start).parameters else {}
    await rt.start(**kwargs)
    url = f"http://127.0.0.1:{rt.web_port}{rt.settings.zalo_oa_webhook_path}"
    return rt, ch, url


@pytest.fixture
async def oa(settings, clock, fake):
    rt, ch, url = await _start(settings, clock, fake)
    yield rt, ch, url
    await rt.stop()


def _seed(rt: Runtime, clock) -> dict[str, object]:
    def go(s):
        school = make_school(s)
        teacher = make_person(s, school, "Nguyễn Thị Vân", ["teacher"], unit="Tổ 1")
        code = new_invite(s, person=teacher, ttl=timedelta(hours=72), now=clock.now())
        return {"teacher": teacher.id, "code": code, "school": school.id}
    return rt.db.run_sync(go)


async def _say(fake: FakeZaloOA, ch: ZaloOAChannel, url: str, user: str, text: str, **kw: object) -> int:
    status = await fake.post_event(url, fake.event("user_send_text", user, text=text, **kw))  # type: ignore[arg-type]
    await ch.idle()
    return status


async def _link(rt, ch, fake, url, clock, user: str = "zu100") -> dict[str, object]:
    ids = _seed(rt, clock)
    assert await _say(fake, ch, url, user, str(ids["code"]).lower()) == 200
    return ids


async def test_link_by_code_menu_buttons_and_tap_starts_profile(oa, fake, clock):
    rt, ch, url = oa
    ids = _seed(rt, clock)
    # "follow" acts as /start: the linking instructions, with the Zalo way (the code) spelled out.
    assert await fake.post_event(url, fake.event("follow", "zu100")) == 200
    await ch.idle()
    first = fake.messages[-1]
    assert first.user_id == "zu100"
    assert plain("On Zalo, link your account by sending the link code the school office gave you "
                 "(for example K7QX-M2PD-9TRA).") in first.text
    assert "<b>" not in first.text
    # The code (typed in lower case, as people do) links the account.
    assert await _say(fake, ch, url, "zu100", f" {str(ids['code']).lower()} ") == 200
    ident = rt.db.run_sync(lambda s: s.exec(select(ChannelIdentity).where(ChannelIdentity.channel == "zalo_oa")).one())
    assert ident.person_id == ids["teacher"] and ident.external_id == "zu100"
    assert any("Nguyễn Thị Vân" in t for t in fake.texts("zu100"))
    menu_at = max(i for i, m in enumerate(fake.messages) if m.text.startswith(plain("What would you like to do?")))
    assert fake.messages[menu_at].text.startswith("Anh/chị muốn làm gì?")
    pages = fake.messages[menu_at:]  # more than 5 choices: further pages follow, ≤ 5 buttons each
    assert all(0 < len(m.buttons) <= 5 for m in pages)
    payloads = [b["payload"] for m in pages for b in m.buttons]
    assert "m:profile" in payloads and all(b["type"] == "oa.query.hide" for m in pages for b in m.buttons)
    # A tap comes back as text carrying the payload: /hoso starts, answered in Vietnamese.
    assert await _say(fake, ch, url, "zu100", "m:profile") == 200
    card = fake.messages[-1]
    assert "Hồ sơ của anh/chị" in card.text and "Nguyễn Thị Vân" in card.text and "<b>" not in card.text
    assert [b["payload"] for b in card.buttons] == ["c:unit", "c:email", "c:lang", "c:done"]
    conv = rt.db.run_sync(lambda s: s.exec(select(Conversation).where(Conversation.chat_id == "zu100")).one())
    assert conv.flow == "profile"
    # Typing a button's label works too (diacritics and case forgiven); the e-mail prompt follows.
    await _say(fake, ch, url, "zu100", "SỬA email")
    assert fake.messages[-1].text == plain("Send your e-mail address (for example vannt@school.edu.vn):")
    await _say(fake, ch, url, "zu100", "van.nt@ngocthuy.edu.vn")
    p = rt.db.run_sync(lambda s: s.get(Person, ids["teacher"]))
    assert p.email == "van.nt@ngocthuy.edu.vn"


async def test_forged_signature_and_malformed_body_are_refused(oa, fake, clock):
    rt, ch, url = oa
    ids = _seed(rt, clock)
    event = fake.event("user_send_text", "zu200", text=str(ids["code"]))
    raw = json.dumps(event).encode()
    forged = fake.sign(raw + b" ", event["timestamp"])  # signature of other bytes
    assert await fake.post_event(url, event, raw=raw, signature=forged) == 403
    assert await fake.post_event(url, event, raw=raw, signature="") == 403
    # Re-serialised body (same JSON, other bytes) with the original signature: refused too.
    other = json.dumps(event, indent=1).encode()
    assert await fake.post_event(url, event, raw=other, signature=fake.sign(raw, event["timestamp"])) == 403
    async with aiohttp.ClientSession() as http, http.post(
            url, data=b"{not json", headers={"X-ZEvent-Signature": "mac=00"}) as resp:
        assert resp.status == 400
    await ch.idle()
    assert rt.dispatcher.processed == 0 and fake.messages == []
    n = rt.db.run_sync(lambda s: len(s.exec(select(ChannelIdentity)).all()))
    assert n == 0
    # The genuine one (without the "mac=" prefix) goes through.
    assert await fake.post_event(url, event, raw=raw, mac_prefix=False) == 200
    await ch.idle()
    assert rt.dispatcher.processed == 1


async def test_duplicate_msg_id_processed_once_and_echo_ignored(oa, fake, clock):
    rt, ch, url = oa
    await _link(rt, ch, fake, url, clock)
    before = len(fake.messages)
    event = fake.event("user_send_text", "zu100", text="/hoso", msg_id="dup-77")
    assert await fake.post_event(url, event) == 200
    assert await fake.post_event(url, event) == 200
    await ch.idle()
    # A restarted process (empty memory) still drops it: the database remembers the update.
    ch._seen.clear()
    assert await fake.post_event(url, event) == 200
    await ch.idle()
    assert len(fake.messages) == before + 1
    echo = fake.event("oa_send_text", "oa-1", text="m:profile")
    echo["recipient"] = {"id": "zu100"}
    processed = rt.dispatcher.processed
    assert await fake.post_event(url, echo) == 200
    await ch.idle()
    assert rt.dispatcher.processed == processed and len(fake.messages) == before + 1


async def test_token_refresh_while_two_sends_race(oa, fake):
    rt, ch, _url = oa
    fake.expire_token()
    fake.stale_barrier = 2  # both sends must reach the server with the old token before either is answered
    outs = [Outbound("zalo_oa", f"zu{i}", Reply(f"Thông báo {i}")) for i in (1, 2)]
    ids = await asyncio.gather(*(ch.send(o) for o in outs))
    assert all(ids) and len(set(ids)) == 2
    assert fake.refresh_calls == 1 and ch.refresh_count == 1
    assert len(fake.refused_tokens) == 2
    assert sorted(fake.texts()) == ["Thông báo 1", "Thông báo 2"]
    kv = rt.db.run_sync(lambda s: {k: s.get(KeyValue, k).value for k in
                                   ("zalo_oa.access_token", "zalo_oa.refresh_token", "zalo_oa.expires_at")})
    assert kv["zalo_oa.access_token"] == fake.access_token == "ACCESS-2"
    assert kv["zalo_oa.refresh_token"] == fake.refresh_token == "REFRESH-2"
    assert float(kv["zalo_oa.expires_at"]) > 0


async def test_persisted_pair_preferred_at_start_and_216_retried_once(settings, clock, fake):
    rt, ch, _url = await _start(settings, clock, fake)
    try:
        fake.expire_token()
        assert await ch.send(Outbound("zalo_oa", "zu1", Reply("một"))) is not None
        assert fake.refresh_calls == 1
    finally:
        await rt.stop()
    # A new process still configured with the spent environment pair must use the stored one.
    rt2, ch2, _ = await _start(settings, clock, fake, zalo_oa_access_token="ACCESS-1",
                               zalo_oa_refresh_token="REFRESH-1")
    try:
        assert ch2.access_token == fake.access_token == "ACCESS-2"
        assert await ch2.send(Outbound("zalo_oa", "zu1", Reply("hai"))) is not None
        assert fake.refresh_calls == 1
        # -216 even after a refresh: exactly one refresh and one retry, then a clear error (no loop).
        fake.force_216 = 5
        calls = fake.send_calls
        with pytest.raises(ZaloOAError) as err:
            await ch2.send(Outbound("zalo_oa", "zu1", Reply("ba")))
        assert err.value.code == -216
        assert fake.refresh_calls == 2 and fake.send_calls == calls + 2
        # -216 once: refreshed, retried, delivered.
        fake.force_216 = 1
        assert await ch2.send(Outbound("zalo_oa", "zu1", Reply("bốn"))) is not None
        assert fake.refresh_calls == 3 and fake.texts()[-1] == "bốn"
    finally:
        await rt2.stop()


async def test_long_text_split_under_2000(oa, fake):
    _rt, ch, _url = oa
    para = "Kính gửi quý thầy cô, " + "nhà trường thông báo lịch kiểm tra cuối kỳ. " * 30
    text = "\n\n".join(f"{i}. {para}" for i in range(6))
    assert len(text) > 6000
    await ch.send(Outbound("zalo_oa", "zu9", Reply(text)))
    parts = fake.texts("zu9")
    assert len(parts) >= 4 and all(0 < len(p) <= 2000 for p in parts)
    assert " ".join(" ".join(parts).split()) == " ".join(text.split())


async def test_seven_buttons_paged_and_numbers_resolve(oa, fake, clock):
    rt, ch, url = oa
    await _link(rt, ch, fake, url, clock)
    pid = rt.db.run_sync(lambda s: s.exec(select(Person)).one().id)
    buttons = [Button(f"Lựa chọn {i}", f"c:x{i}") for i in range(1, 7)] + [Button("Hồ sơ", "m:profile")]
    start = len(fake.messages)
    await ch.send(Outbound("zalo_oa", "zu100", Reply("<b>Chọn một mục</b>", buttons=keyboard(*buttons, per_row=2)),
                           pid))
    sent = fake.messages[start:]
    assert [len(m.buttons) for m in sent] == [5, 2]
    assert sent[0].text.startswith("Chọn một mục") and "7. Hồ sơ" in sent[0].text
    assert [b["payload"] for m in sent for b in m.buttons] == [b.payload for b in buttons]
    # "7" typed by the person resolves to the seventh choice: /hoso starts.
    await _say(fake, ch, url, "zu100", "7")
    assert "Hồ sơ của anh/chị" in fake.messages[-1].text
    # The menu survives a restart (kept in the database): with the memory gone, "2" still means c:email.
    ch.menus._menus.clear()
    await _say(fake, ch, url, "zu100", "2")
    assert fake.messages[-1].text == plain("Send your e-mail address (for example vannt@school.edu.vn):")
    # The e-mail prompt has no choices: a "1" now is text for the step, not a stale menu choice.
    await _say(fake, ch, url, "zu100", "1")
    assert fake.messages[-1].text == plain("That does not look like an e-mail address. Please send it again, "
                                           "for example vannt@school.edu.vn.")


async def test_image_attachment_downloaded(oa, fake, clock):
    rt, ch, url = oa
    await _link(rt, ch, fake, url, clock)
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(buf, format="JPEG")
    data = buf.getvalue()
    src = fake.file_url("anh.jpg", data, "image/jpeg")
    event = fake.event("user_send_image", "zu100", attachments=[{"type": "image", "payload": {"url": src}}])
    assert await fake.post_event(url, event) == 200
    await ch.idle()
    import hashlib

    sha = hashlib.sha256(data).hexdigest()
    stored = list((rt.settings.media_dir / "inbox").rglob(f"{sha}*"))
    assert stored and stored[0].read_bytes() == data
    expected = plain("I received your attachment, but no workflow is open. Choose what it is for first.")
    assert any(m.text.startswith(expected) for m in fake.messages[-3:])  # with the menu's pages after it


async def test_outbound_files_image_document_and_video_link(oa, fake, clock, tmp_path):
    rt, ch, url = oa
    await _link(rt, ch, fake, url, clock)
    pid = rt.db.run_sync(lambda s: s.exec(select(Person)).one().id)
    from PIL import Image

    big = tmp_path / "big.png"
    Image.frombytes("RGB", (1400, 1400), os.urandom(1400 * 1400 * 3)).save(big)
    assert big.stat().st_size > 1024 * 1024
    await ch.send(Outbound("zalo_oa", "zu100", Reply("Ảnh", file=OutFile("photo", str(big))), pid))
    img = fake.uploads[-1]
    assert img["kind"] == "image" and img["size"] <= 1024 * 1024 and img["content_type"] == "image/jpeg"
    att = fake.messages[-2].message["attachment"]
    assert att["payload"]["template_type"] == "media"

    pdf = tmp_path / "bien-ban.pdf"
    pdf.write_bytes(b"%PDF-1.4\n" + b"0" * 5000)
    await ch.send(Outbound("zalo_oa", "zu100", Reply("Biên bản", file=OutFile("document", str(pdf))), pid))
    assert fake.uploads[-1]["kind"] == "file" and fake.uploads[-1]["size"] == pdf.stat().st_size
    assert any(m.message.get("attachment", {}).get("type") == "file" for m in fake.messages)

    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(4000))
    uploads = len(fake.uploads)
    await ch.send(Outbound("zalo_oa", "zu100", Reply("Đoạn video", file=OutFile("video", str(video))), pid))
    assert len(fake.uploads) == uploads  # not uploaded: offered as a link
    link_msg = next(m for m in reversed(fake.messages) if "/zalo/dl/" in m.text)
    link = next(w for w in link_msg.text.split() if "/zalo/dl/" in w)
    async with aiohttp.ClientSession() as http, http.get(link) as resp:
        assert resp.status == 200
        assert await resp.read() == video.read_bytes()
    async with aiohttp.ClientSession() as http, http.get(link[:-3] + "xyz") as resp:
        assert resp.status == 404
    events = rt.db.run_sync(lambda s: list(audit.events(s, action="media.download")))
    assert len(events) == 1 and events[0].actor_id == pid and events[0].channel == "zalo_oa"
    assert events[0].subject == "file:clip.mp4"


async def test_typed_payload_from_unlinked_user_gets_only_link_instructions(oa, fake, clock):
    rt, ch, url = oa
    _seed(rt, clock)
    await _say(fake, ch, url, "stranger", "m:profile")
    await _say(fake, ch, url, "stranger", "ap:1:ok")
    texts = fake.texts("stranger")
    expected = plain("You are not linked to a school yet, so I cannot help with that. Tap the button below to "
                     "share your phone number, or send the link code the school office gave you.")
    assert len(texts) == 2 and all(t.startswith(expected) for t in texts)
    assert rt.db.run_sync(lambda s: s.exec(select(Conversation)).all()) == []
    assert rt.db.run_sync(lambda s: s.exec(select(ChannelIdentity)).all()) == []


async def test_window_closed_is_reported_not_raised(oa, fake, clock, caplog):
    rt, ch, url = oa
    await _link(rt, ch, fake, url, clock)
    fake.window_closed.add("zu100")
    with caplog.at_level(logging.WARNING):
        assert await ch.send(Outbound("zalo_oa", "zu100", Reply("Nhắc việc"))) is None
    assert ch.window_closed == ["zu100"] and "window closed" in caplog.text
    ident = rt.db.run_sync(lambda s: s.exec(select(ChannelIdentity)).one())
    now = clock.now()
    assert reach_window(ident.last_seen_at, now) == "free" and can_reach(ident, now)
    assert reach_window(ident.last_seen_at, now + timedelta(days=3)) == "consult"
    assert not ch.can_reach(ident, now + timedelta(days=8))
    assert fake.access_token not in caplog.text


async def test_approval_decided_by_button_and_typed_payload_of_others_refused(oa, fake, clock):
    rt, ch, url = oa
    from bot.engine import approvals
    from storage.models import Approval

    def seed(s):
        school = make_school(s)
        return {"teacher": make_person(s, school, "Nguyễn Thị Vân", ["teacher"], link="zt", channel="zalo_oa").id,
                "principal": make_person(s, school, "Trần Văn Đức", ["principal"], link="zp", channel="zalo_oa").id}
    ids = rt.db.run_sync(seed)
    out: dict[str, int] = {}

    def ask(ctx):
        out["id"] = approvals.request(ctx, kind="test", subject="test:1", title="Footage request",
                                      fields=[("Camera", "Cổng chính")],
                                      stages=[approvals.StageSpec(role="principal")]).id
    await rt.dispatcher.run_unit(ask, person_id=ids["teacher"])
    ap = out["id"]
    card = next(m for m in fake.messages if m.user_id == "zp" and m.buttons)
    assert [b["payload"] for b in card.buttons] == [f"ap:{ap}:ok", f"ap:{ap}:no", f"ap:{ap}:note"]
    # The requester types the principal's payload by hand: refused, nothing decided.
    await _say(fake, ch, url, "zt", f"ap:{ap}:ok")
    assert rt.db.run_sync(lambda s: s.get(Approval, ap).status) == "pending"
    # The principal taps "Approve" (the payload comes back as text): decided once.
    await _say(fake, ch, url, "zp", f"ap:{ap}:ok")
    assert rt.db.run_sync(lambda s: s.get(Approval, ap).status) == "approved"
    assert any("Trần Văn Đức" in t for t in fake.texts("zt"))
    # Zalo cannot edit: the updated card arrives as a new message, without buttons.
    last_to_principal = [m for m in fake.messages if m.user_id == "zp"][-1]
    assert "Trần Văn Đức" in last_to_principal.text and not last_to_principal.buttons
    decided = rt.db.run_sync(lambda s: list(audit.events(s, action="approval.decided")))
    assert len(decided) == 1 and decided[0].actor_id == ids["principal"]


async def test_link_by_phone_shared_through_request_user_info(settings, clock, fake):
    rt, ch, url = await _start(settings, clock, fake, zalo_oa_request_user_info=True)
    try:
        def go(s):
            school = make_school(s)
            return make_person(s, school, "Nguyễn Thị Vân", ["teacher"], phone="+84912345678").id
        teacher = rt.db.run_sync(go)
        assert await fake.post_event(url, fake.event("follow", "zu300")) == 200
        await ch.idle()
        cards = [m for m in fake.messages if m.user_id == "zu300"
                 and (m.message.get("attachment") or {}).get("payload", {}).get("template_type") == "request_user_info"]
        assert len(cards) == 1
        assert "K7QX-M2PD-9TRA" in fake.texts("zu300")[0]  # the invite code still works as the other way
        # someone not on the staff list: refused, nothing linked
        stranger = fake.event("user_submit_info", "zu301", info={"name": "Người lạ", "phone": "84987654321"})
        assert await fake.post_event(url, stranger) == 200
        await ch.idle()
        assert not rt.db.run_sync(lambda s: s.exec(select(ChannelIdentity).where(
            ChannelIdentity.channel == "zalo_oa")).all())
        # the teacher shares her Zalo account's number (Zalo sends it as 84…): linked
        event = fake.event("user_submit_info", "zu300", info={"name": "Vân", "phone": "84912345678"})
        assert await fake.post_event(url, event) == 200
        await ch.idle()
        ident = rt.db.run_sync(lambda s: s.exec(select(ChannelIdentity).where(
            ChannelIdentity.channel == "zalo_oa")).one())
        assert ident.person_id == teacher and ident.external_id == "zu300"
        assert any("Nguyễn Thị Vân" in t for t in fake.texts("zu300"))
        before = len(fake.messages)
        assert await fake.post_event(url, event) == 200  # the same event delivered again: ignored
        await ch.idle()
        assert len(fake.messages) == before
    finally:
        await rt.stop()


# ---------------------------------------------------------------------------------------------
# Several processes, keep-alive, alerts and quota
# ---------------------------------------------------------------------------------------------
async def test_two_processes_on_one_postgresql_refresh_once_and_both_send(settings, clock, fake, db):
    if db.is_sqlite:
        pytest.skip("one bot process per SQLite file; several processes need PostgreSQL")
    # Two bot processes (each its own runtime, database pool and channel) behind one OA.
    rt1, ch1, _ = await _start(settings, clock, fake)
    rt2, ch2, _ = await _start(settings, clock, fake)
    try:
        fake.expire_token()
        fake.stale_barrier = 2  # both reach Zalo with the expired token before either is answered
        ids = await asyncio.gather(ch1.send(Outbound("zalo_oa", "zu1", Reply("Từ tiến trình 1"))),
                                   ch2.send(Outbound("zalo_oa", "zu2", Reply("Từ tiến trình 2"))))
        assert all(ids) and sorted(fake.texts()) == ["Từ tiến trình 1", "Từ tiến trình 2"]
        # One refresh: the other process waited for it and took the pair it stored.
        assert fake.refresh_calls == 1 and ch1.refresh_count + ch2.refresh_count == 1
        assert ch1.access_token == ch2.access_token == fake.access_token == "ACCESS-2"
        # A day later the first process refreshes again (its scheduler); the second still holds the
        # old access token, is refused, and takes the stored pair without asking Zalo.
        clock.advance(hours=24)
        await ch1.keep_alive()
        assert fake.refresh_calls == 2 and ch2.access_token != fake.access_token
        assert await ch2.send(Outbound("zalo_oa", "zu2", Reply("Hôm sau"))) is not None
        assert fake.refresh_calls == 2 and ch2.access_token == fake.access_token
        assert fake.texts()[-1] == "Hôm sau"
    finally:
        await rt1.stop()
        await rt2.stop()


async def test_the_scheduler_keeps_the_pair_alive_through_a_summer_without_messages(settings, clock, fake):
    from bot.engine.reminders import Scheduler

    # Zalo's lifetimes, against the test clock: access token 25 h, refresh token 3 months.
    fake.clock = lambda: clock.now().timestamp()
    fake.issue("ACCESS-1", "REFRESH-1")
    rt, ch, _url = await _start(settings, clock, fake)
    scheduler = Scheduler(rt)
    try:
        await scheduler.tick()  # a pair from the environment, of unknown age: refreshed and stored at once
        assert fake.refresh_calls == 1
        await scheduler.tick()
        assert fake.refresh_calls == 1  # not due again yet
        for _ in range(100):  # school's out: nothing is sent for 100 days (a tick a day is enough here)
            clock.advance(days=1)
            await scheduler.tick()
        assert 90 <= fake.refresh_calls <= 110 and fake.send_calls == 0
        stored = rt.db.run_sync(lambda s: s.get(KeyValue, "zalo_oa.refresh_token").value)
        assert stored == fake.refresh_token
        # September: the first message goes out with the pair kept alive, no refresh on the way.
        calls = fake.refresh_calls
        assert await ch.send(Outbound("zalo_oa", "zu1", Reply("Chào mừng năm học mới"))) is not None
        assert fake.refresh_calls == calls and fake.refused_tokens == []
    finally:
        scheduler.leadership.release()
        await rt.stop()


async def test_the_refresh_token_is_renewed_within_a_week_even_with_long_access_tokens(settings, clock, fake):
    fake.clock = lambda: clock.now().timestamp()
    fake.access_ttl = 60 * 86400.0  # however long an access token lives, the refresh token must not age
    fake.issue("ACCESS-1", "REFRESH-1")
    rt, ch, _url = await _start(settings, clock, fake)
    try:
        await ch.keep_alive()
        assert fake.refresh_calls == 1
        clock.advance(days=6)
        await ch.keep_alive()
        assert fake.refresh_calls == 1
        clock.advance(days=1, hours=1)
        await ch.keep_alive()
        assert fake.refresh_calls == 2
    finally:
        await rt.stop()


async def _with_bot(settings, clock, fake):
    """The OA and a Zalo Bot in one runtime: IT reads the Zalo Bot too, the principal only the OA."""
    from storage.people import link_identity
    from tests.fakes.zalo_servers import FakeZaloBot

    bot = await FakeZaloBot().start()
    rt, ch, url = await _start(settings, clock, fake, zalo_bot_token=bot.token, zalo_bot_api_base=bot.base_url)

    def seed(s):
        school = make_school(s)
        it = make_person(s, school, "Đặng Minh Khoa", ["it"], link="zit", channel="zalo_oa",
                         preferred_channel="zalo_oa")
        link_identity(s, person=it, channel="zalo_bot", external_id="bit", chat_id="bit")
        make_person(s, school, "Trần Văn Đức", ["principal"], link="zp", channel="zalo_oa")
        make_person(s, school, "Nguyễn Thị Vân", ["teacher"], link="zt", channel="zalo_oa")
    rt.db.run_sync(seed)
    return rt, ch, bot


async def test_a_refused_refresh_tells_it_and_the_principal_once_with_what_to_do(settings, clock, fake):
    from bot.engine.reminders import Scheduler

    rt, ch, bot = await _with_bot(settings, clock, fake)
    scheduler = Scheduler(rt)
    rt2 = rt3 = None
    try:
        fake.refresh_token = "REFRESH-REVOKED"  # the stored refresh token no longer works (e.g. it expired)
        await scheduler.tick()
        await rt.dispatcher.drain()
        assert fake.refresh_calls == 1
        (to_it,) = bot.texts("bit")  # IT on the channel that still works, not on the failing OA
        expected = plain(
            "⚠️ The school assistant could not renew its access to the school's Zalo Official Account "
            "(Zalo answered: error {code}). Messages through Zalo OA will stop when the current access "
            "token runs out.\n\nWhat to do: sign in at developers.zalo.me, open the app linked to the "
            "OA, create a new access token and refresh token for the OA, put them in "
            "<code>ZALO_OA_ACCESS_TOKEN</code> and <code>ZALO_OA_REFRESH_TOKEN</code> (the bot's .env "
            "file) and restart the bot.", code=-14020)
        assert to_it == expected and "ZALO_OA_REFRESH_TOKEN" in to_it and "Zalo OA" in to_it

        def told(texts: list[str]) -> list[str]:  # (the tick's own reminders go out too)
            return [t for t in texts if t == expected]
        # the principal has only the OA (its access token still works); the teacher is not told
        assert told(fake.texts("zp")) == [expected]
        assert told(fake.texts("zt")) == [] and told(fake.texts("zit")) == []
        # Later ticks: the refused token is not offered again, and nobody is told twice.
        await scheduler.tick()
        await scheduler.tick()
        await rt.dispatcher.drain()
        assert fake.refresh_calls == 1 and len(told(bot.texts("bit"))) == 1 and len(told(fake.texts("zp"))) == 1
        # Another process (or a restart) tries once more: still told only once.
        rt2, ch2, _ = await _start(settings, clock, fake, zalo_bot_token=bot.token, zalo_bot_api_base=bot.base_url)
        await ch2.keep_alive()
        await rt2.dispatcher.drain()
        assert fake.refresh_calls == 2
        assert len(told(bot.texts("bit"))) == 1 and len(told(fake.texts("zp"))) == 1
        await rt2.stop()
        rt2 = None
        # IT does what the message says: new tokens from the developer page, in the environment, restart.
        fake.issue("ACCESS-NEW", "REFRESH-NEW")
        rt3, ch3, _ = await _start(settings, clock, fake, zalo_oa_access_token="ACCESS-NEW",
                                   zalo_oa_refresh_token="REFRESH-NEW")
        assert ch3.access_token == "ACCESS-NEW"
        assert rt3.db.run_sync(lambda s: s.get(KeyValue, "zalo_oa.refresh_token").value) == "REFRESH-NEW"
        assert await ch3.send(Outbound("zalo_oa", "zt", Reply("Đã hoạt động lại"))) is not None
        await ch3.keep_alive()  # the new pair is taken into the keep-alive cycle
        assert fake.refresh_calls == 3 and ch3.access_token == fake.access_token
    finally:
        scheduler.leadership.release()
        for r in (rt2, rt3):
            if r is not None:
                await r.stop()
        await rt.stop()
        await bot.stop()


async def test_quota_running_low_and_used_up_warn_it_once(settings, clock, fake):
    from bot.channels.zalo_oa import QuotaExceeded

    rt, ch, bot = await _with_bot(settings, clock, fake)
    try:
        # The free replies within 48 h of a person's message are that person's, not the package's.
        fake.quota = {"quota_type": "reply", "remain": "1", "total": "8", "owner_type": "OA", "owner_id": "oa-1"}
        assert await ch.send(Outbound("zalo_oa", "zt", Reply("Một"))) is not None
        await rt.dispatcher.drain()
        assert bot.texts("bit") == [] and ch.quota["quota_type"] == "reply"
        # The OA's package runs low: IT is told once, however many sends report it.
        fake.quota = {"quota_type": "sub_quota", "remain": "150", "total": "2000", "expired_date": "2026-12-31",
                      "owner_type": "OA", "owner_id": "oa-1"}
        for text in ("Hai", "Ba", "Bốn"):
            assert await ch.send(Outbound("zalo_oa", "zt", Reply(text))) is not None
        await rt.dispatcher.drain()
        (low,) = bot.texts("bit")
        assert low == plain(
            "⚠️ The school's Zalo Official Account is running out of messages: {remain} of {total} left "
            "in its package. When none are left, the bot cannot send through Zalo OA. Sending from an "
            "OA through the API needs Zalo's paid OA package: renew or top it up on oa.zalo.me.",
            remain=VI.number(150), total=VI.number(2000))
        assert "150 trên 2.000" in low and fake.texts("zp") == []  # IT only (the principal when a school has no IT)
        # Used up: the send fails with a clear error and IT is told once more, once.
        fake.quota_exhausted = True
        for _ in range(2):
            with pytest.raises(QuotaExceeded) as err:
                await ch.send(Outbound("zalo_oa", "zt", Reply("Năm")))
            assert err.value.code == -211
        await rt.dispatcher.drain()
        assert len(bot.texts("bit")) == 2
        assert bot.texts("bit")[1] == plain(
            "⛔ Zalo refused to send a message from the school's Official Account: its message quota is "
            "used up (error {code}). Until the OA's paid package is renewed or topped up on oa.zalo.me, "
            "people reached only through Zalo OA get no messages from the bot.", code=-211)
        # Another process hits it too: the database remembers IT was told.
        rt2, ch2, _ = await _start(settings, clock, fake, zalo_bot_token=bot.token, zalo_bot_api_base=bot.base_url)
        try:
            with pytest.raises(QuotaExceeded):
                await ch2.send(Outbound("zalo_oa", "zt", Reply("Sáu")))
            await rt2.dispatcher.drain()
        finally:
            await rt2.stop()
        assert len(bot.texts("bit")) == 2
    finally:
        await rt.stop()
        await bot.stop()


async def test_zalo_out_of_reach_for_a_month_is_told_once_not_at_the_first_failure(settings, clock, fake):
    # Zalo's OAuth server cannot be reached (a firewall, a dead route): nothing refuses the pair.
    rt, ch, _url = await _start(settings, clock, fake, zalo_oa_oauth_base="http://127.0.0.1:9")

    def seed(s):
        school = make_school(s)
        make_person(s, school, "Đặng Minh Khoa", ["it"], link="zit", channel="zalo_oa")
    rt.db.run_sync(seed)
    try:
        await ch.keep_alive()  # one failure is a passing fault: nobody is told
        await rt.dispatcher.drain()
        assert fake.texts("zit") == [] and ch.refresh_count == 1
        clock.advance(days=31)  # still out of reach a month later: IT is told, once
        await ch.keep_alive()
        await ch.keep_alive()
        await rt.dispatcher.drain()
        (told,) = fake.texts("zit")
        assert "oauth.zaloapp.com" in told and "ZALO_OA_REFRESH_TOKEN" in told
        assert ch.refresh_count == 2  # tried again a month later; not at the very next tick
    finally:
        await rt.stop()
