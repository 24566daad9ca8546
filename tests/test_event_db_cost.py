"""What every inbound event pays in the database (issue #11): the duplicate check is the insert
itself, identity + person + school (+ whether notices are held) are one query, ``last_seen_at``
is written at most once a minute, and an idle pooled PostgreSQL connection that died is replaced."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import create_engine, text
from sqlmodel import select

from bot.core import Inbound
from bot.runtime import Runtime
from storage.models import ChannelIdentity, ProcessedUpdate
from tests.helpers import inbound, make_person, make_school


@pytest.fixture
def rt(runtime):
    def seed(s):
        school = make_school(s)
        make_person(s, school, "Trần Văn Đức", ["principal"], phone="+84987654321", link="900")
    runtime.db.run_sync(seed)
    return runtime


def _statements(rt: Runtime) -> list[str]:
    seen: list[str] = []

    def _count(_conn, _cur, statement, *_a) -> None:
        seen.append(" ".join(statement.split()).lower())
    rt.db.listen("before_cursor_execute", _count)  # every engine units run on (loop, threads, asyncio)
    return seen


def _last_seen(rt: Runtime) -> tuple:
    ident = rt.db.run_sync(lambda s: s.exec(select(ChannelIdentity).where(ChannelIdentity.external_id == "900")).one())
    return ident.last_seen_at, ident.chat_id


async def test_an_event_reads_no_processed_update_no_notice_and_writes_last_seen_once_a_minute(rt, clock):
    await rt.dispatcher.handle(inbound("900", command="menu"))
    first, _ = _last_seen(rt)
    assert first == clock.t
    sql = _statements(rt)
    clock.advance(seconds=30)
    await rt.dispatcher.handle(inbound("900", command="menu"))
    sql = sql[:]  # this event's statements only
    assert rt.test_channel.sent and _last_seen(rt) == (first, "900")  # not rewritten within a minute
    assert not [q for q in sql if q.startswith("select") and "from processed_update" in q]
    assert not [q for q in sql if q.startswith("select notice.")]  # (held notices: no read of their own)
    assert not [q for q in sql if q.startswith("update channel_identity")]
    assert len([q for q in sql if "from channel_identity" in q]) == 1  # identity, person, school at once

    clock.advance(seconds=31)
    await rt.dispatcher.handle(inbound("900", command="menu"))
    assert _last_seen(rt) == (clock.t, "900")
    clock.advance(seconds=1)
    await rt.dispatcher.handle(inbound("900", command="menu", chat_id="901"))  # another chat: at once
    assert _last_seen(rt) == (clock.t, "901")


async def test_a_redelivered_update_is_dropped_by_the_insert(rt):
    msg = inbound("900", command="menu", update_key="again")
    assert await rt.dispatcher.handle(msg)
    sql = _statements(rt)
    assert await rt.dispatcher.handle(msg) == []
    # (on PostgreSQL the same statement takes the conversation's lock first: a CTE the insert selects from)
    first = sql[0]
    if first.startswith("with chat_lock as (select pg_advisory_xact_lock("):
        first = "insert into " + first.split(" insert into ", 1)[1]
    assert len(sql) == 1 and first.startswith("insert into processed_update"), sql
    assert rt.db.run_sync(lambda s: len(s.exec(select(ProcessedUpdate)).all())) == 1


def test_concurrent_deliveries_of_one_update_mark_it_once(db) -> None:
    """The second insert waits for the first transaction and then sees the row (no exception)."""
    from bot.core import Dispatcher

    d = Dispatcher.__new__(Dispatcher)  # only _mark is used
    msg = Inbound(channel="test", user_id="1", chat_id="1", update_key="race-1")
    got: list[bool] = []
    with db.session() as first:
        assert d._mark(first, msg)
        t = threading.Thread(target=lambda: got.append(db.run_sync(lambda s: d._mark(s, msg))))
        t.start()
        t.join(0.3)  # blocked behind the first transaction (or not yet run)
        assert got == []
    t.join(30)
    assert got == [False]


def test_an_idle_pooled_connection_that_died_is_replaced(db, monkeypatch) -> None:
    if db.is_sqlite:
        pytest.skip("PostgreSQL only")
    import storage.db

    monkeypatch.setattr(storage.db, "PING_IDLE_AFTER", 0.0)
    pid = db.run_sync(lambda s: s.exec(text("SELECT pg_backend_pid()")).one()[0])  # type: ignore[call-overload]
    other = create_engine(db.engine.url)  # another client kills the connection idle in the pool
    with other.connect() as conn:
        assert conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()
    other.dispose()
    assert db.run_sync(lambda s: s.exec(text("SELECT 1")).one()[0]) == 1  # type: ignore[call-overload]
