"""Summarise a py-spy raw profile (``run.py --py-spy .venv/bin/py-spy``) by where the time goes.

    .venv/bin/python bench/throughput/spy_summary.py WORK/py-spy-ours-sqlite-closed.txt [--top 30] [--grep core.py]

Each sample (a stack of an active thread) is put in the first category whose pattern appears in it
(most specific first); the inclusive share of functions matching ``--grep`` is listed too."""

from __future__ import annotations

import argparse
import collections
import re

# (category, substrings of a frame). A sample goes to the category of its innermost frame that matches
# one of them (so time in the standard library counts for whoever called it).
STARTUP = ("_find_and_load", "Database.migrate", "Runtime.start")
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("database: SQLAlchemy / SQLModel / driver", ("sqlalchemy/", "sqlmodel/", "sqlite3", "psycopg")),
    ("HTTP client: httpx / httpcore / anyio", ("httpcore/", "httpx/", "anyio/")),
    ("python-telegram-bot", ("telegram/",)),
    ("our code (bot/, storage/)", ("bot/", "storage/")),
    ("asyncio / executor machinery", ("asyncio/", "concurrent/futures", "threading.py")),
]


def category(body: list[str]) -> str:
    for frame in reversed(body):
        for name, needles in CATEGORIES:
            if any(x in frame for x in needles):
                return name
    return "other"


def frame_key(frame: str) -> str:
    return re.sub(r":\d+\)$", ")", frame)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("path")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--grep", default="bot/", help="list inclusive shares of frames containing this")
    ap.add_argument("--updates", type=int, default=0,
                    help="updates handled while profiling: print milliseconds per update instead of shares")
    ap.add_argument("--hz", type=float, default=250.0, help="py-spy's sampling rate (run.py uses 250)")
    ap.add_argument("--thread", choices=["all", "loop", "workers"], default="all")
    args = ap.parse_args()
    total = 0
    cats: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    with open(args.path, encoding="utf-8") as fh:
        for line in fh:
            stack, _, n_text = line.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            n = int(n_text)
            total += n
            frames = stack.split(";")
            thread = "event loop (MainThread)" if "MainThread" in frames[0] else "worker threads"
            if args.thread != "all" and (args.thread == "loop") != thread.startswith("event"):
                continue
            threads[thread] += n
            body = frames[1:]
            if any(x in f for f in body for x in STARTUP):
                cats["start-up (imports, migrations)"] += n
            else:
                cats[f"{category(body)} [{'loop' if thread.startswith('event') else 'threads'}]"] += n
            for f in set(map(frame_key, body)):
                incl[f] += n
            if body:
                own[frame_key(body[-1])] += n
    def share(n: int) -> str:
        if args.updates:
            return f"{n / args.hz * 1000 / args.updates:6.2f} ms/update"
        return f"{n / total:6.1%}"

    print(f"{total} samples")
    for name, n in threads.most_common():
        print(f"  {share(n)}  {name}")
    print("by category (innermost matching frame):")
    for name, n in cats.most_common():
        print(f"  {share(n)}  {name}")
    print(f"inclusive, frames containing {args.grep!r}:")
    for f, n in incl.most_common():
        if args.grep in f:
            print(f"  {share(n)}  {f}")
            args.top -= 1
            if args.top <= 0:
                break
    print("self time, top 20:")
    for f, n in own.most_common(20):
        print(f"  {share(n)}  {f}")


if __name__ == "__main__":
    main()
