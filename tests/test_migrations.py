"""The Alembic migrations create exactly the tables the models declare (nothing forgotten)."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

import storage.models  # noqa: F401  (registers the shared tables)
from bot.core.flow import discover_workflows
from storage.db import Database


def test_migrations_match_models(db: Database) -> None:
    """The workflows are discovered here, as the bot does at start, so every workflow's tables are in
    the metadata whichever test modules happened to be imported before this one."""
    workflows = discover_workflows()
    assert {t.__table__.name for wf in workflows for t in wf.tables} <= set(SQLModel.metadata.tables)
    with db.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": False})
        diff = compare_metadata(ctx, SQLModel.metadata)
    assert diff == [], "models and migrations differ (write a migration):\n" + "\n".join(map(str, diff))


def test_migrate_twice_is_harmless(sqlite_db: Database) -> None:
    sqlite_db.migrate()  # already at head: nothing happens, nothing fails
