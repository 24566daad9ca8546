"""Memory benchmark (not a test): resident memory of the bot process idle, and with 1,000 people in
the middle of workflows.

    .venv/bin/python bench/memory/run.py [--people 1000] [--db sqlite|postgresql] [--pg-url URL] [--repeat 3]

The bot runs as in production — a real Runtime with the Telegram channel polling a fake Bot API
(``bench/throughput/fake.py``, its own process, so its memory is not counted), the web chat served,
the reminder scheduler on — in its own process (``bench/throughput/bots.py ours --web-chat
--scheduler``). Its resident set (VmRSS from ``/proc/<pid>/status``) is read:

1. **idle**: a few seconds after start-up (``--settle``);
2. **1,000 open conversations**: ``--people`` staff are seeded (schools of ten) and linked; half of
   them open ``/camera`` and answer up to "how long?" (camera typed, ``Hôm nay``, ``8h30``), the other
   half open ``/hoso`` and tap ✏️ e-mail; all at once, through the real Telegram adapter. RSS is read
   once every conversation is open (checked in the database) and again after ``--settle`` seconds;
   the peak (VmHWM) is shown too.

For reference the idle RSS of a bare python-telegram-bot echo bot is printed alongside.
Targets: ≤ 150 MB idle, ≤ 250 MB with 1,000 open conversations."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "throughput"))

from aiohttp import ClientSession, ClientTimeout  # noqa: E402
from common import HERE, BenchDb, Child, count_rows, machine, memory_kb, seed  # noqa: E402

IDLE_TARGET_MB = 150
BUSY_TARGET_MB = 250


def mb(kb: int) -> float:
    return kb / 1024


async def one_run(args: argparse.Namespace, work: Path, fake: Child, http: ClientSession, db_kind: str,
                  rep: int) -> dict[str, Any]:
    folder = work / f"data-{db_kind}-{rep}"
    db = BenchDb.postgresql(args.pg_url, "mem") if db_kind == "postgresql" else BenchDb.sqlite(folder)
    out: dict[str, Any] = {"db": db_kind}
    try:
        seeded = await asyncio.to_thread(seed, db.url, args.people)
        control = f"http://127.0.0.1:{fake.info['control']}"
        async with http.post(f"{control}/reset") as r:
            r.raise_for_status()
        bot = await Child.spawn(HERE / "bots.py", ["ours", "--api-port", str(fake.info["api"]), "--db-url", db.url,
                                                   "--data-dir", str(folder), "--web-chat", "--scheduler"],
                                work / "bot-memory.log", cwd=work)
        try:
            await asyncio.sleep(args.settle)
            out["idle"] = memory_kb(bot.pid)
            t0 = time.perf_counter()
            plan = {"scenario": "memory", "teachers": seeded.teachers, "principals": seeded.principals,
                    "step_timeout": 120.0}
            async with http.post(f"{control}/run", json=plan) as r:
                r.raise_for_status()
                fig = await r.json()
            # every conversation open in the database (the driver only waits for the answers)
            deadline = time.monotonic() + 60
            while True:
                counts = await asyncio.to_thread(count_rows, db.url)
                if counts["open_conversations"] >= args.people or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
            out["drive_s"] = time.perf_counter() - t0
            out["busy"] = memory_kb(bot.pid)
            await asyncio.sleep(args.settle)
            out["settled"] = memory_kb(bot.pid)
            out["open_conversations"] = counts["open_conversations"]
            out["updates"] = fig["sent"]
            out["timeouts"] = fig["timeouts"]
            out["unexpected"] = fig["unexpected"]
        finally:
            stopped = await bot.stop()
            out["processed"] = stopped.get("processed")
    finally:
        await asyncio.to_thread(db.drop)
    return out


async def echo_idle(work: Path, fake: Child, settle: float) -> dict[str, int]:
    bot = await Child.spawn(HERE / "bots.py", ["echo", "--api-port", str(fake.info["api"])],
                            work / "bot-echo.log", cwd=work)
    try:
        await asyncio.sleep(settle)
        return memory_kb(bot.pid)
    finally:
        await bot.stop()


async def main_async(args: argparse.Namespace) -> int:
    dbs = ["sqlite"] if args.db in (None, "sqlite") else []
    if args.db in (None, "postgresql") and args.pg_url:
        dbs.append("postgresql")
    if args.db == "postgresql" and not args.pg_url:
        print("--db postgresql needs --pg-url or TEST_DATABASE_URL", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    print(f"memory benchmark — {datetime.now():%Y-%m-%d %H:%M}, {machine()}")
    print(f"{args.people} people with an open conversation each; databases {', '.join(dbs)}; "
          f"repeats {args.repeat}; settle {args.settle:g}s")
    results: list[dict[str, Any]] = []
    try:
        fake = await Child.spawn(HERE / "fake.py", [], work / "fake.log", cwd=work)
        try:
            async with ClientSession(timeout=ClientTimeout(total=3600)) as http:
                echo = await echo_idle(work, fake, args.settle)
                print(f"bare python-telegram-bot echo bot, idle: RSS {mb(echo.get('VmRSS', 0)):.1f} MB (reference)")
                print(f"{'database':<11} {'idle MB':>8} {'1k open MB':>11} {'+settle MB':>11} {'peak MB':>8} "
                      f"{'open conv':>9} {'updates':>8} {'drive s':>8}")
                for rep in range(args.repeat):
                    for db_kind in dbs:
                        r = await one_run(args, work, fake, http, db_kind, rep)
                        results.append(r)
                        print(f"{r['db']:<11} {mb(r['idle']['VmRSS']):>8.1f} {mb(r['busy']['VmRSS']):>11.1f} "
                              f"{mb(r['settled']['VmRSS']):>11.1f} {mb(r['settled'].get('VmHWM', 0)):>8.1f} "
                              f"{r['open_conversations']:>9} {r['updates']:>8} {r['drive_s']:>8.1f}"
                              + (f"  timeouts={r['timeouts']}" if r["timeouts"] else ""), flush=True)
        finally:
            await fake.stop()
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    print()
    for db_kind in dbs:
        rs = [r for r in results if r["db"] == db_kind]
        idle = statistics.median(mb(r["idle"]["VmRSS"]) for r in rs)
        busy = statistics.median(max(mb(r["busy"]["VmRSS"]), mb(r["settled"]["VmRSS"])) for r in rs)
        peak = statistics.median(mb(r["settled"].get("VmHWM", 0)) for r in rs)
        print(f"{db_kind}: idle {idle:.1f} MB (target ≤ {IDLE_TARGET_MB} MB: "
              f"{'met' if idle <= IDLE_TARGET_MB else 'MISSED'}); with {args.people} open conversations "
              f"{busy:.1f} MB, peak {peak:.1f} MB (target ≤ {BUSY_TARGET_MB} MB: "
              f"{'met' if max(busy, peak) <= BUSY_TARGET_MB else 'MISSED'}) — medians of {len(rs)}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--people", type=int, default=1000)
    ap.add_argument("--db", choices=["sqlite", "postgresql"], default=None,
                    help="only this database (default: SQLite, and PostgreSQL when a URL is given)")
    ap.add_argument("--pg-url", default=os.environ.get("TEST_DATABASE_URL", ""))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--settle", type=float, default=3.0, help="seconds to wait before reading the idle figure")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    ap.add_argument("--json", default="", help="write the figures of every run to this file")
    args = ap.parse_args()
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    raise SystemExit(main())
