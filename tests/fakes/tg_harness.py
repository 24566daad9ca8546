"""A reusable end-to-end harness: the fake Bot API + a real :class:`bot.runtime.Runtime` running the real
:class:`bot.channels.telegram.TelegramChannel` (python-telegram-bot, long polling) against it.

Use the ``tg`` fixture (import the fixture functions into your test module, or list this module in
``pytest_plugins`` of the root conftest)::

    from tests.fakes.tg_harness import buttons, fake_telegram_fixture, tg_fixture  # noqa: F401

    async def test_something(tg):
        tg.seed(lambda s: ...)                      # storage work on the bot's database
        tg.link(person_id, 900)                     # telegram user 900 is that person
        msgs = await tg.command(900, "hoso")        # returns the bot messages the update produced
        card = await tg.tap(900, "c:email")         # taps the newest message carrying that button
        await tg.send(900, "vannt@example.edu.vn")
        await tg.restart()                          # new runtime, same database
        msg = await tg.wait_for_message(900, contains="Đã lưu")

Every ``send``-like method pushes one update and waits until the channel has *finished* handling
it (the channel records handled update ids), then returns the bot messages that appeared in that
chat meanwhile. Nothing sleeps: waits re-check recorded state.

For a custom registry (e.g. a tiny test flow) or webhook mode build one yourself:
``async with TgHarness(settings, fake, registry=reg) as h: ...``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import pytest
from sqlmodel import Session

from bot.channels.telegram import TelegramChannel
from bot.config import Settings, load_settings
from bot.core import Clock, Registry
from bot.runtime import Runtime
from storage.db import Database
from storage.models import Person
from storage.people import link_identity
from tests.fakes.telegram_server import DEFAULT_TOKEN, ChatMessage, FakeTelegram

T = TypeVar("T")
WEBHOOK_SECRET = "e2e-webhook-secret_0123456789"


def buttons(msg: ChatMessage | None) -> list[tuple[str, str]]:
    """(label, callback payload) of every inline button of a bot message, row by row."""
    if msg is None:
        return []
    return [(b.get("text", ""), b.get("callback_data", "")) for row in msg.inline_buttons for b in row]


def payloads(msg: ChatMessage | None) -> list[str]:
    return [p for _, p in buttons(msg)]


def reply_keyboard(msg: ChatMessage | None) -> list[dict[str, Any]]:
    """Buttons of a reply keyboard (e.g. the one-tap "share my phone number")."""
    if msg is None or not msg.reply_markup:
        return []
    return [b for row in msg.reply_markup.get("keyboard") or [] for b in row]


class TgHarness:
    """Fake Telegram + real runtime. See the module docstring."""

    def __init__(self, settings: Settings, fake: FakeTelegram, *, clock: Clock | None = None,
                 registry: Registry | None = None, webhook: bool = False, web_port: int = 0,
                 **overrides: Any) -> None:
        self.fake = fake
        self.clock = clock
        self.registry = registry
        values = settings.model_dump()
        values.update(telegram_bot_token=fake.token, telegram_base_url=fake.base_url,
                      telegram_base_file_url=fake.base_file_url, web_chat_enabled=False, web_port=web_port,
                      telegram_concurrent_updates=8)
        if webhook:
            if not web_port:
                raise ValueError("webhook mode needs a fixed web_port (the URL is set before start)")
            values.update(telegram_webhook_url=f"http://127.0.0.1:{web_port}/telegram/webhook",
                          telegram_webhook_secret=WEBHOOK_SECRET)
        values.update(overrides)
        self.settings = load_settings(**values)
        self.runtime: Runtime | None = None
        self.starts = 0

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> TgHarness:
        rt = Runtime(self.settings, clock=self.clock, registry=self.registry)
        try:
            # The test drives the calendar itself (``await tg.tick()``) with its fixed clock.
            await rt.start(scheduler=False)
        except BaseException:
            await rt.stop()
            raise
        self.runtime = rt
        self.starts += 1
        return self

    async def tick(self) -> None:
        """One scheduler tick (approval reminders, retention, every reminder rule), as the leader."""
        from bot.engine.reminders import Scheduler

        sched = Scheduler(self.rt)
        try:
            await sched.tick()
        finally:
            sched.leadership.release()  # on PostgreSQL the advisory lock would outlive this call
        await self.rt.dispatcher.drain()

    async def stop(self) -> None:
        if self.runtime is not None:
            rt, self.runtime = self.runtime, None
            await rt.stop()

    async def restart(self) -> None:
        """Stop the bot (as a process exit would) and start a new runtime on the same database."""
        await self.stop()
        await self.start()

    async def __aenter__(self) -> TgHarness:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def rt(self) -> Runtime:
        if self.runtime is None:
            raise RuntimeError("the bot is not running")
        return self.runtime

    @property
    def channel(self) -> TelegramChannel:
        for ch in self.rt.channels:
            if isinstance(ch, TelegramChannel):
                return ch
        raise RuntimeError("no Telegram channel in the runtime")

    @property
    def db(self) -> Database:
        return self.rt.db

    @property
    def webhook_url(self) -> str:
        return self.settings.telegram_webhook_url

    # -- database helpers ---------------------------------------------------------------------------
    def seed(self, fn: Callable[[Session], T]) -> T:
        """Run ``fn(session)`` on the bot's database as one committed unit."""
        return self.db.run_sync(fn)

    def link(self, person_id: int, user_id: int | str) -> None:
        """Make Telegram user ``user_id`` (private chat of the same id) the person ``person_id``."""
        def go(s: Session) -> None:
            person = s.get(Person, person_id)
            assert person is not None, f"no person {person_id}"
            link_identity(s, person=person, channel="telegram", external_id=str(user_id), chat_id=str(user_id))
        self.seed(go)

    # -- driving ------------------------------------------------------------------------------------
    async def push(self, update: dict[str, Any], *, redeliver: bool = False, timeout: float = 10.0,  # noqa: ASYNC109
                   chat_id: int | str | None = None) -> list[ChatMessage]:
        """Push one update, wait until the bot has handled it, return the bot's new messages in the chat."""
        uid = update["update_id"]
        chat = int(chat_id) if chat_id is not None else _chat_of(update)
        before = {m.message_id for m in self.fake.bot_messages(chat, include_deleted=True)}
        seen = self.channel.completed.count(uid)
        self.fake.push_update(update, redeliver=redeliver)
        await self.wait_handled(uid, timeout=timeout, times=seen + 1)
        return [m for m in self.fake.bot_messages(chat) if m.message_id not in before]

    async def wait_handled(self, update_id: int, timeout: float = 10.0, *,  # noqa: ASYNC109
                           times: int = 1) -> None:
        """Wait until the current runtime's channel has finished with ``update_id`` (``times`` times:
        a redelivered update is handled again, and dropped by the dispatcher)."""
        await self.fake.wait_until(
            lambda: self.runtime is not None and self.channel.completed.count(update_id) >= times,
            timeout, f"update {update_id} to be handled")

    async def send(self, user_id: int | str, text: str, **kw: Any) -> list[ChatMessage]:
        return await self.push(self.fake.text_update(user_id, text, **kw))

    async def command(self, user_id: int | str, name: str, args: str = "", **kw: Any) -> list[ChatMessage]:
        return await self.push(self.fake.command_update(user_id, name, args, **kw))

    async def tap(self, user_id: int | str, payload: str, *, message_id: int | None = None,
                  chat_id: int | str | None = None) -> list[ChatMessage]:
        """Tap a button: by default on the newest bot message of the chat carrying that payload."""
        chat = int(chat_id) if chat_id is not None else int(user_id)
        if message_id is None:
            carrying = [m for m in self.fake.bot_messages(chat) if payload in payloads(m)]
            target = carrying[-1] if carrying else self.fake.last(chat)
            if target is None:
                raise AssertionError(f"no bot message in chat {chat} to tap {payload!r} on")
            message_id = target.message_id
        return await self.push(self.fake.callback_update(user_id, payload, message_id=message_id, chat_id=chat))

    async def share_contact(self, user_id: int | str, phone: str, *, owner_id: int | str | None | bool = True,
                            forwarded_from: int | str | None = None, **kw: Any) -> list[ChatMessage]:
        """Share a contact: one's own by default (what the one-tap button sends)."""
        return await self.push(self.fake.contact_update(user_id, phone, owner_id=owner_id,
                                                        forwarded_from=forwarded_from, **kw))

    async def send_photo(self, user_id: int | str, data: bytes | None, *, caption: str | None = None,
                         file_size: int | None = None, **kw: Any) -> list[ChatMessage]:
        return await self.push(self.fake.media_update(user_id, "photo", data, caption=caption,
                                                      file_size=file_size, **kw))

    async def send_file(self, user_id: int | str, kind: str, data: bytes | None, *, caption: str | None = None,
                        file_size: int | None = None, **kw: Any) -> list[ChatMessage]:
        """``kind``: video, voice, audio, document or video_note."""
        return await self.push(self.fake.media_update(user_id, kind, data, caption=caption,
                                                      file_size=file_size, **kw))

    async def send_location(self, user_id: int | str, latitude: float, longitude: float) -> list[ChatMessage]:
        return await self.push(self.fake.location_update(user_id, latitude, longitude))

    # -- looking ------------------------------------------------------------------------------------
    async def last(self, chat_id: int | str, timeout: float = 5.0) -> ChatMessage:  # noqa: ASYNC109
        """The newest bot message in the chat (waiting for one if there is none yet)."""
        return await self.fake.wait_until(lambda: self.fake.last(chat_id), timeout,  # type: ignore[no-any-return]
                                          f"a bot message in chat {chat_id}")

    def messages(self, chat_id: int | str) -> list[ChatMessage]:
        return self.fake.bot_messages(chat_id)

    def texts(self, chat_id: int | str) -> list[str]:
        return [m.text for m in self.fake.bot_messages(chat_id)]

    async def wait_for_message(self, chat_id: int | str, *, contains: str | None = None,
                               predicate: Callable[[ChatMessage], bool] | None = None, timeout: float = 5.0,  # noqa: ASYNC109
                               after: int = 0) -> ChatMessage:
        """The first bot message in the chat (id > ``after``) whose plain text contains ``contains``
        and/or that satisfies ``predicate``."""
        def ok(m: ChatMessage) -> bool:
            return (contains is None or contains in m.text) and (predicate is None or predicate(m))
        return await self.fake.wait_for(ok, timeout, chat_id=chat_id, after=after)


def _chat_of(update: dict[str, Any]) -> int:
    if "callback_query" in update:
        q = update["callback_query"]
        return int(q["message"]["chat"]["id"]) if q.get("message") else int(q["from"]["id"])
    for key in ("message", "edited_message"):
        if key in update:
            return int(update[key]["chat"]["id"])
    raise ValueError("update without a chat")


@pytest.fixture(name="fake_telegram")
async def fake_telegram_fixture() -> AsyncIterator[FakeTelegram]:
    """A running fake Bot API server on 127.0.0.1."""
    async with FakeTelegram(DEFAULT_TOKEN) as fake:
        yield fake


@pytest.fixture(name="tg")
async def tg_fixture(settings: Settings, fake_telegram: FakeTelegram) -> AsyncIterator[TgHarness]:
    """The bot running on the test database, talking to ``fake_telegram`` by long polling."""
    h = TgHarness(settings, fake_telegram)
    await h.start()
    try:
        yield h
    finally:
        await h.stop()


__all__ = ["WEBHOOK_SECRET", "TgHarness", "buttons", "fake_telegram_fixture", "payloads", "reply_keyboard",
           "tg_fixture"]
