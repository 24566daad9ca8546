"""Throughput benchmark (not a test): our bot against a bare python-telegram-bot echo bot.

    .venv/bin/python bench/throughput/run.py [--updates N] [--rate R] [--db sqlite|postgresql]
                                             [--repeat 3] [--people 60] [--pg-url URL] [--pool 16] [--limiter]

A fake Bot API (``tests/fakes/telegram_server.py``'s FakeTelegram plus a load driver,
``bench/throughput/fake.py``) runs in its own process on 127.0.0.1. Each phase starts a fresh bot
process (``bench/throughput/bots.py``) polling it:

* **ours**: the real Runtime — Telegram adapter (python-telegram-bot), dispatcher, flows, approvals
  and the database (a fresh SQLite file per phase; a private PostgreSQL schema when
  ``TEST_DATABASE_URL`` or ``--pg-url`` is given). ``--people`` staff are seeded in schools of ten (a
  principal and nine teachers) and linked to Telegram ids. Each teacher loops over ``/start``,
  ``/menu``, ``/hoso`` → ✏️ e-mail → typed address → ✅ done, ``/camera`` → ``cổng`` → ``Hôm nay`` →
  ``8h30`` → 5 min → purpose → 📨 send; the principal taps ``ap:<id>:ok`` on each card; the teacher
  waits for the "approved" notice, then starts over.
* **echo**: ``Application`` + ``MessageHandler`` echoing text (+ a ``CallbackQueryHandler`` that
  answers the tap and echoes its data), same fake, same update stream shape (the same 14 updates per
  cycle, the same number of users), same concurrency.

Two modes per bot, in each repeat: **closed loop** (every user sends its next update as soon as the
previous one is answered: the maximum throughput, updates/s) and **fixed rate** (``--rate`` updates/s,
open loop: latency at a given load; the teachers enter one by one over a cycle, ``--lockstep`` all at
once). Latency of a step = from the update being handed out by
getUpdates to the first sendMessage/editMessageText answering it arriving at the fake.

Targets: ours ≥ 0.5 × the echo bot's updates/s; p99 < 50 ms at 100 updates/s. Ratios are taken
inside one repeat (the machine is shared and noisy); medians over the repeats are printed last.
``--pool 16`` gives both bots the same HTTP connection pool (python-telegram-bot's default of 256 lets
the number of connections, and with it httpcore's per-request cost, vary from run to run).
See bench/README.md for the figures and how to read them."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from aiohttp import ClientSession, ClientTimeout  # noqa: E402
from common import (  # noqa: E402
    FIRST_UID,
    HERE,
    SCHOOL_SIZE,
    BenchDb,
    Child,
    count_rows,
    cpu_seconds,
    machine,
    postgres_cpu_seconds,
    seed,
)
from fake import APPROVE, TEACHER  # noqa: E402


@dataclass
class Phase:
    bot: str  # ours | echo
    db: str  # sqlite | postgresql | -
    mode: str  # closed | rate
    limiter: bool = False
    http: str = ""  # the Bot API HTTP client when not the bot's default (echo: httpx, ours: aiohttp)
    threads: bool = False  # PostgreSQL units in worker threads (the design before asyncio units)
    chat_lock: bool = True  # PostgreSQL: the conversation's lock in the database (Dispatcher._mark)

    @property
    def name(self) -> str:
        extra = (("+limiter" if self.limiter else "") + (f"+{self.http}" if self.http else "")
                 + ("+threads" if self.threads else "") + ("" if self.chat_lock else "+nolock"))
        return f"{self.bot}{extra}/{self.db}/{self.mode}"


def uids(people: int) -> tuple[list[int], list[int]]:
    """(teachers, principals) Telegram ids, as ``common.seed`` assigns them."""
    teachers: list[int] = []
    principals: list[int] = []
    for i in range(people):
        (principals if i % SCHOOL_SIZE == 0 else teachers).append(FIRST_UID + i)
    return teachers, principals


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.fake: Child | None = None
        self.n = 0
        self.http: ClientSession | None = None

    async def __aenter__(self) -> Bench:
        self.fake = await Child.spawn(HERE / "fake.py", [], self.work / "fake.log", cwd=self.work)
        self.http = ClientSession(timeout=ClientTimeout(total=3600))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.http is not None:
            await self.http.close()
        if self.fake is not None:
            await self.fake.stop()

    async def control(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        assert self.http is not None and self.fake is not None
        async with self.http.post(f"http://127.0.0.1:{self.fake.info['control']}{path}", json=body or {}) as r:
            r.raise_for_status()
            return await r.json()  # type: ignore[no-any-return]

    async def phase(self, ph: Phase, count: int, rate: float | None) -> dict[str, Any]:
        a = self.args
        assert self.fake is not None
        teachers, principals = uids(a.people)
        db: BenchDb | None = None
        bot_args = [ph.bot, "--api-port", str(self.fake.info["api"]), "--concurrency", str(a.concurrency)]
        if ph.bot == "ours":
            folder = self.work / f"data-{ph.db}"
            db = BenchDb.postgresql(a.pg_url, "tp") if ph.db == "postgresql" else BenchDb.sqlite(folder)
            seeded = await asyncio.to_thread(seed, db.url, a.people)
            teachers, principals = seeded.teachers, seeded.principals
            bot_args += ["--db-url", db.url, "--data-dir", str(folder)]
            if ph.limiter:
                bot_args.append("--limiter")
            if ph.threads:
                bot_args += ["--pg-units", "thread"]
            if not ph.chat_lock:
                bot_args.append("--no-chat-lock")
            if a.pyinstrument:
                bot_args += ["--pyinstrument", str(self.work / f"profile-{ph.db}-{ph.mode}.txt")]
        if a.pool:
            bot_args += ["--pool", str(a.pool)]
        if ph.http:
            bot_args += ["--http", ph.http]
        wrap: list[str] | None = None
        if a.py_spy:
            out = self.work / f"py-spy-{ph.bot}-{ph.db}-{ph.mode}.txt"
            wrap = [str(Path(a.py_spy).resolve()), "record", "--format", "raw", "--rate", "250", "--threads", "--nonblocking",
                    *(["--gil"] if a.py_spy_gil else []), "-o", str(out), "--"]
        await self.control("/reset")
        self.n += 1
        log = self.work / f"bot-{self.n:02d}-{ph.name.replace('/', '-')}.log"
        bot = await Child.spawn(HERE / "bots.py", bot_args, log, cwd=self.work, wrap=wrap)
        bot_pid = _python_pid(bot) if wrap else bot.pid
        fake_pid = self.fake.pid
        try:
            cpu0 = (cpu_seconds(bot_pid), cpu_seconds(fake_pid))
            pg0 = postgres_cpu_seconds() if ph.db == "postgresql" else 0.0
            t0 = time.perf_counter()
            plan = {"scenario": ph.bot, "teachers": teachers, "principals": principals, "count": count,
                    "warmup": a.warmup, "rate": rate, "step_timeout": a.step_timeout, "stagger": not a.lockstep,
                    "transcripts": [teachers[0], principals[0]] if a.transcripts else []}
            fig = await self.control("/run", plan)
            wall = fig.get("wall_s") or time.perf_counter() - t0  # (the driver's, without its final settle)
            cpu1 = (cpu_seconds(bot_pid), cpu_seconds(fake_pid))
            if ph.db == "postgresql":
                fig["pg_server_cpu_ms_per_update"] = (postgres_cpu_seconds() - pg0) * 1000 / max(1, fig["sent"])
        finally:
            stopped = await bot.stop()
        sent = max(1, fig["sent"])
        fig.update(phase=ph.name, bot_cpu_ms_per_update=(cpu1[0] - cpu0[0]) * 1000 / sent,
                   fake_cpu_ms_per_update=(cpu1[1] - cpu0[1]) * 1000 / sent,
                   bot_cpu_share=(cpu1[0] - cpu0[0]) / wall, fake_cpu_share=(cpu1[1] - cpu0[1]) / wall,
                   bot_rss_mb=stopped.get("memory_kb", {}).get("VmRSS", 0) / 1024)
        if ph.bot == "ours":
            # database units are counted from the start: subtract what start-up did (migrations)
            r0 = bot.info
            fig["db_units_per_update"] = (stopped.get("db_units", 0) - r0.get("db_units", 0)) / sent
            fig["db_unit_cpu_ms_per_update"] = (stopped.get("db_unit_cpu_s", 0) - r0.get("db_unit_cpu_s", 0)) * 1000 / sent
            fig["sql_per_update"] = (stopped.get("sql_statements", 0) - r0.get("sql_statements", 0)) / sent
        if db is not None:
            fig["db_counts"] = await asyncio.to_thread(count_rows, db.url)
            await asyncio.to_thread(db.drop)
        return fig


def _python_pid(child: Child) -> int:
    """Under py-spy the bot is py-spy's child."""
    return int(child.info.get("pid") or child.pid)


