"""``main.py db-revision "what changed"``: write the next Alembic migration by comparing the models
(the shared tables and every discovered workflow's) with a scratch database migrated to head.

The scratch database is SQLite in a temporary folder: the migrations run in batch mode there, and
autogenerate renders batch operations, which PostgreSQL runs as plain ones. The new file is numbered
after the others (``0012_leave_requests.py``, revision ``"0012"``, ``down_revision`` the current
head). When the models and the migrations already agree, nothing is written."""

from __future__ import annotations

import logging
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storage.db import MIGRATIONS_DIR, alembic_config, make_engine

VERSIONS_DIR = MIGRATIONS_DIR / "versions"


class RevisionError(Exception):
    """The migration history is not in a state to add to (several heads, unreadable files)."""


@dataclass(frozen=True, slots=True)
class Revision:
    """A migration written by :func:`make_revision`."""

    revision: str
    down_revision: str
    path: Path


def next_revision_id(existing: Sequence[str]) -> str:
    """``["0001", …, "0011"]`` → ``"0012"`` (the width of the widest numeric id, at least 4)."""
    numbers = [r for r in existing if r.isdigit()]
    width = max([4, *(len(r) for r in numbers)])
    return str(max((int(r) for r in numbers), default=0) + 1).zfill(width)


def _ascii_slug(message: str, limit: int = 40) -> str:
    """``"Xin nghỉ phép"`` → ``"xin_nghi_phep"`` (file names stay ASCII, like Alembic's own slugs)."""
    from bot.text import fold

    return "_".join(re.findall(r"[a-z0-9]+", fold(message)))[:limit] or "revision"


def make_revision(message: str, *, flows_packages: Sequence[str] = ("bot.flows",),
                  versions_dir: Path = VERSIONS_DIR) -> Revision | None:
    """Autogenerate the next migration into ``versions_dir`` from the shared tables and the tables
    of every workflow under ``flows_packages`` (importing a workflow package registers its tables);
    ``None`` when autogenerate finds no change (nothing is written).

    Raises :class:`RevisionError` when the history has several heads (merge them first)."""
    quiet = logging.getLogger("alembic.runtime")  # plug-ins, "Running upgrade …" of the scratch database
    level = quiet.level
    quiet.setLevel(logging.WARNING)
    try:
        return _make_revision(message, flows_packages=flows_packages, versions_dir=versions_dir)
    finally:
        quiet.setLevel(level)


def _make_revision(message: str, *, flows_packages: Sequence[str], versions_dir: Path) -> Revision | None:
    from alembic import command
    from alembic.script import ScriptDirectory

    import storage.models  # noqa: F401  (the shared tables)
    from bot.core.flow import discover_workflows

    for package in flows_packages:
        discover_workflows(package)
    versions_dir = Path(versions_dir).resolve()
    with tempfile.TemporaryDirectory(prefix="db-revision-") as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'scratch.db'}")
        try:
            cfg = alembic_config(engine, versions_dir=versions_dir)
            cfg.set_main_option("file_template", "%%(rev)s_" + _ascii_slug(message))
            script = ScriptDirectory.from_config(cfg)
            heads = script.get_heads()
            if len(heads) != 1:
                raise RevisionError(f"the migrations in {versions_dir} have {len(heads)} heads "
                                    f"({', '.join(sorted(heads)) or 'none'}); there must be exactly one")
            head = heads[0]
            rev_id = next_revision_id([s.revision for s in script.walk_revisions()])
            with engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
            changed: list[bool] = []

            def skip_empty(_context: Any, _revision: Any, directives: list[Any]) -> None:
                if directives and directives[0].upgrade_ops.is_empty():
                    directives[:] = []
                changed.append(bool(directives))

            with engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.revision(cfg, message=message, autogenerate=True, rev_id=rev_id,
                                 process_revision_directives=skip_empty)
        finally:
            engine.dispose()
    if not any(changed):
        return None
    written = versions_dir / f"{rev_id}_{_ascii_slug(message)}.py"
    if not written.is_file():  # pragma: no cover - Alembic wrote it elsewhere
        raise RevisionError(f"Alembic did not write revision {rev_id} into {versions_dir}")
    return Revision(revision=rev_id, down_revision=head, path=written)


__all__ = ["VERSIONS_DIR", "Revision", "RevisionError", "make_revision", "next_revision_id"]
