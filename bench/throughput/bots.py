"""The bot process of the benchmarks: ``ours`` (a real :class:`bot.runtime.Runtime` with the Telegram
channel pointed at the fake Bot API) or ``echo`` (a bare python-telegram-bot echo bot: the baseline).

    python bench/throughput/bots.py ours --api-port P --db-url URL --data-dir DIR [--limiter] [--web-chat]
    python bench/throughput/bots.py echo --api-port P

Prints ``{"ready": true, "pid": …, "memory_kb": {…}}`` once it is polling, serves until stdin
closes, then prints ``{"stopped": true, "memory_kb": {…}}``.

Both bots poll with the same long-poll timeout and handle up to ``--concurrency`` updates at once
(our default, ``TELEGRAM_CONCURRENT_UPDATES=64``). By default our bot runs **without** its
``AIORateLimiter`` (30 messages/s overall, Telegram's own broadcast limit), so that the figures
measure the bot's work rather than that deliberate cap; ``--limiter`` keeps it, as in production.
Clip extraction (ffmpeg, measured by ``bench/clips``) is not started after an approval: the footage
flow finds no running bot (``services.host`` is None), logs that and only records the decision.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import time
from pathlib import Path
from typing import Any

import common  # noqa: F401  (puts the repository on sys.path)
from common import TOKEN, AfternoonClock, memory_kb, say, wait_stdin_closed


class _Counters:
    """CPU time spent inside database units (worker threads) and SQL statements run."""

    units = 0
    unit_cpu = 0.0
    statements = 0


def timed_database(url: str, *, async_units: bool = True) -> Any:
    """A :class:`storage.db.Database` that counts its units, the CPU time of those run synchronously
    (SQLite, or PostgreSQL in threads) and the SQL statements. Units on the loop over asyncio
    (PostgreSQL's default) interleave with other work, so their CPU time is not separable: n/a."""
    from storage.db import Database

    class TimedDatabase(Database):
        def run_sync(self, fn: Any) -> Any:
            t0 = time.thread_time()
            try:
                return super().run_sync(fn)
            finally:
                _Counters.unit_cpu += time.thread_time() - t0  # one thread at a time per update: GIL-safe enough
                _Counters.units += 1

        async def _run_async(self, fn: Any) -> Any:
            _Counters.units += 1
            _Counters.unit_cpu = float("nan")
            return await super()._run_async(fn)

    db = TimedDatabase(url, async_units=async_units)

    def _count(*_a: Any) -> None:
        _Counters.statements += 1

    db.listen("before_cursor_execute", _count)  # every engine units run on, present and future
    return db


def counters() -> dict[str, Any]:
    return {"db_units": _Counters.units, "db_unit_cpu_s": _Counters.unit_cpu, "sql_statements": _Counters.statements}


async def run_ours(args: argparse.Namespace) -> None:
    from bot.channels.telegram import TelegramChannel
    from bot.config import load_settings
    from bot.runtime import Runtime, settle_heap

    base = f"http://127.0.0.1:{args.api_port}"
    settings = load_settings(
        data_dir=Path(args.data_dir), database_url=args.db_url, telegram_bot_token=TOKEN,
        telegram_base_url=f"{base}/bot", telegram_base_file_url=f"{base}/file/bot",
        telegram_concurrent_updates=args.concurrency, web_chat_enabled=args.web_chat, web_port=0,
        log_level="WARNING", **({"telegram_http_client": args.http} if args.http else {}))
    rt = Runtime(settings, clock=AfternoonClock(settings.timezone),
                 db=timed_database(settings.effective_database_url, async_units=args.pg_units == "async"))
    rt.build_channels()
    channel = next(c for c in rt.channels if isinstance(c, TelegramChannel))
    if not args.limiter:
        channel.app.bot._rate_limiter = None  # the production AIORateLimiter: see the module docstring
    if args.pool:  # the same bounded HTTP connection pool for both bots (see run.py --pool)
        bot = channel.app.bot
        bot._request = (bot._request[0], _request(args.http or rt.settings.telegram_http_client, args))
    rt.services.host = None  # no clip extraction: see the module docstring
    if args.no_chat_lock:  # what the conversation's lock in the database costs (run.py --chat-lock)
        rt.dispatcher.chat_lock = False
    logging.getLogger("bot.flows.footage.steps").setLevel(logging.ERROR)  # its "will not be extracted" warning
    await rt.start(scheduler=args.scheduler)
    settle_heap()  # as main.py run does
    say({"ready": True, "pid": os.getpid(), "memory_kb": memory_kb(), "web_port": rt.web_port, **counters()})
    profiler = _profiler(args)
    try:
        await wait_stdin_closed()
    finally:
        _stop_profiler(profiler, args)
        await rt.dispatcher.drain()
        stats: dict[str, Any] = {"processed": rt.dispatcher.processed, "locks": len(rt.dispatcher.locks),
                                 **counters()}
        gc.collect()
        mem = memory_kb()
        await rt.stop()
        say({"stopped": True, "memory_kb": mem, **stats})


async def run_echo(args: argparse.Namespace) -> None:
    from telegram import Update
    from telegram.ext import Application, CallbackQueryHandler, ContextTypes, MessageHandler, filters

    base = f"http://127.0.0.1:{args.api_port}"

    async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        m = update.message
        if m is not None and m.text:
            await context.bot.send_message(m.chat.id, m.text)

    async def tap(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        q = update.callback_query
        if q is not None and q.message is not None:
            await q.answer()
            await context.bot.send_message(q.message.chat.id, q.data or "?")

    builder = (Application.builder().token(TOKEN).base_url(f"{base}/bot").base_file_url(f"{base}/file/bot")
               .concurrent_updates(args.concurrency))
    if args.http == "aiohttp":  # for the comparison on the same HTTP client (run.py --transports)
        from bot.channels.telegram_http import AiohttpRequest

        builder = builder.request(_request("aiohttp", args)).get_updates_request(
            AiohttpRequest(connection_pool_size=1, read_timeout=35))
    elif args.pool:
        builder = builder.connection_pool_size(args.pool).pool_timeout(args.pool_timeout)
    app = builder.build()
    app.add_handler(MessageHandler(filters.TEXT, echo))
    app.add_handler(CallbackQueryHandler(tap))
    await app.initialize()
    await app.start()
    assert app.updater is not None
    await app.updater.start_polling(timeout=25, allowed_updates=["message", "callback_query"])
    gc.collect()
    say({"ready": True, "pid": os.getpid(), "memory_kb": memory_kb()})
    profiler = _profiler(args)
    try:
        await wait_stdin_closed()
    finally:
        _stop_profiler(profiler, args)
        mem = memory_kb()
        await app.updater.stop()
        await app.stop()
        await app.shutdown()
        say({"stopped": True, "memory_kb": mem})


def _request(http: str, args: argparse.Namespace) -> Any:
    """The request object for the bot's API calls (not getUpdates) on ``http``, with ``--pool``."""
    pool = args.pool or 256
    if http == "aiohttp":
        from bot.channels.telegram_http import AiohttpRequest

        return AiohttpRequest(connection_pool_size=pool, connect_timeout=10, read_timeout=20, write_timeout=30,
                              media_write_timeout=180, pool_timeout=args.pool_timeout)
    from telegram.request import HTTPXRequest

    return HTTPXRequest(connection_pool_size=pool, connect_timeout=10, read_timeout=20, write_timeout=30,
                        media_write_timeout=180, pool_timeout=args.pool_timeout)


def _profiler(args: argparse.Namespace) -> Any:
    if not args.pyinstrument:
        return None
    from pyinstrument import Profiler  # pip install pyinstrument (only for --profile)

    p = Profiler(interval=0.0005, async_mode="disabled")
    p.start()
    return p


def _stop_profiler(profiler: Any, args: argparse.Namespace) -> None:
    if profiler is None:
        return
    profiler.stop()
    Path(args.pyinstrument).write_text(profiler.output_text(unicode=True, color=False, show_all=False))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kind", choices=["ours", "echo"])
    ap.add_argument("--api-port", type=int, required=True)
    ap.add_argument("--db-url", default="")
    ap.add_argument("--data-dir", default="data")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--limiter", action="store_true", help="keep the production AIORateLimiter (30 msg/s)")
    ap.add_argument("--pool", type=int, default=0,
                    help="HTTP connection pool size for the bot's requests (default: python-telegram-bot's 256)")
    ap.add_argument("--pool-timeout", type=float, default=30.0)
    ap.add_argument("--http", choices=["aiohttp", "httpx"], default="",
                    help="the Bot API HTTP client (default: ours as configured, aiohttp; echo: httpx)")
    ap.add_argument("--pg-units", choices=["async", "thread"], default="async",
                    help="PostgreSQL units on the loop over asyncio (the product's default) or in worker threads")
    ap.add_argument("--no-chat-lock", action="store_true",
                    help="PostgreSQL: no conversation lock in the database (one process only: for measuring)")
    ap.add_argument("--web-chat", action="store_true", help="serve the web chat too")
    ap.add_argument("--scheduler", action="store_true", help="run the reminder scheduler")
    ap.add_argument("--pyinstrument", default="", help="write a pyinstrument profile of the event loop here")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(run_ours(args) if args.kind == "ours" else run_echo(args))


if __name__ == "__main__":
    main()
