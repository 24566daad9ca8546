"""Engine, sessions and migrations.

Work on the database is done in short synchronous units — one session per event, plain SQLAlchemy /
SQLModel code. How a unit runs depends on the database, never on the unit:

* **SQLite** (the embedded default, WAL mode) allows one writer, so units are serialised in-process;
  a unit runs on the event loop when the write lock is free, in a worker thread when another
  process holds the file (see :class:`Database`).
* **PostgreSQL** runs units concurrently on the event loop itself, over asyncpg: SQLAlchemy's
  asyncio extension runs the unit's synchronous code in a greenlet and
  suspends it at every round trip to the server, so the loop serves other updates meanwhile. No
  thread per unit: a hand-off to a worker thread (executor queue, waking the loop, the GIL taken
  in turns) cost more CPU than the unit's own statements, and under load the executor's queue was
  where the latency tail grew. Row-level conditional updates decide races, as before."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from sqlalchemy import event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DisconnectionError, OperationalError
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.pool import NullPool, StaticPool
from sqlmodel import Session, create_engine

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger(__name__)
T = TypeVar("T")

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

#: a pooled PostgreSQL connection idle at least this long is pinged before it is handed out
PING_IDLE_AFTER = 30.0
#: and none is kept longer than this (server-side idle timeouts, load balancers)
RECYCLE_AFTER = 1800
#: PostgreSQL connections for units on the event loop (per process): beyond them a unit waits its
#: turn on the loop (no thread is blocked). No overflow: a connection opened for a burst and closed
#: right after costs the server a new backend each time (in the benchmark that tripled the server's
#: CPU per update). The synchronous engine (CLI commands, migrations, the scheduler's and the clip
#: cutter's lock connections, tests) keeps a small pool of its own.
ASYNC_POOL_SIZE = 10
ASYNC_MAX_OVERFLOW = 0
#: PostgreSQL units running on the loop at once (per process); the others wait their turn, first
#: come first served. Every statement of a unit is an ``await``: with dozens of units interleaved,
#: a footage request's 17 round trips each waited behind the others' work, and a burst of heavy
#: units (plus the audit chain's lock, held from its read to the commit) made every one of them
#: slow. A few at a time still overlap one unit's round trips with another's work, and a unit that
#: has started finishes before new ones crowd in (bench/README.md, sixth pass: p99 at 100 updates/s
#: with every footage request of a round at once, 94–245 ms without the gate, 35–167 ms with 4;
#: the closed loop's throughput unchanged).
ASYNC_UNITS_AT_ONCE = 4


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


def _sqlite_file(url: str) -> str:
    """The file of an SQLite address; "" for an in-memory database (``sqlite://``, ``sqlite:///:memory:``,
    ``mode=memory``)."""
    u = make_url(url)
    path = u.database or ""
    if path == ":memory:" or u.query.get("mode") == "memory" or "mode=memory" in path:
        return ""
    return path


def make_engine(url: str, *, echo: bool = False, pool_size: int = 10) -> Engine:
    if url.startswith("sqlite"):
        path = _sqlite_file(url)
        if path and not path.startswith("file:"):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False, "timeout": 30}}
        if not path:  # one database per connection otherwise: every unit would see an empty one
            kwargs["poolclass"] = StaticPool
        engine = create_engine(url, echo=echo, **kwargs)
        _sqlite_pragmas(engine, busy_timeout_ms=30000)
        return engine
    engine = create_engine(url, echo=echo, pool_size=pool_size, max_overflow=10, pool_recycle=RECYCLE_AFTER)
    _ping_idle_connections(engine)
    return engine


def asyncpg_dsn(url: str) -> str:
    """The libpq-style address asyncpg is given: the same server, user, database and options
    (``sslmode``, ``options``, ``application_name`` … as libpq reads them)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _make_async_engine(url: str, *, echo: bool = False) -> AsyncEngine:
    """Units' engine on PostgreSQL: asyncpg under SQLAlchemy's asyncio extension.

    asyncpg rather than psycopg's asyncio connection: through the whole dispatcher (identity,
    conversation, outbox, a flow's own statements) an event cost 3.6–3.9 ms of CPU over asyncpg
    against 4.9–5.4 ms over psycopg on the same server (``bench/README.md``). The synchronous
    engine stays on psycopg. asyncpg is handed the libpq-style address itself, so a
    ``DATABASE_URL``'s query (``sslmode``, ``options`` …) means what it means to psql."""
    import asyncpg
    from sqlalchemy.ext.asyncio import create_async_engine

    dsn = asyncpg_dsn(url)

    async def connect(*_args: Any, **_kwargs: Any) -> Any:
        return await asyncpg.connect(dsn)

    engine = create_async_engine("postgresql+asyncpg://", echo=echo, async_creator=connect,
                                 pool_size=ASYNC_POOL_SIZE, max_overflow=ASYNC_MAX_OVERFLOW,
                                 pool_recycle=RECYCLE_AFTER)
    _ping_idle_connections(engine.sync_engine)  # the ping runs in the unit's greenlet, like its statements
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
    if not _sqlite_file(url):
        return None  # an in-memory database has one shared connection: no second one
    engine = create_engine(url, echo=echo, pool_size=1, max_overflow=0,
                           connect_args={"check_same_thread": False, "timeout": 0})
    _sqlite_pragmas(engine, busy_timeout_ms=0)
    return engine