def fmt(fig: dict[str, Any]) -> str:
    lat = fig["latency_ms"]
    extra = []
    if fig["timeouts"] or fig["notice_timeouts"]:
        extra.append(f"timeouts={fig['timeouts']}+{fig['notice_timeouts']}")
    if fig["unexpected"]:
        extra.append(f"unexpected={fig['unexpected']}")
    if fig["api_errors"]:
        extra.append(f"api_errors={fig['api_errors']}")
    extra.append(f"calls/u={fig['api_calls'] / max(1, fig['sent']):.2f} conns={fig['connections']}")
    if "db_units_per_update" in fig:
        unit_cpu = fig["db_unit_cpu_ms_per_update"]  # NaN: units on the loop over asyncio (not separable)
        extra.append(f"db: {fig['db_units_per_update']:.2f} units/u, {fig['sql_per_update']:.1f} SQL/u, "
                     + ("units on the loop (asyncio)" if math.isnan(unit_cpu) else f"{unit_cpu:.2f} ms CPU/u"))
    if "pg_server_cpu_ms_per_update" in fig:
        extra.append(f"PostgreSQL server {fig['pg_server_cpu_ms_per_update']:.2f} ms CPU/u")
    if fig.get("taps"):
        extra.append(f"cards edited {fig['card_edits']}/{fig['taps']}")
    if fig.get("skipped_ticks"):
        extra.append(f"skipped_ticks={fig['skipped_ticks']}")
    return (f"{fig['phase']:<28} {fig['updates_per_s']:>8.1f} {lat['p50']:>8.1f} {lat['p90']:>8.1f} "
            f"{lat['p99']:>8.1f} {lat['max']:>8.1f} {fig['bot_cpu_ms_per_update']:>8.2f} "
            f"{fig['fake_cpu_ms_per_update']:>8.2f} {fig['bot_cpu_share']:>5.0%} {fig['fake_cpu_share']:>5.0%}"
            + ("  " + " ".join(extra) if extra else ""))


