"""PostgreSQL units run on the event loop over asyncpg (issue #11): no worker
thread, the loop keeps serving while a unit waits for the server, units overlap, a failing unit
leaves nothing behind, and the same ``Database`` works from a second event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from storage.db import Database, asyncpg_dsn
from storage.models import School

from .conftest import PG_SCHEMA, PG_URL, _reset_pg

pytestmark = pytest.mark.skipif(not PG_URL, reason="PostgreSQL tests need TEST_DATABASE_URL")


@pytest.fixture
def pg() -> Iterator[Database]:
    database = Database(PG_URL)
    _reset_pg(database)
    yield database
    database.dispose()


def _add(name: str):
    def unit(s):
        s.add(School(name=name, short_name=name))
        s.flush()
        return threading.get_ident()
    return unit


def _names(db: Database) -> list[str]:
    return db.run_sync(lambda s: sorted(x.name for x in s.exec(select(School)).all()))


def test_asyncpg_gets_the_same_server_user_and_options():
    url = "postgresql+psycopg://u:p%40ss@db.example:6543/school?options=-csearch_path%3Dx&sslmode=require"
    assert asyncpg_dsn(url) == "postgresql://u:p%40ss@db.example:6543/school?options=-csearch_path%3Dx&sslmode=require"


async def test_the_options_of_the_address_reach_the_server(pg: Database):
    # the tests' address sets search_path (a schema per run) and application_name through libpq options
    got = await pg.run(lambda s: s.execute(text("SELECT current_schema(), current_setting('application_name')")).one())
    assert tuple(got) == (PG_SCHEMA, PG_SCHEMA)


async def test_units_run_on_the_loop_thread_and_commit(pg: Database):
    assert pg.async_units
    assert await pg.run(_add("A")) == threading.get_ident()
    assert pg.thread_units == 0 and pg.async_units_run == 1
    assert _names(pg) == ["A"]  # committed: another connection sees it


async def test_the_loop_keeps_running_while_a_unit_waits_for_a_lock(pg: Database):
    await pg.run(_add("A"))
    other = pg.engine.connect()  # another session holds the row
    other.execute(text("UPDATE school SET name = 'B' WHERE name = 'A'"))

    def rename(s):
        return s.execute(text("UPDATE school SET name = 'C' WHERE name = 'A' RETURNING id")).first()
    task = asyncio.ensure_future(pg.run(rename))
    ticks = 0
    for _ in range(20):
        await asyncio.sleep(0.01)
        ticks += 1
    assert ticks == 20 and not task.done()  # the loop was never blocked by the waiting unit
    other.commit()
    other.close()
    assert await asyncio.wait_for(task, 30) is None  # after the other commit there is no 'A' left
    assert _names(pg) == ["B"]


async def test_units_overlap_instead_of_queueing(pg: Database):
    def nap(s):
        s.execute(text("SELECT pg_sleep(0.3)"))
        return 1
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    assert sum(await asyncio.gather(*(pg.run(nap) for _ in range(8)))) == 8
    # eight 0.3 s units one after the other would take 2.4 s
    assert loop.time() - t0 < 1.5


async def test_a_failing_unit_is_rolled_back_and_its_error_is_sqlalchemys(pg: Database):
    await pg.run(_add("A"))

    def two(s):
        s.add(School(name="B"))
        s.flush()
        s.add(School(name="A"))  # the name is unique
        s.flush()
    with pytest.raises(IntegrityError):
        await pg.run(two)
    assert _names(pg) == ["A"]  # B went with the failed unit
    assert await pg.run(_add("C")) == threading.get_ident()  # the connection went back clean
    assert _names(pg) == ["A", "C"]


async def test_statement_listeners_reach_the_asyncio_engine(pg: Database):
    seen: list[str] = []

    def count(_c, _cur, statement, *_a) -> None:
        seen.append(statement)
    pg.listen("before_cursor_execute", count)
    await pg.run(lambda s: s.execute(text("SELECT 41 + 1")).scalar())
    assert any("41 + 1" in x for x in seen)
    pg.unlisten("before_cursor_execute", count)
    seen.clear()
    await pg.run(lambda s: s.execute(text("SELECT 41 + 1")).scalar())
    assert seen == []


def test_the_same_database_serves_a_second_event_loop(pg: Database):
    async def add(name: str) -> str:
        await pg.run(_add(name))
        return name
    assert asyncio.run(add("A")) == "A"
    assert asyncio.run(add("B")) == "B"  # the first loop's engine is gone with its loop
    assert _names(pg) == ["A", "B"]


async def test_aclose_closes_the_connections(pg: Database):
    await pg.run(_add("A"))
    pid = await pg.run(lambda s: s.execute(text("SELECT pg_backend_pid()")).scalar())
    await pg.aclose()
    with pg.engine.connect() as conn:
        alive = conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE pid = :p"), {"p": pid}).scalar()
    assert alive == 0


async def test_at_most_units_at_once_run_together_first_come_first_served(pg: Database):
    gated = Database(PG_URL, units_at_once=2)
    running, most, started = 0, 0, []

    def unit(i: int):
        def fn(s):
            nonlocal running, most
            running += 1
            most = max(most, running)
            started.append(i)
            try:
                s.execute(text("SELECT pg_sleep(0.05)"))
                s.add(School(name=f"S{i}", short_name=f"S{i}"))
                s.flush()
            finally:
                running -= 1
        return fn
    try:
        await asyncio.gather(*(gated.run(unit(i)) for i in range(6)))
    finally:
        await gated.aclose()
        gated.dispose()
    assert most == 2  # never more than the gate lets through, and it did overlap two
    assert started == list(range(6))  # in the order they came
    assert _names(pg) == [f"S{i}" for i in range(6)]
    with pytest.raises(ValueError):
        Database(PG_URL, units_at_once=0)


async def test_aclose_waits_for_units_still_waiting_at_the_gate(pg: Database):
    gated = Database(PG_URL, units_at_once=1)

    def slow(name: str):
        def fn(s):
            s.execute(text("SELECT pg_sleep(0.1)"))
            s.add(School(name=name, short_name=name))
        return fn
    tasks = [asyncio.ensure_future(gated.run(slow(n))) for n in "ABC"]
    await asyncio.sleep(0.02)  # A runs, B and C wait for the gate
    await gated.aclose()
    gated.dispose()
    assert all(t.done() and t.exception() is None for t in tasks)
    assert _names(pg) == ["A", "B", "C"]
