"""Zalo Bot Platform adapter end to end: a fake Bot API on 127.0.0.1 (polling and webhook), the real
aiohttp client and server, the real dispatcher, flows and database (SQLite, and PostgreSQL)."""

from __future__ import annotations

import hashlib
import inspect
import io
import logging
from datetime import timedelta

import aiohttp
import pytest
from sqlmodel import select

from bot.channels.zalo_bot import ZaloBotChannel
from bot.channels.zalo_common import html_to_plain
from bot.core import Button, Outbound, OutFile, Reply, keyboard
from bot.i18n import Translator
from bot.runtime import Runtime
from storage import audit
from storage.models import ChannelIdentity, Conversation, OutboxMessage, Person
from storage.people import new_invite
from tests.fakes.zalo_servers import FakeZaloBot
from tests.helpers import make_person, make_school

VI = Translator("vi")
SECRET = "zalo-bot-webhook-secret-123"


def plain(msgid: str, **kw: object) -> str:
    return html_to_plain(VI.t(msgid, **kw))


@pytest.fixture
async def fake():
    server = await FakeZaloBot().start()
    yield server
    await server.stop()


async def _start(settings, clock, fake: FakeZaloBot, **over: object) -> tuple[Runtime, ZaloBotChannel]:
    values = {"zalo_bot_token": fake.token, "zalo_bot_api_base": fake.base_url, "web_chat_enabled": False,
              "telegram_bot_token": "", "zalo_oa_app_id": ""}
    values.update(over)
    rt = Runtime(settings.model_copy(update=values), clock=clock)
    rt.build_channels()
    (ch,) = [c for c in rt.channels if isinstance(c, ZaloBotChannel)]
    ch.backoff_max = 0.05
    kwargs = {"scheduler": False} if "scheduler" in inspect.signature(rt.start).parameters else {}
    await rt.start(**kwargs)
    return rt, ch


@pytest.fixture
async def polling(settings, clock, fake):
    rt, ch = await _start(settings, clock, fake)
    yield rt, ch
    await rt.stop()


def _seed(rt: Runtime, clock) -> dict[str, object]:
    def go(s):
        school = make_school(s)
        teacher = make_person(s, school, "Nguyễn Thị Vân", ["teacher"], unit="Tổ 1")
        code = new_invite(s, person=teacher, ttl=timedelta(hours=72), now=clock.now())
        return {"teacher": teacher.id, "code": code}
    return rt.db.run_sync(go)


async def _say(fake: FakeZaloBot, user: str, text: str) -> str:
    """Queue a text for getUpdates and wait for the bot's answer to it; return the last text sent."""
    before = len(fake.sent)
    fake.push(fake.message(user, text=text))
    await fake.wait_for(lambda: len(fake.sent) > before and fake._queue.empty())
    # the answer may be several messages: wait until the chat is quiet (its processing finished)
    return fake.sent[-1].text


