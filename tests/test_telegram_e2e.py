"""End to end through the real python-telegram-bot client against the fake Bot API server:
linking, refusals, invite codes, restarts, duplicates, webhook security, escaping, commands,
attachments, splitting, edits, faults. Runs on SQLite and (with TEST_DATABASE_URL) PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import socket
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
from sqlmodel import Session, select

from bot.channels.telegram import split_text, utf16_len
from bot.core import (
    Ctx,
    Flow,
    Inbound,
    MessageRef,
    Outbound,
    OutFile,
    Registry,
    Reply,
    Step,
    choice,
    keyboard,
)
from bot.i18n import Translator
from storage.models import ChannelIdentity, Person
from storage.people import new_invite
from tests.crash_harness import hold_writes
from tests.fakes.telegram_server import parse_html
from tests.fakes.tg_harness import (  # noqa: F401  (fixtures: fake_telegram, tg)
    WEBHOOK_SECRET,
    TgHarness,
    buttons,
    fake_telegram_fixture,
    payloads,
    reply_keyboard,
    tg_fixture,
)
from tests.helpers import make_person, make_school

TEACHER_PHONE = "+84912345678"
PRINCIPAL_PHONE = "+84987654321"


def _seed(s: Session) -> dict[str, int]:
    school = make_school(s)
    t = make_person(s, school, "Nguyễn Thị Vân", ["teacher"], phone=TEACHER_PHONE, unit="Tổ 1")
    p = make_person(s, school, "Trần Văn Đức", ["principal"], phone=PRINCIPAL_PHONE)
    assert t.id and p.id and school.id
    return {"teacher": t.id, "principal": p.id, "school": school.id}


def _identity(h: TgHarness, user_id: int) -> ChannelIdentity | None:
    return h.seed(lambda s: s.exec(select(ChannelIdentity).where(ChannelIdentity.channel == "telegram",
                                                                 ChannelIdentity.external_id == str(user_id))
                                   ).first())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------------------------------------
# Linking
# ---------------------------------------------------------------------------------------------
async def test_teacher_links_by_sharing_own_contact_and_sees_menu(tg):
    ids = tg.seed(_seed)
    msgs = await tg.command(100, "start")
    ask = msgs[-1]
    kb = reply_keyboard(ask)
    assert kb and kb[0].get("request_contact") is True
    assert ask.reply_markup and ask.reply_markup.get("one_time_keyboard") is True

    msgs = await tg.share_contact(100, "0912 345 678")
    assert len(msgs) == 2
    welcome, menu = msgs
    assert "Nguyễn Thị Vân" in welcome.text
    assert welcome.reply_markup == {"remove_keyboard": True}
    assert "m:profile" in payloads(menu)
    assert all(len(p.encode()) <= 64 for p in payloads(menu))
    ident = _identity(tg, 100)
    assert ident is not None and ident.person_id == ids["teacher"] and ident.chat_id == "100"
    assert ident.display_name  # taken from the Telegram user

    # Linked: /hoso opens the profile card with inline buttons.
    msgs = await tg.command(100, "hoso")
    assert "Nguyễn Thị Vân" in msgs[-1].text and "c:email" in payloads(msgs[-1])


async def test_stranger_with_unknown_number_is_refused(tg):
    tg.seed(_seed)
    msgs = await tg.share_contact(555, "0900 000 000")
    assert msgs and "Nguyễn" not in msgs[-1].text
    assert _identity(tg, 555) is None
    msgs = await tg.command(555, "hoso")  # still nothing but instructions to link
    assert "c:email" not in payloads(msgs[-1])
    assert reply_keyboard(msgs[-1])[0].get("request_contact") is True


async def test_forwarded_or_foreign_contact_of_the_principal_is_refused(tg):
    tg.seed(_seed)
    # A forwarded contact card of the principal (contact.user_id is the principal's, not the sender's).
    msgs = await tg.share_contact(101, "0987 654 321", owner_id=900, forwarded_from=900)
    assert reply_keyboard(msgs[-1])[0].get("request_contact") is True  # asked for their own number
    assert "Trần Văn Đức" not in msgs[-1].text
    # The same contact picked from the address book (not forwarded, still someone else's).
    msgs = await tg.share_contact(101, "0987 654 321", owner_id=900)
    assert reply_keyboard(msgs[-1])[0].get("request_contact") is True
    # A contact without any Telegram account behind it.
    msgs = await tg.share_contact(101, "0987 654 321", owner_id=None)
    assert reply_keyboard(msgs[-1])[0].get("request_contact") is True
    assert _identity(tg, 101) is None
    assert _identity(tg, 900) is None


async def test_invite_code_link_links_once(tg):
    ids = tg.seed(_seed)

    def invite(s: Session) -> str:
        person = s.get(Person, ids["principal"])
        assert person is not None
        return new_invite(s, person=person, ttl=timedelta(hours=72))

    code = tg.seed(invite)
    msgs = await tg.command(300, "start", code)
    assert any("Trần Văn Đức" in m.text for m in msgs)
    ident = _identity(tg, 300)
    assert ident is not None and ident.person_id == ids["principal"]
    # A second person using the same link gets a clear refusal, and nothing is linked.
    msgs = await tg.command(301, "start", code)
    assert "Trần Văn Đức" not in msgs[-1].text
    assert _identity(tg, 301) is None


# ---------------------------------------------------------------------------------------------
# Restarts, duplicates, ordering
# ---------------------------------------------------------------------------------------------
async def test_restart_in_the_middle_of_hoso_resumes_it(tg):
    ids = tg.seed(_seed)
    tg.link(ids["principal"], 900)
    await tg.command(900, "hoso")
    asked = await tg.tap(900, "c:email")
    assert asked and "@" in asked[-1].text
    await tg.restart()
    assert tg.starts == 2
    msgs = await tg.send(900, "  DucTV@ThuongThanh.edu.vn ")
    assert "ductv@thuongthanh.edu.vn" in msgs[-1].text
    person = tg.seed(lambda s: s.get(Person, ids["principal"]))
    assert person.email == "ductv@thuongthanh.edu.vn"
    # A button of the card sent before the restart still works.
    card_before = [m for m in tg.messages(900) if "c:done" in payloads(m)][0]
    done = await tg.tap(900, "c:done", message_id=card_before.message_id)
    assert done and "c:done" not in payloads(done[-1])


async def test_same_update_delivered_twice_is_processed_once(tg):
    ids = tg.seed(_seed)
    tg.link(ids["principal"], 900)
    update = tg.fake.command_update(900, "hoso")
    first = await tg.push(update)
    assert first
    processed = tg.rt.dispatcher.processed
    again = await tg.push(update, redeliver=True)  # Telegram re-sends it (offset never confirmed)
    assert again == []
    assert tg.fake.delivered.count(update["update_id"]) >= 2  # it really reached the bot twice
    assert tg.rt.dispatcher.processed == processed


async def test_stopping_finishes_the_update_being_handled(tg):
    """A graceful stop waits for the updates in progress: their answer is sent, not cut off."""
    if not tg.rt.db.is_sqlite:
        pytest.skip("holds the SQLite write lock from outside")
    ids = tg.seed(_seed)
    tg.link(ids["principal"], 900)
    update = tg.fake.command_update(900, "hoso")
    rt = tg.rt
    with hold_writes(rt.db):  # handed out, but it cannot be committed yet
        tg.fake.push_update(update)
        await tg.fake.wait_until(lambda: update["update_id"] in tg.fake.delivered, 10, "the update handed out")
        stopping = asyncio.ensure_future(tg.stop())
        await asyncio.sleep(0.3)
        assert not stopping.done()  # waiting for the update, not abandoning it
    await asyncio.wait_for(stopping, 30)
    assert tg.fake.bot_messages(900), "the answer was cut off by the stop"


async def test_callback_queries_are_answered(tg):
    ids = tg.seed(_seed)
    tg.link(ids["teacher"], 100)
    await tg.command(100, "hoso")
    update = tg.fake.callback_update(100, "c:lang")
    await tg.push(update)
    qid = update["callback_query"]["id"]
    call = await tg.fake.wait_for_call("answerCallbackQuery", lambda c: c.params.get("callback_query_id") == qid)
    assert call.status == 200


# ---------------------------------------------------------------------------------------------
# Webhook mode
# ---------------------------------------------------------------------------------------------
async def test_webhook_requires_the_secret_and_processes_updates(settings, fake_telegram):
    port = _free_port()
    async with TgHarness(settings, fake_telegram, webhook=True, web_port=port) as h:
        ids = h.seed(_seed)
        h.link(ids["principal"], 900)
        assert fake_telegram.webhook["url"] == h.webhook_url
        assert fake_telegram.webhook["secret_token"] == WEBHOOK_SECRET
        assert not fake_telegram.calls_to("getUpdates")

        update = fake_telegram.command_update(900, "hoso")
        body = json.dumps(update)
        async with aiohttp.ClientSession() as http:
            async def post(data: str | bytes, secret: str | None) -> int:
                headers = {"Content-Type": "application/json"}
                if secret is not None:
                    headers["X-Telegram-Bot-Api-Secret-Token"] = secret
                async with http.post(h.webhook_url, data=data, headers=headers) as resp:
                    return resp.status

            assert await post(body, None) == 403
            assert await post(body, "wrong-secret-wrong-secret") == 403
            assert await post(body, WEBHOOK_SECRET[:-1]) == 403
            assert await post("{not json", WEBHOOK_SECRET) == 400
            assert await post(json.dumps([1, 2]), WEBHOOK_SECRET) == 400
            assert await post(b"{" + b" " * (1024 * 1024 + 10) + b"}", WEBHOOK_SECRET) == 413
            assert h.rt.dispatcher.processed == 0  # none of that reached the core
            assert await post(body, WEBHOOK_SECRET) == 200
            await h.wait_handled(update["update_id"])
            card = await h.last(900)
            assert "c:email" in payloads(card)
            # Telegram retrying the same delivery: processed once.
            n = len(h.messages(900))
            assert await post(body, WEBHOOK_SECRET) == 200
            await h.wait_handled(update["update_id"], times=2)
            assert h.rt.dispatcher.processed == 1 and len(h.messages(900)) == n

        # Updates the fake pushes go to the webhook with the secret, like Telegram's.
        msgs = await h.tap(900, "c:done")
        assert msgs and len(h.messages(900)) == n + 1
        assert all(status == 200 for _, status in fake_telegram.webhook_statuses)


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------
async def test_user_text_is_escaped_in_html_replies(tg):
    ids = tg.seed(_seed)
    tg.link(ids["teacher"], 100)
    await tg.command(100, "hoso")
    await tg.tap(100, "c:unit")
    evil = "<b>&<script>alert(1)</script>"
    msgs = await tg.send(100, evil)
    card = msgs[-1]
    assert card.parse_mode == "HTML"
    assert "&lt;b&gt;&amp;&lt;script&gt;alert(1)&lt;/script&gt;" in card.html
    assert evil in card.text  # shown to the user exactly as typed
    assert all(c.status == 200 for c in tg.fake.calls_to("sendMessage"))
    person = tg.seed(lambda s: s.get(Person, ids["teacher"]))
    assert person.unit == evil


async def test_set_my_commands_in_vietnamese(tg):
    call = tg.fake.calls_to("setMyCommands")[-1]
    commands = call.params["commands"]
    vi = Translator("vi")
    expected = [(c, vi.t(d)) for c, d in tg.rt.registry.commands_for(None)]
    assert [(c["command"], c["description"]) for c in commands] == expected
    by_name = dict(expected)
    assert by_name["start"] != "Start and link your account"  # translated, not the msgid
    assert by_name["hoso"] == vi.t("See and correct your unit, e-mail and language")
    assert any(ch in by_name["hoso"] for ch in "ửổệàáạ")


async def test_long_text_is_split_on_lines_with_buttons_on_the_last_part(tg):
    lines = [f"<b>Dòng {i}</b> — nội dung &amp; ghi chú 📌 {'x' * (i % 50)}" for i in range(400)]
    text = "\n".join(lines)
    assert utf16_len(parse_html(text)) > 4096
    reply = Reply(text, buttons=keyboard(choice("Xong", "done")), protect=True)
    mid = await tg.channel.send(Outbound("telegram", "700", reply))
    parts = tg.messages(700)
    assert len(parts) >= 2 and mid == str(parts[-1].message_id)
    assert all(utf16_len(p.text) <= 4096 and p.parse_mode == "HTML" and p.protected for p in parts)
    assert "\n".join(p.text for p in parts) == parse_html(text)
    assert [buttons(p) for p in parts[:-1]] == [[]] * (len(parts) - 1)
    assert buttons(parts[-1]) == [("Xong", "c:done")]
    # One line without any break, spanning a <pre> block: cut where allowed, tags re-balanced.
    one = "<pre>" + " ".join(["từ&amp;từ"] * 1500) + "</pre>"
    await tg.channel.send(Outbound("telegram", "701", Reply(one)))
    parts = tg.messages(701)
    assert len(parts) >= 2
    assert "".join(p.text for p in parts).replace(" ", "") == parse_html(one).replace(" ", "")
    assert all(c.status == 200 for c in tg.fake.calls_to("sendMessage"))


def test_split_text_keeps_short_text_whole():
    assert split_text("<b>ngắn</b>") == ["<b>ngắn</b>"]


async def test_edit_delete_and_files(tg, tmp_path: Path):
    ch = tg.channel
    mid = await ch.send(Outbound("telegram", "800", Reply("Chờ duyệt", buttons=keyboard(choice("Duyệt", "ok")))))
    assert mid is not None
    ref = MessageRef("telegram", "800", mid)
    assert await ch.edit(ref, Reply("<b>Đã duyệt</b> bởi Trần Văn Đức")) is True
    msg = tg.fake.message(800, mid)
    assert msg is not None and msg.text == "Đã duyệt bởi Trần Văn Đức" and buttons(msg) == []
    assert await ch.edit(ref, Reply("<b>Đã duyệt</b> bởi Trần Văn Đức")) is True  # "not modified" is fine
    assert await ch.edit(MessageRef("telegram", "800", "99999"), Reply("x")) is False

    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40)
    vid = await ch.send(Outbound("telegram", "800", Reply("Đoạn trích <i>cổng trường</i>",
                                                         file=OutFile("video", str(clip)), protect=True)))
    video = tg.fake.message(800, vid or 0)
    assert video is not None and video.media_kind == "video" and video.protected
    assert video.file is not None and video.file.sha256 == hashlib.sha256(clip.read_bytes()).hexdigest()
    assert video.text == "Đoạn trích cổng trường"
    assert await ch.edit(MessageRef("telegram", "800", vid or ""), Reply("Đã nhận")) is True  # a caption edit
    assert tg.fake.message(800, vid or 0).text == "Đã nhận"  # type: ignore[union-attr]

    photo = tmp_path / "anh.jpg"
    photo.write_bytes(b"\xff\xd8\xff" + b"1" * 500)
    pid = await ch.send(Outbound("telegram", "800", Reply("Ảnh", file=OutFile("photo", str(photo)))))
    assert tg.fake.message(800, pid or 0).media_kind == "photo"  # type: ignore[union-attr]
    missing = await ch.send(Outbound("telegram", "800", Reply("x", file=OutFile("document", str(tmp_path / "no")))))
    assert missing is None

    assert await ch.delete(ref) is True
    assert tg.fake.message(800, mid).deleted  # type: ignore[union-attr]
    assert await ch.delete(ref) is False


# ---------------------------------------------------------------------------------------------
# Attachments through a tiny test flow (registered in this test's own registry)
# ---------------------------------------------------------------------------------------------
def _probe_start(ctx: Ctx) -> Step:
    return Step.goto("wait", Reply("probe: send something"))


def _probe_wait(ctx: Ctx, msg: Inbound) -> Step:
    if msg.files:
        f = msg.files[0]
        ok = f.path is not None and Path(f.path).is_file()
        return Step.stay(Reply(f"file {f.kind} {f.error or f.sha256} {f.size} stored={ok}"))
    if msg.location:
        return Step.stay(Reply(f"location {msg.location[0]:.4f} {msg.location[1]:.4f}"))
    return Step.stay(Reply(f"text {msg.text}"))


def _probe_registry() -> Registry:
    reg = Registry().discover()
    reg.add_flow(Flow(name="probe", title="Probe", command="thu", start=_probe_start,
                      states={"wait": _probe_wait}, in_menu=False))
    return reg


async def test_attachments_are_fetched_or_refused_when_too_big(settings, fake_telegram):
    async with TgHarness(settings, fake_telegram, registry=_probe_registry()) as h:
        ids = h.seed(_seed)
        h.link(ids["teacher"], 100)
        await h.command(100, "thu")
        data = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8
        msgs = await h.send_photo(100, data, caption="ảnh sân trường")
        sha = hashlib.sha256(data).hexdigest()
        assert msgs[-1].text == f"file photo {sha} {len(data)} stored=True"

        getfile_calls = len(fake_telegram.calls_to("getFile"))
        msgs = await h.send_photo(100, None, file_size=25 * 1024 * 1024)
        assert msgs[-1].text == f"file photo too_big {25 * 1024 * 1024} stored=False"
        assert len(fake_telegram.calls_to("getFile")) == getfile_calls  # refused without trying

        # The message did not say its size; Telegram's getFile refuses it.
        msgs = await h.push(fake_telegram.message_update(100, document={
            "file_id": fake_telegram.register_file(None, file_size=21 * 1024 * 1024).file_id,
            "file_unique_id": "nosize", "file_name": "bao_cao.pdf", "mime_type": "application/pdf"}))
        assert msgs[-1].text.startswith("file document too_big")

        voice = b"OggS" + b"v" * 300
        msgs = await h.send_file(100, "voice", voice)
        assert msgs[-1].text.startswith(f"file voice {hashlib.sha256(voice).hexdigest()}")
        msgs = await h.send_location(100, 21.0285, 105.8542)
        assert msgs[-1].text == "location 21.0285 105.8542"


async def test_updates_of_one_chat_keep_their_order(settings, fake_telegram):
    async with TgHarness(settings, fake_telegram, registry=_probe_registry()) as h:
        ids = h.seed(_seed)
        h.link(ids["teacher"], 100)
        await h.command(100, "thu")
        photo = fake_telegram.media_update(100, "photo", b"\xff\xd8" + b"p" * 5000)
        text = fake_telegram.text_update(100, "sau ảnh")
        fake_telegram.push_update(photo)
        fake_telegram.push_update(text)
        await h.wait_handled(photo["update_id"])
        await h.wait_handled(text["update_id"])
        last_two = [m.text for m in h.messages(100)[-2:]]
        assert last_two[0].startswith("file photo") and last_two[1] == "text sau ảnh"


# ---------------------------------------------------------------------------------------------
# Faults: rate limits, blocked users, commands addressed by name, no token in logs
# ---------------------------------------------------------------------------------------------
async def test_rate_limit_is_retried(tg):
    ids = tg.seed(_seed)
    tg.link(ids["teacher"], 100)
    tg.fake.rate_limit("sendMessage", retry_after=1)
    msgs = await tg.command(100, "menu")
    assert msgs and "m:profile" in payloads(msgs[-1])
    statuses = [c.status for c in tg.fake.calls_to("sendMessage")]
    assert statuses[0] == 429 and statuses[-1] == 200


@pytest.mark.parametrize("http_client", ["aiohttp", "httpx"])
async def test_blocked_user_and_errors_never_crash_or_leak_the_token(settings, fake_telegram, caplog, http_client):
    tg = await TgHarness(settings, fake_telegram, telegram_http_client=http_client).start()
    caplog.set_level(logging.DEBUG)  # after the start, which quietens httpx: forced back on here
    caplog.set_level(logging.DEBUG, logger="httpx")
    caplog.set_level(logging.DEBUG, logger="aiohttp")
    try:
        await _blocked_user_and_errors(tg, caplog, http_client)
    finally:
        await tg.stop()


async def _blocked_user_and_errors(tg, caplog, http_client):
    ids = tg.seed(_seed)
    tg.link(ids["teacher"], 100)
    tg.fake.block(100)
    assert await tg.command(100, "hoso") == []
    tg.fake.blocked.clear()
    tg.fake.fail_next("sendMessage", description="Bad Request: chat not found")
    assert await tg.command(100, "menu") == []
    msgs = await tg.command(100, "menu", mention=True)  # /menu@botname still works
    assert msgs and "m:profile" in payloads(msgs[-1])
    assert tg.fake.calls_to("getUpdates")
    assert "blocked" in caplog.text  # the refusal was logged ...
    token = tg.fake.token
    assert token not in caplog.text and token.split(":", 1)[1] not in caplog.text  # ... without the token
    if http_client == "httpx":
        assert "/bot<token>/sendMessage" in caplog.text  # httpx's request lines (forced on here) are redacted


async def test_group_chats_get_a_short_notice_only(tg):
    ids = tg.seed(_seed)
    tg.link(ids["teacher"], 100)
    msgs = await tg.push(tg.fake.command_update(100, "hoso", chat_id=-1001, chat_type="group"))
    assert len(msgs) == 1 and msgs[0].text == Translator("vi").t(
        "I only work in private chats. Please message me directly.")
    assert await tg.push(tg.fake.text_update(100, "chào cả nhóm", chat_id=-1001, chat_type="group")) == []
    assert tg.rt.dispatcher.processed == 0


async def test_unknown_token_is_a_clear_start_error(settings, fake_telegram):
    fake = fake_telegram
    h = TgHarness(settings, fake, telegram_bot_token="999:wrong-token")
    with pytest.raises(RuntimeError, match="TELEGRAM_BOT_TOKEN") as err:
        await h.start()
    assert "wrong-token" not in str(err.value)
    assert h.runtime is None  # the half-started runtime was stopped again
