"""Shared fixtures: a migrated database per test (SQLite always; PostgreSQL when
``TEST_DATABASE_URL`` is set), settings pointing at a temporary data folder, and a runtime."""

from __future__ import annotations

import os
from collections.abc import Iterator
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


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if PG_LEFT_OPEN:
        terminalreporter.section("PostgreSQL connections left inside a transaction (ended before the next test)")
        for line in PG_LEFT_OPEN:
            terminalreporter.line(line)