async def test_polling_link_numbered_menu_and_number_starts_profile(polling, fake, clock):
    rt, ch = polling
    ids = _seed(rt, clock)
    assert fake.calls[0] == "deleteWebhook"  # polling must first remove any webhook
    await fake.wait_for(lambda: fake.calls.count("getUpdates") >= 2)  # empty polls (408) just continue
    await _say(fake, "zb1", "/start")
    await ch.idle()
    assert plain("On Zalo, link your account by sending the link code the school office gave you "
                 "(for example K7QX-M2PD-9TRA).") in fake.sent[-1].text
    await _say(fake, "zb1", str(ids["code"]))
    await ch.idle()
    ident = rt.db.run_sync(lambda s: s.exec(select(ChannelIdentity)).one())
    assert ident.channel == "zalo_bot" and ident.person_id == ids["teacher"] and ident.display_name == "Cô Vân"
    menu = fake.sent[-1].text
    assert menu.startswith("Anh/chị muốn làm gì?")
    numbered = dict(line.split(". ", 1) for line in menu.splitlines() if line[:1].isdigit() and ". " in line)
    (number,) = [n for n, label in numbered.items() if label == "👤 " + VI.t("My profile")]
    assert "<b>" not in menu
    # a short menu spells each choice out; a long one (as here) ends with one hint
    assert (plain("{n} to choose “{label}”", n=number, label="👤 " + VI.t("My profile")) in menu
            or plain("Reply with the number of your choice (1–{max}), or type its name.", max=len(numbered)) in menu)
    # Its number answers the numbered menu: /hoso starts, in Vietnamese, its choices numbered too.
    await _say(fake, "zb1", number)
    await ch.idle()
    card = fake.sent[-1].text
    assert "Hồ sơ của anh/chị" in card and "Nguyễn Thị Vân" in card and "4. " in card
    conv = rt.db.run_sync(lambda s: s.exec(select(Conversation)).one())
    assert conv.flow == "profile" and conv.state == "menu"
    # The exact label, case and diacritics forgiven, also chooses.
    await _say(fake, "zb1", "sua EMAIL")
    await ch.idle()
    assert fake.sent[-1].text == plain("Send your e-mail address (for example vannt@school.edu.vn):")
    await _say(fake, "zb1", "van.nt@ngocthuy.edu.vn")
    await ch.idle()
    assert rt.db.run_sync(lambda s: s.get(Person, ids["teacher"])).email == "van.nt@ngocthuy.edu.vn"
    # A number outside the menu is not a choice: the step gets the text and asks again.
    await _say(fake, "zb1", "9")
    await ch.idle()
    assert fake.sent[-2].text == plain("Please choose one of the buttons, or type /huy to stop.")
    assert "Hồ sơ của anh/chị" in fake.sent[-1].text


async def test_poll_errors_back_off_and_token_is_never_logged(settings, clock, fake, caplog):
    fake.fail_next_polls = 3
    with caplog.at_level(logging.DEBUG):
        rt, ch = await _start(settings, clock, fake)
        try:
            _seed(rt, clock)
            await _say(fake, "zb2", "xin chào")
            await ch.idle()
            assert fake.sent[-1].text.startswith(plain("You are not linked to a school yet, so I cannot help "
                                                       "with that. Tap the button below to share your phone "
                                                       "number, or send the link code the school office gave you."))
        finally:
            await rt.stop()
    assert "getUpdates failed (500)" in caplog.text
    assert fake.token not in caplog.text and fake.token.split(":")[1] not in caplog.text


async def test_webhook_secret_wrapped_bare_and_duplicates(settings, clock, fake):
    rt, ch = await _start(settings, clock, fake, zalo_bot_webhook_url="https://school.example/zalo/bot/hook",
                          zalo_bot_webhook_secret=SECRET)
    try:
        ids = _seed(rt, clock)
        assert fake.webhook == {"url": "https://school.example/zalo/bot/hook", "secret_token": SECRET}
        assert "getUpdates" not in fake.calls
        url = f"http://127.0.0.1:{rt.web_port}/zalo/bot/hook"
        link = fake.message("zb3", text=str(ids["code"]), message_id="m-1")
        assert await fake.post_webhook(url, link, secret="wrong-secret-value") == 403
        assert await fake.post_webhook(url, link, secret="") == 403
        await ch.idle()
        assert rt.dispatcher.processed == 0 and fake.sent == []
        # Wrapped body, delivered twice: processed once.
        assert await fake.post_webhook(url, link) == 200
        assert await fake.post_webhook(url, link) == 200
        await ch.idle()
        assert rt.dispatcher.processed == 1
        assert rt.db.run_sync(lambda s: len(s.exec(select(ChannelIdentity)).all())) == 1
        # A bare body; the same message id again after a restart of memory is dropped by the database.
        n = len(fake.sent)
        assert await fake.post_webhook(url, fake.message("zb3", text="/hoso", message_id="m-2"), wrapped=False) == 200
        await ch.idle()
        assert "Hồ sơ của anh/chị" in fake.sent[-1].text and len(fake.sent) == n + 1
        ch._seen.clear()
        assert await fake.post_webhook(url, fake.message("zb3", text="/hoso", message_id="m-2")) == 200
        await ch.idle()
        assert len(fake.sent) == n + 1
        # No message id: a hash of the event de-duplicates.
        sticker = fake.message("zb3", event="message.sticker.received", message_id="")
        assert await fake.post_webhook(url, sticker) == 200
        assert await fake.post_webhook(url, sticker) == 200
        await ch.idle()
        assert rt.dispatcher.processed == 3
    finally:
        await rt.stop()


