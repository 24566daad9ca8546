"""Engine, sessions and migrations.

Work on the database is done in short synchronous units — one session per event — run in a
worker thread so the event loop stays free. SQLite (the embedded default, WAL mode) allows one
writer, so units are serialised in-process; PostgreSQL runs them concurrently and relies on
row-level conditional updates where it matters."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError, OperationalError
from sqlalchemy.pool import NullPool, StaticPool
from sqlmodel import Session, create_engine

log = logging.getLogger(__name__)
T = TypeVar("T")

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

#: a pooled PostgreSQL connection idle at least this long is pinged before it is handed out
PING_IDLE_AFTER = 30.0
#: and none is kept longer than this (server-side idle timeouts, load balancers)
RECYCLE_AFTER = 1800


def _sqlite_pragmas(engine: Engine, *, busy_timeout_ms: int) -> None:
    """WAL (readers never wait for the writer), foreign keys, and how long a writer waits for another."""
    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:  # pragma: no cover - trivial
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cur.close()


def make_engine(url: str, *, echo: bool = False) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False, "timeout": 30}}
        if path in ("", ":memory:"):
            kwargs["poolclass"] = StaticPool
        engine = create_engine(url, echo=echo, **kwargs)
        _sqlite_pragmas(engine, busy_timeout_ms=30000)
        return engine
    engine = create_engine(url, echo=echo, pool_size=10, max_overflow=10, pool_recycle=RECYCLE_AFTER)
    _ping_idle_connections(engine)
    return engine


def _ping_idle_connections(engine: Engine) -> None:
    """Pessimistic disconnect handling, only for connections that sat idle in the pool.

    ``pool_pre_ping`` would cost a round trip per unit of work (per event) — under load the
    connections are handed out again milliseconds after their return and cannot have gone stale
    unnoticed. A connection idle ``PING_IDLE_AFTER`` seconds or more is pinged at checkout and, if
    the ping fails, replaced (the pool retries with a fresh one). A connection broken in the last
    seconds (the server restarted under traffic) fails its unit like the units in flight at that
    moment, and SQLAlchemy then discards every connection older than the failure (optimistic
    handling), so the next units get fresh ones."""

    @event.listens_for(engine.pool, "checkin")
    def _checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.pool, "checkout")
    def _checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < PING_IDLE_AFTER:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
            dbapi_conn.rollback()  # leave no transaction open behind the ping
        except Exception as exc:
            log.info("pooled database connection idle %.0f s is gone; reconnecting", time.monotonic() - since)
            raise DisconnectionError() from exc


def _inline_engine(url: str, *, echo: bool = False) -> Engine | None:
    """A one-connection engine on the same SQLite file for units run on the event loop: it never
    waits for a lock held by another process (``busy_timeout`` 0) — the unit goes to a thread."""
    path = url.split("///", 1)[1] if "///" in url else ""
    if not path or path == ":memory:" or "mode=memory" in url:
        return None  # an in-memory database has one shared connection: no second one
    engine = create_engine(url, echo=echo, pool_size=1, max_overflow=0,
                           connect_args={"check_same_thread": False, "timeout": 0})
    _sqlite_pragmas(engine, busy_timeout_ms=0)
    return engine


def _busy(exc: OperationalError) -> bool:
    text_ = str(exc.orig).lower() if exc.orig is not None else str(exc).lower()
    return "locked" in text_ or "busy" in text_


class Database:
    """Owns the engine; hands out sessions; runs units of work.

    On PostgreSQL units run in worker threads, concurrently. On an SQLite file, where units are
    serialised anyway (one writer), a unit runs directly on the event loop when the write lock is
    free: handing it to a thread costs more than most units (the executor, waking the loop, the two
    threads taking turns with the GIL). If another *process* holds the database (a CLI command, a
    backup), the inline attempt fails at once (``busy_timeout`` 0 on its own connection), is rolled
    back and the unit runs again in a thread that waits for the lock, so the loop is never blocked
    waiting for another process. Units must therefore be safe to run again after a rollback (they
    only touch their session and objects they create)."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.engine = make_engine(url, echo=echo)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self._write_lock = threading.Lock() if self.is_sqlite else None
        self._inline_engine = _inline_engine(url, echo=echo) if self.is_sqlite else None
        self._local = threading.local()
        self.inline_units = 0
        self.thread_units = 0

    @contextmanager
    def session(self, engine: Engine | None = None) -> Iterator[Session]:
        """A session that commits on success and rolls back on error."""
        with Session(engine or self.engine, expire_on_commit=False) as s:
            try:
                yield s
                s.commit()
            except BaseException:
                s.rollback()
                raise

    def run_sync(self, fn: Callable[[Session], T]) -> T:
        if getattr(self._local, "inline", False):  # from run(): the write lock is already held
            with self.session(self._inline_engine) as s:
                return fn(s)
        if self._write_lock is not None:
            with self._write_lock, self.session() as s:
                return fn(s)
        with self.session() as s:
            return fn(s)

    async def run(self, fn: Callable[[Session], T]) -> T:
        """Run ``fn(session)`` as one committed unit, off the event loop unless it is cheaper on it
        (see the class docstring)."""
        lock = self._write_lock
        if self._inline_engine is not None and lock is not None and lock.acquire(blocking=False):
            self._local.inline = True
            try:
                result = self.run_sync(fn)
                self.inline_units += 1
                return result
            except OperationalError as exc:
                if not _busy(exc):
                    raise
                log.info("database held by another process; this unit waits in a thread")
            finally:
                self._local.inline = False
                lock.release()
        self.thread_units += 1
        return await asyncio.to_thread(self.run_sync, fn)

    def migrate(self) -> None:
        migrate(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()
        if self._inline_engine is not None:
            self._inline_engine.dispose()


def alembic_config(engine: Engine) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    cfg.attributes["engine"] = engine
    return cfg


def migrate(engine: Engine) -> None:
    """Apply every Alembic migration (idempotent). Runs at start, before anything else."""
    from alembic import command

    cfg = alembic_config(engine)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            # Several processes may start at once against one district database.
            conn.execute(text("SELECT pg_advisory_xact_lock(7318201)"))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


__all__ = ["Database", "NullPool", "make_engine", "migrate", "alembic_config"]