def _busy(exc: OperationalError) -> bool:
    text_ = str(exc.orig).lower() if exc.orig is not None else str(exc).lower()
    return "locked" in text_ or "busy" in text_


class Database:
    """Owns the engines; hands out sessions; runs units of work.

    On an SQLite file, where units are serialised anyway (one writer), a unit runs directly on the
    event loop when the write lock is free: handing it to a thread costs more than most units (the
    executor, waking the loop, the two threads taking turns with the GIL). If another *process*
    holds the database (a CLI command, a backup), the inline attempt fails at once (``busy_timeout``
    0 on its own connection), is rolled back and the unit runs again in a thread that waits for the
    lock, so the loop is never blocked waiting for another process. Units must therefore be safe to
    run again after a rollback (they only touch their session and objects they create).

    On PostgreSQL (``async_units``, the default) units run concurrently on the event loop over
    asyncpg (see the module docstring), at most ``units_at_once`` at a time (``ASYNC_UNITS_AT_ONCE``);
    ``async_units=False`` runs them in worker threads instead (kept for comparison in
    ``bench/throughput``). The asyncio engine belongs to the loop it was made on: a unit run from
    another loop (each test has its own) gets a fresh one.

    Either way a unit's CPU-bound work (building a spreadsheet, say) holds the loop while it runs;
    its waits for the database do not on PostgreSQL."""

    def __init__(self, url: str, *, echo: bool = False, async_units: bool = True,
                 units_at_once: int = ASYNC_UNITS_AT_ONCE) -> None:
        if units_at_once < 1:
            raise ValueError("units_at_once must be at least 1")
        self.url = url
        self.echo = echo
        is_sqlite = url.startswith("sqlite")
        # the synchronous engine is for work outside the loop when units have an engine of their own
        self.async_units = async_units and not is_sqlite
        self.engine = make_engine(url, echo=echo, **({"pool_size": 5} if self.async_units else {}))
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self._write_lock = threading.Lock() if self.is_sqlite else None
        self._inline_engine = _inline_engine(url, echo=echo) if self.is_sqlite else None
        self._local = threading.local()
        self._async_engine: AsyncEngine | None = None
        self._async_loop: asyncio.AbstractEventLoop | None = None
        self._listeners: list[tuple[str, Callable[..., Any]]] = []
        self.inline_units = 0
        self.thread_units = 0
        self.async_units_run = 0
        self._in_flight = 0
        self._idle: asyncio.Event | None = None
        self.units_at_once = units_at_once
        self._gate: asyncio.Semaphore | None = None  # of the loop the async engine belongs to

    # -- engines -------------------------------------------------------------------------------
    def engines(self) -> list[Engine]:
        """Every engine units run on now (for event listeners: statement counts in tests and benchmarks)."""
        out = [self.engine]
        if self._inline_engine is not None:
            out.append(self._inline_engine)
        if self._async_engine is not None:
            out.append(self._async_engine.sync_engine)
        return out

    def listen(self, identifier: str, fn: Callable[..., Any]) -> None:
        """``sqlalchemy.event.listen`` on every engine of this database, present and future."""
        self._listeners.append((identifier, fn))
        for engine in self.engines():
            event.listen(engine, identifier, fn)

    def unlisten(self, identifier: str, fn: Callable[..., Any]) -> None:
        self._listeners.remove((identifier, fn))
        for engine in self.engines():
            if event.contains(engine, identifier, fn):
                event.remove(engine, identifier, fn)

    def _loop_engine(self) -> AsyncEngine:
        loop = asyncio.get_running_loop()
        if self._async_engine is None or self._async_loop is not loop:
            if self._async_engine is not None:
                # made on a loop that is gone (tests): its connections cannot be closed from here;
                # dereferenced, their sockets close when they are collected
                self._async_engine.sync_engine.dispose(close=False)
            self._async_engine = _make_async_engine(self.url, echo=self.echo)
            self._async_loop = loop
            self._gate = asyncio.Semaphore(self.units_at_once)
            self._in_flight = 0  # units of the old loop never finish
            for identifier, fn in self._listeners:
                event.listen(self._async_engine.sync_engine, identifier, fn)
        return self._async_engine

    # -- units ---------------------------------------------------------------------------------
    @contextmanager
    def session(self, engine: Engine | None = None) -> Iterator[Session]:
        """A session that commits on success and rolls back on error."""
        with Session(engine or self.engine, expire_on_commit=False) as s, _committing(s):
            yield s

    def run_sync(self, fn: Callable[[Session], T]) -> T:
        """Run ``fn(session)`` as one committed unit in this thread (CLI commands, imports, tests)."""
        if getattr(self._local, "inline", False):  # from run(): the write lock is already held
            with self.session(self._inline_engine) as s:
                return fn(s)
        if self._write_lock is not None:
            with self._write_lock, self.session() as s:
                return fn(s)
        with self.session() as s:
            return fn(s)

    async def run(self, fn: Callable[[Session], T]) -> T:
        """Run ``fn(session)`` as one committed unit without blocking the loop on another process or
        on the server (see the class docstring)."""
        if self.async_units:
            return await self._run_async(fn)
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

    async def _run_async(self, fn: Callable[[Session], T]) -> T:
        from sqlalchemy.ext.asyncio import AsyncSession

        engine = self._loop_engine()
        gate = self._gate
        assert gate is not None
        self.async_units_run += 1
        self._in_flight += 1  # counted while waiting for the gate too: aclose waits for those as well
        try:
            async with gate:  # see ASYNC_UNITS_AT_ONCE
                session = AsyncSession(engine, expire_on_commit=False, sync_session_class=Session)
                # One greenlet for the unit, its commit and the connection's return: the unit's code
                # is the same synchronous code as everywhere else; every statement suspends it until
                # the answer.
                return await session.run_sync(_unit, fn)
        finally:
            self._in_flight -= 1
            if not self._in_flight and self._idle is not None:
                self._idle.set()

    async def wait_idle(self, limit: float) -> bool:
        """Wait up to ``limit`` s for the units on the loop to finish; whether they all did."""
        if not self._in_flight:
            return True
        self._idle = asyncio.Event()
        try:
            await asyncio.wait_for(self._idle.wait(), limit)
            return True
        except TimeoutError:
            return False
        finally:
            self._idle = None

    def migrate(self) -> None:
        migrate(self.engine)

    #: at shutdown, how long the units still running may take before their connections are closed
    CLOSE_WAIT = 10.0

    async def aclose(self) -> None:
        """Close every connection (from the loop the units ran on), once the units in flight are done:
        a connection closed under a running unit would only roll it back."""
        engine = self._async_engine
        if engine is not None:
            if self._async_loop is asyncio.get_running_loop():
                if not await self.wait_idle(self.CLOSE_WAIT):
                    log.warning("closing the database with %s unit(s) still running", self._in_flight)
                self._async_engine = None
                await engine.dispose()
        await asyncio.to_thread(self.dispose)  # made on another loop: dereferenced there

    def dispose(self) -> None:
        self.engine.dispose()
        if self._inline_engine is not None:
            self._inline_engine.dispose()
        if self._async_engine is not None:  # not from its loop: see _loop_engine
            self._async_engine.sync_engine.dispose(close=False)
            self._async_engine = None