async def test_stop_lets_accepted_webhook_events_finish(settings, clock, fake):
    """An event answered 200 is never sent again by Zalo: stopping the bot lets it finish (its reply
    goes out, its outbox row is cleared) instead of cutting it off."""
    rt, ch = await _start(settings, clock, fake, zalo_bot_webhook_url="https://school.example/zalo/bot/hook",
                          zalo_bot_webhook_secret=SECRET)
    stopped = False
    try:
        ids = _seed(rt, clock)
        url = f"http://127.0.0.1:{rt.web_port}/zalo/bot/hook"
        fake.send_delay = 0.3  # the reply is still on its way when the stop begins
        assert await fake.post_webhook(url, fake.message("zb9", text=str(ids["code"]), message_id="m-9")) == 200
        await rt.stop()
        stopped = True
        assert rt.dispatcher.processed == 1
        assert fake.sent and {m.chat_id for m in fake.sent} == {"zb9"}  # the greeting went out
        assert rt.db.run_sync(lambda s: len(s.exec(select(OutboxMessage)).all())) == 0
    finally:
        if not stopped:
            await rt.stop()


async def test_image_received_is_downloaded(polling, fake, clock):
    rt, ch = polling
    ids = _seed(rt, clock)
    await _say(fake, "zb4", str(ids["code"]))
    await ch.idle()
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (10, 120, 200)).save(buf, format="PNG")
    data = buf.getvalue()

    photo_app = aiohttp.web.Application()

    async def serve(_request: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.Response(body=data, content_type="image/png")
    photo_app.router.add_get("/p.png", serve)
    runner = aiohttp.web.AppRunner(photo_app)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        before = len(fake.sent)
        fake.push(fake.message("zb4", photo_url=f"http://127.0.0.1:{port}/p.png"))
        await fake.wait_for(lambda: len(fake.sent) > before)
        await ch.idle()
    finally:
        await runner.cleanup()
    sha = hashlib.sha256(data).hexdigest()
    stored = list((rt.settings.media_dir / "inbox").rglob(f"{sha}*"))
    assert stored and stored[0].read_bytes() == data
    assert fake.sent[-1].text.startswith(plain("I received your attachment, but no workflow is open. "
                                               "Choose what it is for first."))


async def test_outbound_long_text_photo_by_url_and_file_link(polling, fake, clock, tmp_path):
    rt, ch = polling
    ids = _seed(rt, clock)
    await _say(fake, "zb5", str(ids["code"]))
    await ch.idle()
    pid = ids["teacher"]
    text = "\n".join(f"Dòng {i}: " + "thông báo của nhà trường về lịch họp tổ chuyên môn. " * 3 for i in range(80))
    assert len(text) > 9000
    before = len(fake.sent)
    buttons = keyboard(Button("Duyệt", "c:ok"), Button("Từ chối", "c:no"), per_row=2)
    await ch.send(Outbound("zalo_bot", "zb5", Reply(text, buttons=buttons), pid))
    parts = fake.sent[before:]
    assert len(parts) >= 5 and all(0 < len(p.text) <= 2000 for p in parts)
    joined = " ".join(" ".join(p.text for p in parts).split())
    assert joined.startswith(" ".join(text.split()))
    assert "1. Duyệt\n2. Từ chối" in parts[-1].text
    assert plain("Reply {choices}.", choices=", ".join([
        VI.t("{n} to choose “{label}”", n=1, label="Duyệt"),
        VI.t("{n} to choose “{label}”", n=2, label="Từ chối")])) in parts[-1].text

    from PIL import Image

    img = tmp_path / "anh.jpg"
    Image.new("RGB", (32, 32), (0, 200, 0)).save(img)
    await ch.send(Outbound("zalo_bot", "zb5", Reply("Ảnh hiện trường", file=OutFile("photo", str(img))), pid))
    photo = next(s for s in reversed(fake.sent) if s.method == "sendPhoto")
    assert photo.fetched == img.read_bytes()  # Zalo fetched the URL the bot serves
    assert fake.sent[-1].text == "Ảnh hiện trường"

    sheet = tmp_path / "danh-sach.xlsx"
    sheet.write_bytes(b"PK\x03\x04" + b"1" * 3000)
    await ch.send(Outbound("zalo_bot", "zb5", Reply("Danh sách", file=OutFile("document", str(sheet))), pid))
    link_msg = next(s for s in reversed(fake.sent) if "/zalo/dl/" in s.text)
    link = next(w for w in link_msg.text.split() if "/zalo/dl/" in w)
    async with aiohttp.ClientSession() as http, http.get(link) as resp:
        assert resp.status == 200 and await resp.read() == sheet.read_bytes()
    events = rt.db.run_sync(lambda s: list(audit.events(s, action="media.download")))
    assert [e.subject for e in events] == ["file:anh.jpg", "file:danh-sach.xlsx"]
    assert all(e.actor_id == pid and e.channel == "zalo_bot" for e in events)
    assert fake.token not in link


async def test_typed_payload_from_unlinked_user_gets_only_link_instructions(polling, fake, clock):
    rt, ch = polling
    _seed(rt, clock)
    await _say(fake, "zb6", "m:profile")
    await ch.idle()
    assert fake.sent[-1].text.startswith(plain(
        "You are not linked to a school yet, so I cannot help with that. Tap the button below to share your "
        "phone number, or send the link code the school office gave you."))
    assert len(fake.sent) == 1
    assert rt.db.run_sync(lambda s: s.exec(select(Conversation)).all()) == []


async def test_approval_decided_by_number(polling, fake, clock):
    rt, ch = polling
    from bot.engine import approvals
    from storage.models import Approval

    def seed(s):
        school = make_school(s)
        return {"teacher": make_person(s, school, "Nguyễn Thị Vân", ["teacher"], link="bt", channel="zalo_bot").id,
                "principal": make_person(s, school, "Trần Văn Đức", ["principal"], link="bp", channel="zalo_bot").id}
    ids = rt.db.run_sync(seed)
    out: dict[str, int] = {}

    def ask(ctx):
        out["id"] = approvals.request(ctx, kind="test", subject="test:1", title="Footage request",
                                      fields=[("Camera", "Cổng chính")],
                                      stages=[approvals.StageSpec(role="principal")]).id
    await rt.dispatcher.run_unit(ask, person_id=ids["teacher"])
    ap = out["id"]
    card = next(s.text for s in fake.sent if s.chat_id == "bp")
    numbered = dict(line.split(". ", 1) for line in card.splitlines() if line[:1].isdigit() and ". " in line)
    (approve,) = [n for n, label in numbered.items() if label == VI.t("✅ Approve")]
    # The requester answering a number in their own chat chooses nothing of the principal's card.
    await _say(fake, "bt", approve)
    await ch.idle()
    assert rt.db.run_sync(lambda s: s.get(Approval, ap).status) == "pending"
    await _say(fake, "bp", approve)
    await ch.idle()
    assert rt.db.run_sync(lambda s: s.get(Approval, ap).status) == "approved"
    assert any("Trần Văn Đức" in t for t in fake.texts("bt"))
    decided = rt.db.run_sync(lambda s: list(audit.events(s, action="approval.decided")))
    assert len(decided) == 1 and decided[0].actor_id == ids["principal"]


GROUP_HINT = ("I only answer in private chats. Please write to me directly, not in a group: "
              "open my profile and tap “Message”.")


async def test_a_link_code_typed_in_a_group_links_nobody_and_gets_only_the_private_chat_hint(polling, fake, clock):
    rt, ch = polling
    ids = _seed(rt, clock)
    # The teacher types her link code inside the school's group chat (the bot is a member).
    fake.push(fake.message("zb7", text=str(ids["code"]), group="grp-to-1"))
    await fake.wait_for(lambda: fake.sent)
    await ch.idle()
    assert [(m.chat_id, m.text) for m in fake.sent] == [("grp-to-1", plain(GROUP_HINT))]
    assert "nhắn riêng" in fake.sent[0].text  # short and in Vietnamese
    assert rt.dispatcher.processed == 0
    assert rt.db.run_sync(lambda s: s.exec(select(ChannelIdentity)).all()) == []
    assert rt.db.run_sync(lambda s: s.exec(select(Conversation)).all()) == []
    # A command, and a group whose type Zalo left out (its chat id is not the sender's): the same.
    fake.push(fake.message("zb7", text="/start", group="grp-to-1"))
    fake.push(fake.message("zb7", text="/hoso", group="grp-to-2", chat_type=""))
    await fake.wait_for(lambda: len(fake.sent) == 3)
    await ch.idle()
    assert [m.chat_id for m in fake.sent] == ["grp-to-1", "grp-to-1", "grp-to-2"]
    assert {m.text for m in fake.sent} == {plain(GROUP_HINT)} and rt.dispatcher.processed == 0
    # Written privately, the same (unused) code links her to her own chat.
    await _say(fake, "zb7", str(ids["code"]))
    await ch.idle()
    ident = rt.db.run_sync(lambda s: s.exec(select(ChannelIdentity)).one())
    assert ident.person_id == ids["teacher"] and ident.chat_id == "zb7" == ident.external_id
    # Nothing addressed to the group goes out, even a plain message from the core.
    before = len(fake.sent)
    assert await ch.send(Outbound("zalo_bot", "grp-to-1", Reply("Thông báo"), ids["teacher"])) is None
    assert len(fake.sent) == before and ch.refused_group_sends == 1


async def test_an_account_linked_from_a_group_gets_no_card_clip_or_password_until_it_writes_privately(
        polling, fake, clock, tmp_path):
    rt, ch = polling
    from bot.engine import approvals, waiting
    from storage.models import WaitingCard
    from storage.people import link_identity

    def seed(s):
        school = make_school(s)
        teacher = make_person(s, school, "Nguyễn Thị Vân", ["teacher"], link="bt", channel="zalo_bot")
        principal = make_person(s, school, "Trần Văn Đức", ["principal"])
        # Linked by an earlier version from inside the staff group: the group's chat id was stored.
        link_identity(s, person=principal, channel="zalo_bot", external_id="bp", chat_id="grp-staff")
        return {"teacher": teacher.id, "principal": principal.id}
    ids = rt.db.run_sync(seed)

    def ask(ctx):
        approvals.request(ctx, kind="test", subject="test:1", title="Footage request",
                          fields=[("Camera", "Cổng chính")], stages=[approvals.StageSpec(role="principal")])
    await rt.dispatcher.run_unit(ask, person_id=ids["teacher"])
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"0" * 2000)
    await ch.send(Outbound("zalo_bot", "grp-staff", Reply("Đoạn trích", file=OutFile("video", str(clip))),
                           ids["principal"]))
    await ch.send(Outbound("zalo_bot", "grp-staff", Reply("Mật khẩu tạm thời: Xk7-29QaPm", delete_after=600),
                           ids["principal"]))
    await rt.dispatcher.drain()
    assert [m for m in fake.sent if m.chat_id == "grp-staff"] == []
    # The card is not even handed to the channel: a group chat is no destination, so the principal
    # counts as not linked and the card is kept for him; the clip and the password sent straight to
    # the adapter are refused there.
    assert ch.refused_group_sends == 2
    assert rt.db.run_sync(lambda s: s.exec(select(OutboxMessage)).all()) == []
    kept = rt.db.run_sync(lambda s: s.exec(select(WaitingCard).where(WaitingCard.person_id == ids["principal"])).all())
    assert [k.delivered_at for k in kept] == [None]
    # The principal writes to the bot privately: his account now points at his own chat, where the
    # next card arrives.
    await _say(fake, "bp", "/start")
    await ch.idle()
    ident = rt.db.run_sync(lambda s: s.exec(select(ChannelIdentity).where(ChannelIdentity.external_id == "bp")).one())
    assert ident.chat_id == "bp"
    await rt.dispatcher.run_unit(waiting.sweep)  # the kept card reaches his private chat, once
    await rt.dispatcher.run_unit(waiting.sweep)
    assert sum("Cổng chính" in m.text for m in fake.sent if m.chat_id == "bp") == 1

    def ask_again(ctx):
        approvals.request(ctx, kind="test", subject="test:2", title="Footage request",
                          fields=[("Camera", "Sân sau")], stages=[approvals.StageSpec(role="principal")])
    await rt.dispatcher.run_unit(ask_again, person_id=ids["teacher"])
    assert any("Sân sau" in m.text for m in fake.sent if m.chat_id == "bp")
    assert [m for m in fake.sent if m.chat_id == "grp-staff"] == []