HEADER = (f"{'phase':<28} {'upd/s':>8} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8} "
          f"{'bot ms/u':>8} {'fake ms/u':>8} {'bot%':>5} {'fake%':>5}")


async def main_async(args: argparse.Namespace) -> int:
    dbs = ["sqlite"] if args.db in (None, "sqlite") else []
    if args.db in (None, "postgresql") and args.pg_url:
        dbs.append("postgresql")
    if args.db == "postgresql" and not args.pg_url:
        print("--db postgresql needs --pg-url or TEST_DATABASE_URL", file=sys.stderr)
        return 2
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench-throughput-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"throughput benchmark — {datetime.now():%Y-%m-%d %H:%M}, {machine()}")
    print(f"people={args.people} (schools of {SCHOOL_SIZE}), closed loop {args.updates} updates "
          f"(+{args.warmup} warm-up), fixed rate {args.rate:g}/s × {args.rate_updates} updates, "
          f"concurrency {args.concurrency}, repeats {args.repeat}, databases {', '.join(dbs)}; work dir {work}")
    print("fixed rate: " + ("users start at once and stay in step (--lockstep)" if args.lockstep else
                            "users enter one by one over a cycle; measuring starts when all are in"))
    results: list[dict[str, Any]] = []
    try:
        async with Bench(args, work) as bench:
            print(HEADER)
            for rep in range(args.repeat):
                for db in dbs:
                    plan = [Phase("echo", "-", "closed"), Phase("ours", db, "closed"),
                            Phase("echo", "-", "rate"), Phase("ours", db, "rate")]
                    if args.limiter:
                        plan.append(Phase("ours", db, "rate", limiter=True))
                    if args.transports:  # each bot also on the other one's HTTP client
                        plan += [Phase("echo", "-", "closed", http="aiohttp"), Phase("ours", db, "closed", http="httpx"),
                                 Phase("echo", "-", "rate", http="aiohttp"), Phase("ours", db, "rate", http="httpx")]
                    if args.pg_threads and db == "postgresql":  # the previous design, side by side
                        plan += [Phase("ours", db, "closed", threads=True), Phase("ours", db, "rate", threads=True)]
                    if args.chat_lock and db == "postgresql":  # the conversation's database lock off, next
                        # to each phase with it on (before it in odd repeats: drift hits both alike)
                        plan = [q for p in plan for q in (
                            (p, Phase(p.bot, p.db, p.mode, chat_lock=False))[::1 if rep % 2 == 0 else -1]
                            if p.bot == "ours" and p.db == "postgresql" and not p.threads and not p.http
                            and not p.limiter else (p,))]
                    if db != dbs[0]:
                        plan = [p for p in plan if p.bot == "ours"]  # the echo bot has no database
                    if args.only:
                        plan = [p for p in plan if p.bot == args.only or p.mode == args.only]
                    for ph in plan:
                        count = args.updates if ph.mode == "closed" else args.rate_updates
                        fig = await bench.phase(ph, count, None if ph.mode == "closed" else args.rate)
                        fig["repeat"] = rep
                        results.append(fig)
                        print(fmt(fig), flush=True)
                        if ph.bot == "ours" and args.verbose:
                            print("   ", json.dumps(fig["db_counts"]))
                        for line in fig["timeout_details"]:
                            print("    " + line)
                        for uid, lines in fig["transcripts"].items():
                            print(f"    chat {uid}:")
                            for line in lines:
                                print("      " + line)
    finally:
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1))
        if not args.keep and not args.work and not (args.py_spy or args.pyinstrument):
            shutil.rmtree(work, ignore_errors=True)
    summarize(results, dbs, args)
    return 0


