"""The aiohttp transport of python-telegram-bot (``bot/channels/telegram_http.py``), driven through a real
:class:`telegram.Bot` against the fake Bot API and small servers on 127.0.0.1: request bodies, uploads,
downloads, the Bot API's errors, timeouts, unreachable servers (never the token in a message) and proxies
from the environment."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup
from telegram.error import BadRequest, NetworkError, RetryAfter, TimedOut

from bot.channels.telegram_http import AiohttpRequest
from tests.fakes.telegram_server import FakeTelegram


def _bot(token: str, base: str, **kw: float) -> Bot:
    return Bot(token, base_url=f"{base}/bot", base_file_url=f"{base}/file/bot",
               request=AiohttpRequest(**kw), get_updates_request=AiohttpRequest(connection_pool_size=1))  # type: ignore[arg-type]


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as f:
        yield f


@pytest.fixture
async def bot(fake: FakeTelegram) -> AsyncIterator[Bot]:
    b = _bot(fake.token, fake.base_url.removesuffix("/bot"))
    async with b:
        yield b


async def _serve(handler) -> tuple[web.AppRunner, int]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


async def test_a_message_with_a_keyboard_goes_as_json_and_comes_back_parsed(fake, bot):
    kb = InlineKeyboardMarkup([[InlineKeyboardButton("✅ Duyệt", callback_data="ap:7:ok")]])
    msg = await bot.send_message(100, "Yêu cầu trích xuất <b>camera cổng</b>", parse_mode="HTML", reply_markup=kb)
    call = fake.calls_to("sendMessage")[-1]
    assert call.content_type == "application/json"
    assert call.params["chat_id"] == 100 and call.params["text"].startswith("Yêu cầu trích xuất")
    assert call.params["reply_markup"] == {"inline_keyboard": [[{"text": "✅ Duyệt", "callback_data": "ap:7:ok"}]]}
    assert msg.chat.id == 100 and msg.text and msg.message_id == fake.last(100).message_id


async def test_a_file_is_uploaded_as_multipart_and_a_users_file_downloads_whole(fake, bot):
    clip = bytes(range(256)) * 4000  # 1 MB, every byte value
    await bot.send_document(100, clip, filename="Đoạn trích #12 \"cổng\".mp4", caption="Đoạn trích #12")
    call = fake.calls_to("sendDocument")[-1]
    assert call.content_type == "multipart/form-data"
    up = call.files["document"]
    assert up.data == clip, (len(up.data or b""), len(clip))
    assert up.file_name == "Đoạn trích #12 \"cổng\".mp4", up.file_name
    assert call.params["caption"] == "Đoạn trích #12"
    stored = fake.register_file(b"\x89PNG" + b"x" * 70_000, mime_type="image/png")
    tg_file = await bot.get_file(stored.file_id)
    assert bytes(await tg_file.download_as_bytearray()) == stored.data


async def test_the_bot_apis_errors_become_telegram_errors(fake, bot):
    fake.fail_next("sendMessage", description="Bad Request: chat not found")
    with pytest.raises(BadRequest, match="(?i)chat not found"):
        await bot.send_message(100, "x")
    fake.rate_limit("sendMessage", retry_after=3)
    with pytest.raises(RetryAfter) as exc:
        await bot.send_message(100, "x")
    assert exc.value.retry_after in (3, __import__("datetime").timedelta(seconds=3))
    assert (await bot.send_message(100, "lại")).text == "lại"


async def test_a_slow_answer_times_out(fake):
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.json_response({"ok": True, "result": True})
    runner, port = await _serve(slow)
    try:
        req = AiohttpRequest(read_timeout=0.2)
        await req.initialize()
        try:
            with pytest.raises(TimedOut):
                await req.post(f"http://127.0.0.1:{port}/bot{fake.token}/getMe")
            # a call's own read timeout wins over the default
            with pytest.raises(TimedOut):
                await req.post(f"http://127.0.0.1:{port}/bot{fake.token}/getMe", read_timeout=0.1)
        finally:
            await req.shutdown()
    finally:
        await runner.cleanup()


async def test_an_unreachable_server_is_a_network_error_without_the_token(fake):
    async def nothing(request: web.Request) -> web.Response:
        return web.json_response({})
    runner, port = await _serve(nothing)
    await runner.cleanup()  # the port is closed now
    b = _bot(fake.token, f"http://127.0.0.1:{port}", connect_timeout=2)
    await b._request[1].initialize()  # type: ignore[attr-defined]
    try:
        with pytest.raises(NetworkError) as exc:
            await b.send_message(100, "x")
        assert not isinstance(exc.value, TimedOut)
        assert fake.token not in str(exc.value) and fake.token.split(":")[1] not in repr(exc.value)
    finally:
        await b._request[1].shutdown()  # type: ignore[attr-defined]


async def test_not_initialized_is_refused():
    req = AiohttpRequest()
    with pytest.raises(NetworkError, match="not initialized"):
        await req.post("http://127.0.0.1:9/botX/getMe")


def test_a_pool_needs_a_connection():
    with pytest.raises(ValueError):
        AiohttpRequest(connection_pool_size=0)


async def test_a_proxy_from_the_environment_is_used_and_no_proxy_is_honoured(fake, monkeypatch):
    seen: list[str] = []

    async def proxy(request: web.Request) -> web.Response:  # a forward proxy gets the absolute URL
        seen.append(str(request.url))
        return web.json_response({"ok": True, "result": {"id": 1, "is_bot": True, "first_name": "qua proxy",
                                                         "username": "proxy_bot"}})
    runner, port = await _serve(proxy)
    try:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
        monkeypatch.setenv("NO_PROXY", "direct.invalid")
        req = AiohttpRequest(connect_timeout=2)
        await req.initialize()
        try:
            me = await req.post(f"http://api.invalid/bot{fake.token}/getMe")
            assert isinstance(me, dict) and me["first_name"] == "qua proxy"
            assert seen and seen[-1].startswith("http://api.invalid/bot")
            with pytest.raises(NetworkError):  # NO_PROXY: straight to a host that does not exist
                await req.post(f"http://direct.invalid/bot{fake.token}/getMe")
            assert len(seen) == 1
        finally:
            await req.shutdown()
    finally:
        await runner.cleanup()
