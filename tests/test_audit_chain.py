"""The audit chain written by ``storage.audit.record``: events are written when their transaction
commits (the chain's tail read once, all of them in one insert), linked in the order recorded; a
savepoint or a unit that is rolled back takes its events out (the next row links to what is really
there); every row's hash is what ``verify`` recomputes from the stored row — SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import event, text
from sqlmodel import col, select

from storage import audit
from storage.db import Database
from storage.models import AuditEvent


def _chain(db) -> list[AuditEvent]:
    return db.run_sync(lambda s: list(s.exec(select(AuditEvent).order_by(col(AuditEvent.id)))))


def test_rows_of_one_transaction_link_and_verify(db):
    reads: list[str] = []

    def count(_c, _cur, statement, *_a) -> None:
        if "audit_event" in statement:
            reads.append(statement)
    event.listen(db.engine, "before_cursor_execute", count)

    def three(s) -> None:
        audit.record(s, action="t.one", subject="a", details={"n": 1, "tên": "Đức"})
        audit.record(s, action="t.two", school_id=3, actor_id=7, channel="telegram",
                     details={"when": datetime(2026, 11, 23, 2, 0, tzinfo=UTC)})
        audit.record(s, action="t.three", at=datetime(2026, 11, 23, 9, 0))  # naive: taken as UTC
        assert not reads  # nothing written before the commit
    db.run_sync(three)
    event.remove(db.engine, "before_cursor_execute", count)
    assert len(reads) == 2  # at the commit: the tail read once, one insert for the three
    rows = _chain(db)
    assert [r.action for r in rows] == ["t.one", "t.two", "t.three"]
    assert rows[0].prev_hash == audit.GENESIS
    assert [r.prev_hash for r in rows[1:]] == [r.hash for r in rows[:-1]]
    assert rows[1].details == {"when": "2026-11-23 02:00:00+00:00"}
    assert all(audit.compute_hash(r) == r.hash for r in rows)
    assert db.run_sync(audit.verify).ok


def test_a_rolled_back_savepoint_leaves_no_gap_in_the_chain(db):
    def unit(s) -> None:
        audit.record(s, action="t.before")
        try:
            with s.begin_nested():
                audit.record(s, action="t.inside")
                raise RuntimeError("undone")
        except RuntimeError:
            pass
        audit.record(s, action="t.after")  # links to t.before, not to the row undone
        with s.begin_nested():
            audit.record(s, action="t.kept")
        audit.record(s, action="t.last")
    db.run_sync(unit)
    db.run_sync(lambda s: audit.record(s, action="t.next_unit"))
    rows = _chain(db)
    assert [r.action for r in rows] == ["t.before", "t.after", "t.kept", "t.last", "t.next_unit"]
    assert [r.prev_hash for r in rows[1:]] == [r.hash for r in rows[:-1]]
    result = db.run_sync(audit.verify)
    assert result.ok and result.checked == 5


def test_a_failed_unit_leaves_no_event_and_a_read_sees_the_units_own(db):
    def failing(s) -> None:
        audit.record(s, action="t.lost")
        raise RuntimeError("the unit fails")
    try:
        db.run_sync(failing)
    except RuntimeError:
        pass

    def reads_own(s) -> list[str]:
        audit.record(s, action="t.mine")
        return [e.action for e in audit.events(s)]  # written before it is read
    assert db.run_sync(reads_own) == ["t.mine"]
    assert [r.action for r in _chain(db)] == ["t.mine"] and db.run_sync(audit.verify).ok


def test_a_changed_row_is_found(db):
    db.run_sync(lambda s: [audit.record(s, action=f"t.{i}") for i in range(3)])

    def tamper(s) -> None:
        row = s.exec(select(AuditEvent).where(AuditEvent.action == "t.1")).one()
        row.subject = "sửa"
        s.add(row)
    db.run_sync(tamper)
    result = db.run_sync(audit.verify)
    assert not result.ok and result.reason == "content"


async def test_appenders_in_several_processes_never_fork_the_chain(db, db_url):
    """Two pools (as two bot processes would have) and worker threads append at once: each event
    links to the one before it, none twice (PostgreSQL's advisory lock; SQLite serves one writer)."""
    if db.is_sqlite:
        pytest.skip("on SQLite one process writes at a time; the cross-process lock is PostgreSQL's")
    pools = [Database(db_url), Database(db_url)]

    def unit(i: int):
        def fn(s) -> None:
            s.execute(text("SELECT pg_sleep(0.01)"))  # the units overlap up to their commits
            audit.record(s, action="t.race", subject=str(i))
        return fn
    try:
        await asyncio.gather(*(pools[i % 2].run(unit(i)) for i in range(24)),
                             *(asyncio.to_thread(db.run_sync, unit(100 + i)) for i in range(6)))
    finally:
        for p in pools:
            await p.aclose()
            p.dispose()
    rows = _chain(db)
    assert len(rows) == 30
    assert len({r.prev_hash for r in rows}) == 30  # no two events hang off the same one
    assert db.run_sync(audit.verify).ok
