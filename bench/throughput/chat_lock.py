"""What the conversation's lock in the database costs (PostgreSQL), measured through the dispatcher alone.

    .venv/bin/python bench/throughput/chat_lock.py [--pg-url URL] [--people 40] [--rounds 8] [--events 1000]

Each event's unit takes its conversation's advisory lock in PostgreSQL (``Dispatcher._mark``), so that
several bot processes on one database serve one chat in step. This runs the real dispatcher, flows
and database (no Telegram: replies go to a recording adapter) with the lock on and off, in
alternating rounds (on, off, off, on, on, off …) so that drift on a shared machine hits both alike.
In each round ``--people`` teachers (all chats at once, each chat one event after the other) loop over
``/hoso`` → ✏️ e-mail → a typed address → ✅ → ``/menu``; every event writes its conversation.

Printed per round and as medians: events/s (wall), the bot's CPU per event, PostgreSQL's CPU per event
(every server process on this machine: other databases' work counts too), and on/off ratios taken
between neighbouring rounds. Then the statement alone (``--blocks``, 0 to skip): ``BEGIN``; the
duplicate-check insert with and without the lock's CTE; ``COMMIT``, on one connection, in alternating
blocks of 2,000 transactions."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import AfternoonClock, BenchDb, machine, postgres_cpu_seconds, seed  # noqa: E402

CYCLE = [("command", "hoso"), ("payload", "c:email"), ("text", "{email}"), ("payload", "c:done"),
         ("command", "menu")]


class _Sink:
    """A channel adapter named ``telegram`` that only counts what it is asked to send."""

    name = "telegram"

    def __init__(self) -> None:
        self.sent = 0
        self.ids = itertools.count(1)

    async def send(self, out: Any) -> str | None:
        self.sent += 1
        return str(next(self.ids))

    async def edit(self, ref: Any, reply: Any) -> bool:
        return True

    async def delete(self, ref: Any) -> bool:
        return True


async def run_round(rt: Any, teachers: list[int], events: int, keys: itertools.count[int]) -> int:
    from bot.core import Inbound

    per_chat = max(1, events // len(teachers))
    done = 0

    async def chat(uid: int) -> None:
        nonlocal done
        for i in range(per_chat):
            kind, value = CYCLE[i % len(CYCLE)]
            value = value.format(email=f"gv{uid}.{next(keys)}@truong.edu.vn")
            kw: dict[str, Any] = {kind: value}
            await rt.dispatcher.handle(Inbound(channel="telegram", user_id=str(uid), chat_id=str(uid),
                                               update_key=f"k{next(keys)}", **kw))
            done += 1

    await asyncio.gather(*[chat(uid) for uid in teachers])
    return done


async def main_async(args: argparse.Namespace) -> int:
    from bot.config import load_settings
    from bot.runtime import Runtime

    if not args.pg_url:
        print("needs --pg-url or TEST_DATABASE_URL (the lock is PostgreSQL's)", file=sys.stderr)
        return 2
    db = BenchDb.postgresql(args.pg_url, "chatlock")
    work = Path(tempfile.mkdtemp(prefix="bench-chat-lock-"))
    try:
        seeded = await asyncio.to_thread(seed, db.url, args.people + args.people // 9 + 1)
        teachers = seeded.teachers[:args.people]
        settings = load_settings(data_dir=work, database_url=db.url, web_chat_enabled=False, log_level="WARNING")
        rt = Runtime(settings, clock=AfternoonClock(settings.timezone))
        sink = _Sink()
        rt.sender.register(sink)  # type: ignore[arg-type]
        keys = itertools.count(1)
        print(f"conversation lock in the database — {time.strftime('%Y-%m-%d %H:%M')}, {machine()}")
        print(f"{len(teachers)} chats at once, {args.events} events per round, {args.rounds} rounds per setting")
        await run_round(rt, teachers, len(teachers) * len(CYCLE), keys)  # warm-up (connections, statements)
        rows: list[tuple[str, float, float, float]] = []
        order = [on for pair in range(args.rounds) for on in ((True, False) if pair % 2 == 0 else (False, True))]
        print(f"{'lock':<5} {'events/s':>9} {'bot CPU ms/event':>17} {'server CPU ms/event':>20}")
        for on in order:
            rt.dispatcher.chat_lock = on
            cpu0, srv0, t0 = time.process_time(), postgres_cpu_seconds(), time.perf_counter()
            n = await run_round(rt, teachers, args.events, keys)
            wall = time.perf_counter() - t0
            cpu = (time.process_time() - cpu0) * 1000 / n
            srv = (postgres_cpu_seconds() - srv0) * 1000 / n
            rows.append(("on" if on else "off", n / wall, cpu, srv))
            print(f"{rows[-1][0]:<5} {n / wall:>9.1f} {cpu:>17.2f} {srv:>20.2f}", flush=True)
        await rt.dispatcher.drain()
        await rt.db.aclose()

        def med(xs: list[float]) -> float:
            return statistics.median(xs)

        pairs = list(zip(rows[0::2], rows[1::2], strict=True))
        ratio = [(a if a[0] == "on" else b, b if a[0] == "on" else a) for a, b in pairs]
        print()
        for label, i in (("events/s", 1), ("bot CPU per event", 2), ("server CPU per event", 3)):
            on_v = [r[i] for r in rows if r[0] == "on"]
            off_v = [r[i] for r in rows if r[0] == "off"]
            rs = [on[i] / off[i] for on, off in ratio if off[i]]
            print(f"{label:<22} on {med(on_v):8.2f}  off {med(off_v):8.2f}  on/off {med(rs):.3f} "
                  f"(each pair: {', '.join(f'{x:.2f}' for x in rs)})")
        print(f"(messages sent: {sink.sent})")
        if args.blocks:
            await asyncio.to_thread(statement_alone, db.url, args.blocks)
    finally:
        await asyncio.to_thread(db.drop)
    return 0


_PLAIN = ("INSERT INTO processed_update (channel, update_key, processed_at) VALUES (%s, %s, now()) "
          "ON CONFLICT (channel, update_key) DO NOTHING RETURNING id")
_LOCKED = ("WITH chat_lock AS (SELECT pg_advisory_xact_lock(%s, hashtext(concat(current_schema(), ':', %s::varchar)))) "
           "INSERT INTO processed_update (channel, update_key, processed_at) SELECT %s, %s, now() FROM chat_lock "
           "ON CONFLICT (channel, update_key) DO NOTHING RETURNING id")


def statement_alone(url: str, blocks: int, per_block: int = 2000) -> None:
    """The insert with and without the lock (the SQL ``Dispatcher._mark`` runs), µs per transaction."""
    import psycopg
    from sqlalchemy.engine import make_url

    from bot.core.dispatcher import Dispatcher

    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    keys = itertools.count()
    res: dict[bool, list[float]] = {True: [], False: []}
    with psycopg.connect(dsn) as conn:
        for b in range(blocks):
            for on in ((True, False) if b % 2 == 0 else (False, True)):
                t0 = time.perf_counter()
                for i in range(per_block):
                    key, chat = f"s{next(keys)}", f"telegram:{i % 40}"
                    with conn.transaction():
                        if on:
                            conn.execute(_LOCKED, (Dispatcher.CHAT_LOCK, chat, "telegram", key), prepare=True).fetchone()
                        else:
                            conn.execute(_PLAIN, ("telegram", key), prepare=True).fetchone()
                res[on].append((time.perf_counter() - t0) / per_block * 1e6)
    diff = statistics.median(a - b for a, b in zip(res[True], res[False], strict=True))
    print(f"the statement alone, {blocks} blocks of {per_block} transactions: with the lock "
          f"{statistics.median(res[True]):.0f} µs, without {statistics.median(res[False]):.0f} µs per transaction; "
          f"difference {diff:+.0f} µs (median of the blocks' differences)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pg-url", default=os.environ.get("TEST_DATABASE_URL", ""))
    ap.add_argument("--people", type=int, default=40, help="chats served at once")
    ap.add_argument("--rounds", type=int, default=8, help="rounds per setting (on and off)")
    ap.add_argument("--events", type=int, default=1000, help="events per round")
    ap.add_argument("--blocks", type=int, default=10, help="blocks of the statement alone (0: skip)")
    return asyncio.run(main_async(ap.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
