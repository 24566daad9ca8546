"""Shared fixtures: a migrated database per test (SQLite always; PostgreSQL when
``TEST_DATABASE_URL`` is set), settings pointing at a temporary data folder, a clock the test moves,
and the one runtime the workflow tests share:

* ``runtime`` — the bot's :class:`bot.runtime.Runtime` on the test database, not started, whose
  messages go to a :class:`tests.helpers.RecordingChannel` (``runtime.test_channel``); for tests that
  drive the dispatcher directly;
* ``telegram`` — the same runtime started behind the real python-telegram-bot, talking to the fake
  Bot API (``fake_telegram``): a :class:`tests.fakes.tg_harness.TgHarness`.

Both are built from ``runtime_options`` (default: every workflow, the test clock). A module that
needs something special overrides that fixture, or parametrises it for one test::

    @pytest.fixture
    def runtime_options():
        return {"workflows": ("articles",)}          # Registry().discover(only=...)

    @pytest.mark.parametrize("runtime_options", [{"settings": {"web_chat_enabled": False}}])
    async def test_...(runtime): ...

Options: ``workflows`` (names for ``Registry().discover(only=...)``), ``registry`` (a ready
:class:`bot.core.Registry`), ``clock`` (instead of the ``clock`` fixture) and ``settings`` (values
to override). A test that needs a second bot with other options asks for ``start_runtime`` /
``start_telegram`` and calls it with them; everything started is stopped after the test.

People are named, not numbered: ``runtime.enrol({"the principal": ("Trần Văn Đức", ["principal"])})``
(and ``telegram.enrol(...)``) make them in a school and link each to a chat of their own
(see :func:`tests.helpers.enrol`)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from bot.config import Settings, load_settings
from storage.db import Database

PG_BASE_URL = os.environ.get("TEST_DATABASE_URL", "")
if PG_BASE_URL.startswith("postgresql://"):
    PG_BASE_URL = "postgresql+psycopg://" + PG_BASE_URL[len("postgresql://"):]
# Each test session works in its own schema, so parallel runs on one server never collide.
PG_SCHEMA = f"t_{os.getpid()}"
# application_name marks this run's connections (see _reset_pg)
PG_URL = (PG_BASE_URL + ("&" if "?" in PG_BASE_URL else "?")
          + f"options=-csearch_path%3D{PG_SCHEMA}&application_name={PG_SCHEMA}" if PG_BASE_URL else "")
#: tests after which a connection of this run was left inside a transaction (reported at the end)
PG_LEFT_OPEN: list[str] = []

_pg_migrated = False


@pytest.fixture(scope="session", autouse=True)
def _pg_schema_cleanup() -> Iterator[None]:
    yield
    if _pg_migrated:
        from sqlalchemy import create_engine

        engine = create_engine(PG_BASE_URL)
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{PG_SCHEMA}" CASCADE'))
        engine.dispose()


def _reset_pg(db: Database) -> None:
    global _pg_migrated
    with db.engine.begin() as conn:
        # A unit left suspended when an earlier test's event loop closed (a background task never
        # awaited) keeps its transaction, and its locks, until the process ends: end it, and say so.
        left = conn.execute(text(
            "SELECT pg_terminate_backend(pid), left(query, 80) FROM pg_stat_activity WHERE application_name = :me "
            "AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%'"), {"me": PG_SCHEMA}).all()
        PG_LEFT_OPEN.extend(f"{os.environ.get('PYTEST_CURRENT_TEST', '?')}: {q}" for _, q in left)
        if not _pg_migrated:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{PG_SCHEMA}" CASCADE'))
            conn.execute(text(f'CREATE SCHEMA "{PG_SCHEMA}"'))
    if not _pg_migrated:
        db.migrate()
        _pg_migrated = True
        return
    with db.engine.begin() as conn:
        tables = [r[0] for r in conn.execute(text(
            "SELECT tablename FROM pg_tables WHERE schemaname=current_schema() AND tablename <> 'alembic_version'"))]
        if tables:
            conn.execute(text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"))


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    if not PG_URL:
        pytest.skip("PostgreSQL tests need TEST_DATABASE_URL (e.g. postgresql://postgres@127.0.0.1:5432/test)")
    return PG_URL


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    if database.is_sqlite:
        database.migrate()
    else:
        _reset_pg(database)
    yield database
    database.dispose()


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'test.db'}")
    database.migrate()
    yield database
    database.dispose()


@pytest.fixture
def settings(tmp_path: Path, db_url: str, db: Database, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings for a runtime on the (freshly reset) test database."""
    for key in list(os.environ):
        if key.startswith(("TELEGRAM_", "WEB_", "DATABASE_URL", "DATA_DIR", "ZALO_")):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env is read
    return load_settings(data_dir=tmp_path / "data", database_url=db_url, web_port=0)


