"""SQLite units run on the event loop when the write lock is free, and in a thread (without blocking
the loop) when another process holds the database."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

from sqlmodel import select

from storage.db import Database
from storage.models import School


def _add(name: str):
    def unit(s):
        s.add(School(name=name, short_name=name))
        return threading.get_ident()
    return unit


async def test_units_run_inline_when_free_and_in_a_thread_when_another_process_writes(tmp_path: Path):
    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    db.migrate()
    try:
        loop_thread = threading.get_ident()
        assert await db.run(_add("A")) == loop_thread
        assert db.inline_units == 1

        # Another process (here: another connection) holds the write lock.
        other = sqlite3.connect(tmp_path / "x.db", isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")
        task = asyncio.ensure_future(db.run(_add("B")))
        ticks = 0
        for _ in range(20):  # the loop keeps running while the unit waits
            await asyncio.sleep(0.01)
            ticks += 1
        assert ticks == 20 and not task.done()
        other.execute("COMMIT")
        other.close()
        ran_in = await asyncio.wait_for(task, 30)
        assert ran_in != loop_thread and db.thread_units >= 1
        names = db.run_sync(lambda s: sorted(x.name for x in s.exec(select(School)).all()))
        assert names == ["A", "B"]  # the unit that hit the lock ran once, after it
    finally:
        db.dispose()


async def test_an_in_memory_database_always_uses_its_one_connection():
    db = Database("sqlite:///:memory:")
    db.migrate()
    try:
        await db.run(_add("A"))
        assert db.inline_units == 0 and db.thread_units == 1
    finally:
        db.dispose()


async def test_sqlite_without_a_path_is_one_in_memory_database(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    db = Database("sqlite://")
    db.migrate()  # on the same (only) connection the units use
    try:
        await db.run(_add("A"))
        assert db.run_sync(lambda s: [x.name for x in s.exec(select(School)).all()]) == ["A"]
        assert list(tmp_path.iterdir()) == []  # no folder named after the address
    finally:
        db.dispose()