@contextmanager
def _committing(s: OrmSession) -> Iterator[None]:
    """Commit when the block succeeds, roll back when it raises."""
    try:
        yield
        s.commit()
    except BaseException:
        s.rollback()
        raise


def _unit(s: OrmSession, fn: Callable[[Session], T]) -> T:
    """The whole unit inside its greenlet (``s`` is a SQLModel session: ``sync_session_class``);
    closing it returns the connection to the pool."""
    with s, _committing(s):
        return fn(cast(Session, s))


def alembic_config(engine: Engine, *, versions_dir: Path | None = None) -> Any:
    """Alembic's configuration for ``engine``; ``versions_dir``: migrations read from another folder
    than ``storage/migrations/versions`` (tests of ``main.py db-revision`` work on a copy)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if versions_dir is not None:
        cfg.set_main_option("path_separator", "os")
        cfg.set_main_option("version_locations", str(versions_dir).replace("%", "%%"))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    cfg.attributes["engine"] = engine
    return cfg


def migrate(engine: Engine, *, versions_dir: Path | None = None) -> None:
    """Apply every Alembic migration (idempotent). Runs at start, before anything else."""
    from alembic import command

    cfg = alembic_config(engine, versions_dir=versions_dir)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            # Several processes may start at once against one district database.
            conn.execute(text("SELECT pg_advisory_xact_lock(7318201)"))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


__all__ = ["Database", "NullPool", "make_engine", "migrate", "alembic_config"]