class FixedClock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime | None = None) -> None:
        self.t = start or datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # 09:00 Monday in Hà Nội

    def now(self) -> datetime:
        return self.t

    def advance(self, **kw: float) -> None:
        from datetime import timedelta

        self.t = self.t + timedelta(**kw)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


# -- the shared runtime ----------------------------------------------------------------------------
@pytest.fixture
def runtime_options() -> dict[str, Any]:
    """How ``runtime`` and ``telegram`` are built (see the module docstring); override per module or test."""
    return {}


def _runtime_args(settings: Settings, clock: FixedClock, options: dict[str, Any]) -> tuple[Settings, dict[str, Any]]:
    unknown = set(options) - {"workflows", "registry", "clock", "settings"}
    if unknown:
        raise TypeError(f"unknown runtime options: {sorted(unknown)}")
    from bot.core import Registry

    registry = options.get("registry")
    if registry is None and options.get("workflows") is not None:
        registry = Registry().discover(only=set(options["workflows"]))
    if options.get("settings"):
        settings = settings.model_copy(update=options["settings"])
    return settings, {"clock": options.get("clock", clock), "registry": registry}


@pytest.fixture
async def start_runtime(settings: Settings, clock: FixedClock) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    """``await start_runtime(**options)``: a runtime as ``runtime`` gives it, with those options."""
    import asyncio
    from functools import partial

    from bot.runtime import Runtime
    from tests.helpers import RecordingChannel, enrol

    made: list[Runtime] = []

    async def start(**options: Any) -> Runtime:
        values, kw = _runtime_args(settings, clock, options)
        rt = Runtime(values, **kw)
        made.append(rt)
        channel = RecordingChannel()
        rt.sender.register(channel)
        await asyncio.to_thread(rt.db.migrate)
        rt.test_channel = channel  # type: ignore[attr-defined]
        rt.enrol = partial(enrol, rt.db, channel="test")  # type: ignore[attr-defined]
        return rt

    try:
        yield start
    finally:
        for rt in reversed(made):
            if rt._stopped.is_set():  # the test stopped it already (a restart)
                continue
            try:
                await rt.dispatcher.drain()  # background work (clips, fan-out) ends inside the test
            finally:
                await rt.stop()  # the outbox clean-up and the units in flight finish, connections close


@pytest.fixture
async def runtime(start_runtime: Callable[..., Awaitable[Any]], runtime_options: dict[str, Any]) -> Any:
    """The bot on the test database, not started, sending to ``runtime.test_channel``."""
    return await start_runtime(**runtime_options)


@pytest.fixture
async def fake_telegram() -> AsyncIterator[Any]:
    """A running fake Bot API server on 127.0.0.1."""
    from tests.fakes.telegram_server import DEFAULT_TOKEN, FakeTelegram

    async with FakeTelegram(DEFAULT_TOKEN) as fake:
        yield fake


@pytest.fixture
async def start_telegram(settings: Settings, clock: FixedClock,
                         fake_telegram: Any) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    """``await start_telegram(**options)``: a bot as ``telegram`` gives it, with those options."""
    from functools import partial

    from tests.fakes.tg_harness import TgHarness
    from tests.helpers import enrol

    made: list[TgHarness] = []

    async def start(**options: Any) -> TgHarness:
        values, kw = _runtime_args(settings, clock, options)
        harness = TgHarness(values, fake_telegram, clock=kw["clock"], registry=kw["registry"])
        made.append(harness)
        await harness.start()
        harness.enrol = partial(_enrol_on_telegram, harness)  # type: ignore[attr-defined]
        return harness

    def _enrol_on_telegram(harness: TgHarness, cast: Any, **kw: Any) -> Any:
        kw.setdefault("first_user", 1001)
        return enrol(harness.db, cast, channel="telegram", **kw)

    try:
        yield start
    finally:
        for harness in reversed(made):
            try:
                if harness.runtime is not None:
                    await harness.rt.dispatcher.drain()
            finally:
                await harness.stop()


@pytest.fixture
async def telegram(start_telegram: Callable[..., Awaitable[Any]], runtime_options: dict[str, Any]) -> Any:
    """The bot on the test database behind the real python-telegram-bot, talking to ``fake_telegram``
    by long polling (a :class:`tests.fakes.tg_harness.TgHarness`; the scheduler is driven by ``tick()``)."""
    return await start_telegram(**runtime_options)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if PG_LEFT_OPEN:
        terminalreporter.section("PostgreSQL connections left inside a transaction (ended before the next test)")
        for line in PG_LEFT_OPEN:
            terminalreporter.line(line)
