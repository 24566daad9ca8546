"""Composition of the running bot: database, registry, dispatcher, channels and the web server.

Used by ``main.py run`` / ``main.py demo`` and by the end-to-end tests (which point the Telegram
channel at a fake Bot API server on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from aiohttp import web

from bot.config import Settings
from bot.core import Clock, Dispatcher, Registry, Sender, Services, SystemClock, load_registry
from bot.engine.fanout import FanOut
from media.files import MediaStore
from storage.db import Database
from storage.models import utcnow

log = logging.getLogger(__name__)
OUTBOX_START_WAIT = 30.0  # seconds new events may wait at start for the outbox of a crashed run


class Channel(Protocol):
    name: str

    def setup_routes(self, app: web.Application) -> None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


#: a channel's periodic work: (name, coroutine function), called at every scheduler tick
ChannelJob = tuple[str, Callable[[], Awaitable[object]]]


@runtime_checkable
class ScheduledChannel(Protocol):
    """A channel with periodic work of its own (Zalo OA: keeping its token pair alive). The scheduler
    runs it at every tick, in the one process that schedules (``Scheduler.tick``), so the engine
    needs no import of the channel."""

    def scheduled_jobs(self) -> Sequence[ChannelJob]: ...


def settle_heap() -> None:
    """Once the bot has started: collect what start-up left behind, then take every object alive now
    (modules, the ORM's mappings, the catalogue, python-telegram-bot …: ~170,000 of them) out of the
    garbage collector's view (:func:`gc.freeze`).

    A full collection otherwise walks all of them, ~90 ms on the benchmark machine with the event
    loop stopped, and under load one comes every few seconds: every update waiting at that moment
    is late by that much (it was the p99 of ``bench/throughput``). Objects made later are collected
    as before. Called by ``main.py run`` (not by tests, which start many runtimes in one process)."""
    gc.collect()
    gc.freeze()


class Runtime:
    def __init__(self, settings: Settings, *, clock: Clock | None = None, db: Database | None = None,
                 registry: Registry | None = None) -> None:
        self.settings = settings
        self.db = db or Database(settings.effective_database_url)
        self.registry = registry or load_registry()
        self.services = Services(settings=settings, registry=self.registry, clock=clock or SystemClock())
        self.sender = Sender(self.db, clock=self.services.clock)
        self.dispatcher = Dispatcher(self.db, self.services, self.sender)
        self.fanout = FanOut(self)
        self.services.fanout = self.fanout
        self.services.host = self
        self.media = MediaStore(settings.media_dir)
        #: the Zalo channels' signed links to clips and files (bot.channels.zalo_common.MediaLinks)
        self.media_links: Any = None
        self.channels: list[Channel] = []
        #: the channels' periodic work (:class:`ScheduledChannel`), run by the scheduler at every tick
        self.channel_jobs: list[ChannelJob] = []
        self.web_app = web.Application(client_max_size=2 * 1024 * 1024)
        self._runner: web.AppRunner | None = None
        self.web_port: int | None = None
        self._stopped = asyncio.Event()
        self.scheduler: Any = None

    def add_channel(self, channel: Channel) -> None:
        self.channels.append(channel)
        channel.setup_routes(self.web_app)
        if hasattr(channel, "send"):
            self.sender.register(channel)  # type: ignore[arg-type]
        if isinstance(channel, ScheduledChannel):
            self.channel_jobs.extend(channel.scheduled_jobs())

    def build_channels(self) -> None:
        """Create the channels the settings ask for (Telegram if a token is set; web chat)."""
        if self.settings.telegram_bot_token:
            from bot.channels.telegram import TelegramChannel

            self.add_channel(TelegramChannel(self))
        if self.settings.zalo_oa_app_id:
            from bot.channels.zalo_oa import ZaloOAChannel

            self.add_channel(ZaloOAChannel(self))
        if self.settings.zalo_bot_token:
            from bot.channels.zalo_bot import ZaloBotChannel

            self.add_channel(ZaloBotChannel(self))
        if self.settings.web_chat_enabled:
            from bot.channels.webchat import WebChat

            self.add_channel(WebChat(self))

    async def start(self, *, serve_web: bool = True, scheduler: bool = True) -> None:
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(self.db.migrate)
        if not self.channels:
            self.build_channels()
        if serve_web:
            self.web_app.router.add_get("/healthz", self._health)
            from bot.channels.admin import setup as console_setup

            console_setup(self, self.web_app)
            self._runner = web.AppRunner(self.web_app, access_log=None)
            await self._runner.setup()
            site = web.TCPSite(self._runner, self.settings.web_host, self.settings.web_port)
            await site.start()
            server = getattr(site, "_server", None)
            socks = getattr(server, "sockets", None) or []
            self.web_port = socks[0].getsockname()[1] if socks else self.settings.web_port
            log.info("web server on http://%s:%s", self.settings.web_host, self.web_port)
        cutoff = utcnow()  # outbox rows older than this were left by an earlier run
        self.dispatcher.ready.clear()  # new events wait until that outbox has gone out
        try:
            for ch in self.channels:
                await ch.start()
            if self.db.is_sqlite:
                # One process per SQLite file: whatever an earlier run left in the outbox is ours to
                # send (on PostgreSQL another process may be sending it: the scheduler takes the rows
                # whose claim is stale).
                recovery = self.dispatcher.spawn(self.sender.recover(before=cutoff))
                await asyncio.wait([recovery], timeout=OUTBOX_START_WAIT)
        finally:
            self.dispatcher.ready.set()
        if scheduler:
            from bot.engine.reminders import Scheduler

            self.scheduler = Scheduler(self)
            self.scheduler.start()
        log.info("bot started with channels: %s", ", ".join(c.name for c in self.channels) or "none")

    async def _health(self, _request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "processed": self.dispatcher.processed})

    async def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.stop()
            self.scheduler = None
        await self.dispatcher.drain()
        for ch in reversed(self.channels):
            try:
                await ch.stop()
            except Exception:
                log.exception("stopping channel %s failed", ch.name)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.db.aclose()
        self._stopped.set()

    async def run_forever(self) -> None:
        await self.start()
        try:
            await self._stopped.wait()
        finally:
            if not self._stopped.is_set():
                await self.stop()

    def request_stop(self) -> None:
        asyncio.get_event_loop().create_task(self.stop())