def summarize(results: list[dict[str, Any]], dbs: list[str], args: argparse.Namespace) -> None:
    def pick(rep: int, name: str) -> dict[str, Any] | None:
        return next((r for r in results if r["repeat"] == rep and r["phase"] == name), None)

    print()
    print(f"medians over {args.repeat} repeat(s) (ratios taken within each repeat):")
    for db in dbs:
        ratios, ours_tp, echo_tp, p99_ours, p99_echo, p50_ours, p99_lim = [], [], [], [], [], [], []
        cpu_ratios, ours_cpu, echo_cpu, rate_ours, rate_lim = [], [], [], [], []
        for rep in range(args.repeat):
            e, o = pick(rep, "echo/-/closed"), pick(rep, f"ours/{db}/closed")
            if e and o:
                ratios.append(o["updates_per_s"] / e["updates_per_s"])
                cpu_ratios.append(e["bot_cpu_ms_per_update"] / o["bot_cpu_ms_per_update"])
                ours_cpu.append(o["bot_cpu_ms_per_update"])
                echo_cpu.append(e["bot_cpu_ms_per_update"])
                ours_tp.append(o["updates_per_s"])
                echo_tp.append(e["updates_per_s"])
            er, orr = pick(rep, "echo/-/rate"), pick(rep, f"ours/{db}/rate")
            if er:
                p99_echo.append(er["latency_ms"]["p99"])
            if orr:
                p99_ours.append(orr["latency_ms"]["p99"])
                p50_ours.append(orr["latency_ms"]["p50"])
                rate_ours.append(orr["updates_per_s"])
            lim = pick(rep, f"ours+limiter/{db}/rate")
            if lim:
                p99_lim.append(lim["latency_ms"]["p99"])
                rate_lim.append(lim["updates_per_s"])

        def med(xs: list[float]) -> float:
            return statistics.median(xs) if xs else float("nan")

        if ratios:
            verdict = "met" if med(ratios) >= 0.5 else "MISSED"
            print(f"  {db:<10} throughput: ours {med(ours_tp):.1f}/s, echo {med(echo_tp):.1f}/s, "
                  f"ratio ours/echo {med(ratios):.2f} (each repeat: {', '.join(f'{r:.2f}' for r in ratios)}) "
                  f"— target ≥ 0.5: {verdict}")
            print(f"  {db:<10} CPU per update: ours {med(ours_cpu):.2f} ms, echo {med(echo_cpu):.2f} ms — "
                  f"capacity ratio on a free core (echo CPU / ours CPU) {med(cpu_ratios):.2f}")
        for echo_name, ours_name, what in (
                ("echo/-/closed", f"ours+httpx/{db}/closed", "ours over httpx / echo (both on httpx)"),
                ("echo+aiohttp/-/closed", f"ours/{db}/closed", "ours / echo over aiohttp (both on aiohttp)")):
            same = [(o["updates_per_s"] / e["updates_per_s"]) for rep in range(args.repeat)
                    if (e := pick(rep, echo_name)) and (o := pick(rep, ours_name))]
            if same:
                print(f"  {db:<10} same HTTP client, {what}: {med(same):.2f} "
                      f"(each repeat: {', '.join(f'{r:.2f}' for r in same)})")
        if p99_ours:
            verdict = "met" if med(p99_ours) < 50 else "MISSED"
            print(f"  {db:<10} at {args.rate:g} updates/s offered (ours kept up with {med(rate_ours):.1f}/s): "
                  f"ours p50 {med(p50_ours):.1f} ms, p99 {med(p99_ours):.1f} ms "
                  f"(each: {', '.join(f'{x:.1f}' for x in p99_ours)}); echo p99 {med(p99_echo):.1f} ms "
                  f"— target p99 < 50 ms: {verdict}")
        thr = [(o["updates_per_s"] / e["updates_per_s"], r["latency_ms"]["p99"] if r else float("nan"))
               for rep in range(args.repeat)
               if (e := pick(rep, "echo/-/closed")) and (o := pick(rep, f"ours+threads/{db}/closed"))
               for r in [pick(rep, f"ours+threads/{db}/rate")]]
        if thr:
            print(f"  {db:<10} units in worker threads (the previous design): ratio ours/echo "
                  f"{med([t[0] for t in thr]):.2f} (each: {', '.join(f'{t[0]:.2f}' for t in thr)}), "
                  f"p99 at {args.rate:g}/s {med([t[1] for t in thr]):.1f} ms (each: {', '.join(f'{t[1]:.1f}' for t in thr)})")
        if p99_lim:
            print(f"  {db:<10} at {args.rate:g} updates/s offered, with the production AIORateLimiter (30 msg/s): "
                  f"kept up with {med(rate_lim):.1f}/s, p99 {med(p99_lim):.1f} ms")
        lock = [(on, off) for rep in range(args.repeat) for mode in ("closed", "rate")
                if (on := pick(rep, f"ours/{db}/{mode}")) and (off := pick(rep, f"ours+nolock/{db}/{mode}"))]
        if lock:
            closed = [(on, off) for on, off in lock if on["phase"].endswith("/closed")]
            rated = [(on, off) for on, off in lock if on["phase"].endswith("/rate")]
            if closed:
                tp = [on["updates_per_s"] / off["updates_per_s"] for on, off in closed]
                cpu = [on["bot_cpu_ms_per_update"] / off["bot_cpu_ms_per_update"] for on, off in closed]
                srv = [on["pg_server_cpu_ms_per_update"] / off["pg_server_cpu_ms_per_update"] for on, off in closed
                       if off.get("pg_server_cpu_ms_per_update")]
                print(f"  {db:<10} conversation lock in the database, on / off (closed loop): updates/s "
                      f"{med(tp):.2f} (each: {', '.join(f'{x:.2f}' for x in tp)}), bot CPU per update "
                      f"{med(cpu):.2f}, server CPU per update {med(srv):.2f}")
            if rated:
                p99 = [(on["latency_ms"]["p99"], off["latency_ms"]["p99"]) for on, off in rated]
                p50 = [(on["latency_ms"]["p50"], off["latency_ms"]["p50"]) for on, off in rated]
                print(f"  {db:<10} conversation lock in the database at {args.rate:g}/s: p50 on {med([a for a, _ in p50]):.1f} / "
                      f"off {med([b for _, b in p50]):.1f} ms; p99 on {med([a for a, _ in p99]):.1f} / off "
                      f"{med([b for _, b in p99]):.1f} ms (each on/off: {', '.join(f'{a:.1f}/{b:.1f}' for a, b in p99)})")
    for db in dbs:
        by_step: dict[str, list[tuple[float, float]]] = {}
        for r in results:
            if r["phase"] == f"ours/{db}/rate":
                for label, s in r["by_step_ms"].items():
                    by_step.setdefault(label, []).append((s["p50"], s["p99"]))
        if by_step and args.verbose:
            print(f"  {db}: ours at the fixed rate, p50 / p99 by step (ms, median over repeats):")
            order = {step.label: i for i, step in enumerate([*TEACHER, APPROVE])}  # the script's order
            for label, xs in sorted(by_step.items(), key=lambda kv: order.get(kv[0], len(order))):
                print(f"    {label:<28} {statistics.median(x[0] for x in xs):7.1f} "
                      f"{statistics.median(x[1] for x in xs):7.1f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--updates", type=int, default=3000, help="measured updates per closed-loop phase")
    ap.add_argument("--warmup", type=int, default=300, help="updates before measuring, per phase")
    ap.add_argument("--rate", type=float, default=100.0, help="updates/s of the fixed-rate phases")
    ap.add_argument("--rate-updates", type=int, default=1500, help="measured updates per fixed-rate phase")
    ap.add_argument("--db", choices=["sqlite", "postgresql"], default=None,
                    help="only this database (default: SQLite, and PostgreSQL when a URL is given)")
    ap.add_argument("--pg-url", default=os.environ.get("TEST_DATABASE_URL", ""),
                    help="PostgreSQL server (default: $TEST_DATABASE_URL); a private schema is used and dropped")
    ap.add_argument("--people", type=int, default=60,
                    help="staff seeded and active (schools of ten); 60 keep either bot saturated in the closed "
                         "loop while every teacher goes through several whole cycles")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=64, help="updates handled at once by either bot")
    ap.add_argument("--limiter", action="store_true",
                    help="also run ours at the fixed rate with the production AIORateLimiter")
    ap.add_argument("--only", choices=["ours", "echo", "closed", "rate"], help="run only these phases")
    ap.add_argument("--pool", type=int, default=0,
                    help="give both bots this HTTP connection pool size (default: python-telegram-bot's 256, "
                         "whose per-request cost grows with the connections it has opened)")
    ap.add_argument("--pg-threads", action="store_true",
                    help="also run ours on PostgreSQL with its units in worker threads (the previous design)")
    ap.add_argument("--chat-lock", action="store_true",
                    help="also run ours on PostgreSQL without the conversation's lock in the database, next to "
                         "each phase with it (what the lock that keeps several processes in step costs)")
    ap.add_argument("--transports", action="store_true",
                    help="also run the echo bot over aiohttp and ours over httpx (the same HTTP client for both)")
    ap.add_argument("--lockstep", action="store_true",
                    help="fixed rate: start every user at once (they then stay in step, and each round's "
                         "footage requests reach the bot together) instead of one by one over a cycle")
    ap.add_argument("--step-timeout", type=float, default=30.0)
    ap.add_argument("--py-spy", default="", help="path of py-spy: profile our bot (raw stacks in the work dir)")
    ap.add_argument("--py-spy-gil", action="store_true",
                    help="with --py-spy: only samples of the thread holding the GIL (where the CPU goes)")
    ap.add_argument("--pyinstrument", action="store_true", help="profile our bot's event loop with pyinstrument")
    ap.add_argument("--work", default="", help="work folder (kept); default: a temporary one, removed")
    ap.add_argument("--keep", action="store_true", help="keep the temporary work folder")
    ap.add_argument("--json", default="", help="write every phase's figures to this file")
    ap.add_argument("--transcripts", action="store_true", help="print the chats of one teacher and one principal")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    raise SystemExit(main())
