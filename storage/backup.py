"""Backups and restores of the whole installation (seed 003 Điều 12.1: at least every 3 months).

``python main.py backup DEST`` writes ``DEST/saoluu-YYYYMMDD-HHMMSS/`` while the bot keeps running:

* the database — SQLite through the online backup API (:meth:`sqlite3.Connection.backup`, one
  consistent snapshot even while the bot writes; the copy is integrity-checked), or PostgreSQL
  through ``pg_dump --format=custom`` (a consistent snapshot by design). Without ``pg_dump`` the
  database is **not** backed up and the command says so and fails;
* the media folder (attachments, photos of equipment changes) and the archived reports;
* ``manifest.json``: when, which database, the size and SHA-256 of every file, and for SQLite the
  number of rows of every table.

The backup is assembled in a hidden ``.part`` folder and renamed at the end, so an interrupted
backup never looks complete. The date of the last good backup is kept in the database
(``key_value`` ``backup.last``) for the principal (``/saoluu``, the monthly equipment card) and the
quarterly reminder to IT; every backup and restore is in the audit log.

``python main.py restore SRC`` checks the manifest's checksums, then restores the database (SQLite:
the backup API again; PostgreSQL: ``pg_restore --clean``) and the files into the configured
location. A database that already holds data is only replaced with ``--force``, and then a copy of
it is kept next to it first (SQLite)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlmodel import Session, SQLModel

from bot.i18n import Translator
from storage import audit
from storage.models import KeyValue

if TYPE_CHECKING:  # pragma: no cover
    from bot.config import Settings
    from storage.db import Database

LAST_KEY = "backup.last"
MANIFEST = "manifest.json"
SQLITE_FILE = "database.sqlite3"
PG_FILE = "database.pgdump"
FOLDERS = ("media", "reports")  # under DATA_DIR
PREFIX = "saoluu-"


@dataclass
class BackupResult:
    ok: bool = False
    path: Path | None = None
    database: str = ""
    db_bytes: int = 0
    files: int = 0
    files_bytes: int = 0
    tables: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def render(self, tr: Translator) -> str:
        out: list[str] = []
        if self.path is not None:
            out.append(tr.t("Backup written to {path}", path=str(self.path)))
            out.append(tr.t("Database ({kind}): {size}; files: {n} ({files_size}).", kind=self.database,
                            size=_size(tr, self.db_bytes), n=tr.number(self.files),
                            files_size=_size(tr, self.files_bytes)))
        out.extend("  • " + p for p in self.problems)
        out.append(tr.t("Backup complete.") if self.ok else tr.t("The backup is NOT complete."))
        return "\n".join(out)


@dataclass
class RestoreResult:
    ok: bool = False
    source: Path | None = None
    database: str = ""
    tables: dict[str, int] = field(default_factory=dict)
    files: int = 0
    kept_copy: Path | None = None
    problems: list[str] = field(default_factory=list)

    def render(self, tr: Translator) -> str:
        out: list[str] = []
        if self.source is not None:
            out.append(tr.t("Restoring from {path}", path=str(self.source)))
        if self.kept_copy is not None:
            out.append(tr.t("The previous database was kept as {path}", path=str(self.kept_copy)))
        out.extend("  • " + p for p in self.problems)
        if self.ok:
            out.append(tr.t("Restore complete: {tables} tables, {rows} rows, {n} files.",
                            tables=tr.number(len(self.tables)), rows=tr.number(sum(self.tables.values())),
                            n=tr.number(self.files)))
        else:
            out.append(tr.t("Nothing was restored."))
        return "\n".join(out)


def _size(tr: Translator, n: int) -> str:
    if n >= 1024 * 1024:
        return tr.t("{n} MB", n=tr.number(round(n / (1024 * 1024), 1)))
    return tr.t("{n} KB", n=tr.number(max(1, round(n / 1024))) if n else 0)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1024 * 1024), b""):
            h.update(chunk)
    return h.hexdigest()


# -- database locations ---------------------------------------------------------------------------
def sqlite_path(url: str) -> Path | None:
    u = make_url(url)
    if u.get_backend_name() != "sqlite":
        return None
    return Path(u.database or "")


def _pg_target(url: str) -> tuple[str, dict[str, str], str | None]:
    """(libpq URL without password, environment with PGPASSWORD, schema from search_path or None)."""
    u = make_url(url)
    env = dict(os.environ)
    if u.password:
        env["PGPASSWORD"] = str(u.password)
    schema = None
    opts = u.query.get("options")
    raw = opts if isinstance(opts, str) else (opts[0] if opts else "")
    raw = unquote(raw or "")
    if "search_path=" in raw:
        schema = raw.split("search_path=", 1)[1].split()[0].split(",")[0].strip() or None
    plain = u.set(drivername="postgresql", password=None)
    query = {k: v for k, v in plain.query.items() if k != "options"}
    plain = plain.set(query=query)
    return plain.render_as_string(hide_password=False), env, schema


def _table_counts_sqlite(path: Path) -> dict[str, int]:
    conn = sqlite3.connect(str(path))
    try:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table' "
                                            "AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        return {n: int(conn.execute(f'SELECT COUNT(*) FROM "{n}"').fetchone()[0]) for n in names}
    finally:
        conn.close()


# -- backup ---------------------------------------------------------------------------------------
def backup_sqlite(source: Path, target: Path, *, pages: int = -1,
                  progress: Callable[[int, int, int], object] | None = None) -> None:
    """Copy a live SQLite database with the online backup API, then check the copy.

    ``pages=-1`` copies everything in one step: one read transaction, so the copy is a consistent
    snapshot of what was committed when it started, while other connections keep writing (WAL)."""
    src = sqlite3.connect(str(source), timeout=30)
    dst = sqlite3.connect(str(target))
    try:
        src.execute("PRAGMA busy_timeout=30000")
        src.backup(dst, pages=pages, progress=progress)  # type: ignore[arg-type]
        dst.execute("PRAGMA journal_mode=DELETE")
        result = dst.execute("PRAGMA integrity_check").fetchone()
        if not result or result[0] != "ok":
            raise RuntimeError(f"integrity check of the copy failed: {result}")
    finally:
        dst.close()
        src.close()


def _copy_tree(src: Path, dst: Path) -> tuple[int, int, list[dict[str, Any]]]:
    files, total = 0, 0
    listing: list[dict[str, Any]] = []
    if not src.is_dir():
        return 0, 0, listing
    for path in sorted(src.rglob("*")):
        if not path.is_file() or path.name.startswith(".part-"):
            continue
        rel = path.relative_to(src)
        out = dst / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copy2(path, out)
        except OSError:
            continue  # a file removed meanwhile (e.g. a clip past its retention)
        size = out.stat().st_size
        files += 1
        total += size
        listing.append({"path": f"{dst.name}/{rel.as_posix()}", "size": size, "sha256": _sha256(out)})
    return files, total, listing


def run_backup(settings: Settings, dest: str | Path, *, tr: Translator, now: datetime | None = None,
               pages: int = -1, progress: Callable[[int, int, int], object] | None = None) -> BackupResult:
    """Write one complete backup folder under ``dest`` (see the module docstring)."""
    now = now or datetime.now(UTC)
    result = BackupResult()
    dest = Path(dest).expanduser()
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError:
        result.problems.append(tr.t("Cannot create the backup folder {path}.", path=str(dest)))
        return result
    stamp = now.astimezone(settings.tz).strftime("%Y%m%d-%H%M%S")
    final = dest / f"{PREFIX}{stamp}"
    n = 1
    while final.exists():
        n += 1
        final = dest / f"{PREFIX}{stamp}-{n}"
    work = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".part", dir=dest))
    manifest: dict[str, Any] = {"format": 1, "created_at": now.isoformat(), "files": [], "tables": {}}
    url = settings.effective_database_url
    db_ok = False
    try:
        src_path = sqlite_path(url)
        if src_path is not None:
            result.database = "sqlite"
            target = work / SQLITE_FILE
            if not src_path.is_file():
                result.problems.append(tr.t("The database file {path} does not exist.", path=str(src_path)))
            else:
                backup_sqlite(src_path, target, pages=pages, progress=progress)
                result.tables = _table_counts_sqlite(target)
                db_ok = True
        else:
            result.database = "postgresql"
            target = work / PG_FILE
            db_ok = _pg_dump(url, target, tr, result)
        if db_ok:
            result.db_bytes = target.stat().st_size
            manifest.update(database=result.database, db_file=target.name, db_sha256=_sha256(target),
                            db_bytes=result.db_bytes, tables=result.tables)
        else:
            manifest.update(database=result.database, db_file=None)
        for folder in FOLDERS:
            files, size, listing = _copy_tree(settings.data_dir / folder, work / folder)
            result.files += files
            result.files_bytes += size
            manifest["files"].extend(listing)
        (work / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
        os.replace(work, final)
    except Exception as exc:
        shutil.rmtree(work, ignore_errors=True)
        result.problems.append(tr.t("The backup failed: {error}", error=type(exc).__name__ + ": " + str(exc)[:200]))
        return result
    result.path = final
    result.ok = db_ok
    return result


def _pg_dump(url: str, target: Path, tr: Translator, result: BackupResult) -> bool:
    exe = shutil.which("pg_dump")
    if exe is None:
        result.problems.append(tr.t("pg_dump was not found, so the PostgreSQL database was NOT backed up. "
                                    "Install the PostgreSQL client tools (apt install postgresql-client) and run "
                                    "the backup again."))
        return False
    conn_url, env, schema = _pg_target(url)
    cmd = [exe, "--format=custom", "--no-owner", "--no-privileges", f"--file={target}", f"--dbname={conn_url}"]
    if schema:
        cmd.append(f"--schema={schema}")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600, check=False)
    if proc.returncode != 0:
        result.problems.append(tr.t("pg_dump failed: {error}", error=proc.stderr.strip()[-300:]))
        return False
    return True


def record_backup(db: Database, result: BackupResult, *, now: datetime | None = None) -> None:
    """Remember the last good backup and audit it (the key-value write comes first: it takes the
    database's write lock, so the audit row is chained to the true last row)."""
    now = now or datetime.now(UTC)

    def unit(s: Session) -> None:
        if result.ok and result.path is not None:
            info = {"at": now.isoformat(), "path": str(result.path), "database": result.database,
                    "bytes": result.db_bytes + result.files_bytes, "files": result.files}
            row = s.get(KeyValue, LAST_KEY) or KeyValue(key=LAST_KEY)
            row.value, row.updated_at = json.dumps(info, ensure_ascii=False), now
            s.add(row)
            s.flush()
            audit.record(s, action="backup.created", subject=f"backup:{result.path.name}",
                         details={"database": result.database, "bytes": info["bytes"], "files": result.files},
                         at=now)
        else:
            audit.record(s, action="backup.failed", subject="backup", details={"problems": len(result.problems)},
                         at=now)

    db.run_sync(unit)


def last_backup(session: Session) -> dict[str, Any] | None:
    """``{"at": datetime, "path": str, "bytes": int, ...}`` of the last good backup, or None."""
    row = session.get(KeyValue, LAST_KEY)
    if row is None or not row.value:
        return None
    try:
        info = json.loads(row.value)
        info["at"] = datetime.fromisoformat(info["at"])
    except (ValueError, KeyError, TypeError):
        return None
    return info  # type: ignore[no-any-return]


# -- restore --------------------------------------------------------------------------------------
def find_backup(src: Path) -> Path | None:
    """``src`` itself when it is a backup folder, else its newest complete ``saoluu-*`` folder."""
    if (src / MANIFEST).is_file():
        return src
    if not src.is_dir():
        return None
    found = sorted(p for p in src.iterdir() if p.is_dir() and p.name.startswith(PREFIX) and (p / MANIFEST).is_file())
    return found[-1] if found else None


def _sqlite_has_data(path: Path) -> bool:
    if not path.is_file() or path.stat().st_size == 0:
        return False
    conn = sqlite3.connect(str(path))
    try:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table' "
                                            "AND name NOT LIKE 'sqlite_%' AND name <> 'alembic_version'")]
        return any(conn.execute(f'SELECT 1 FROM "{n}" LIMIT 1').fetchone() for n in names)
    finally:
        conn.close()


def run_restore(settings: Settings, src: str | Path, *, tr: Translator, force: bool = False,
                now: datetime | None = None) -> RestoreResult:
    now = now or datetime.now(UTC)
    result = RestoreResult()
    folder = find_backup(Path(src).expanduser())
    if folder is None:
        result.problems.append(tr.t("No backup was found in {path} (a folder with manifest.json).", path=str(src)))
        return result
    result.source = folder
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        result.problems.append(tr.t("The manifest of the backup cannot be read."))
        return result
    db_file = manifest.get("db_file")
    if not db_file:
        result.problems.append(tr.t("This backup holds no database (it was incomplete)."))
        return result
    backup_db = folder / db_file
    if not backup_db.is_file() or _sha256(backup_db) != manifest.get("db_sha256"):
        result.problems.append(tr.t("The database file of the backup is missing or damaged (checksum mismatch)."))
        return result
    for entry in manifest.get("files", []):
        path = folder / entry["path"]
        if not path.is_file() or path.stat().st_size != entry["size"]:
            result.problems.append(tr.t("A file of the backup is missing or damaged: {path}", path=entry["path"]))
    if result.problems:
        return result
    url = settings.effective_database_url
    target = sqlite_path(url)
    result.database = manifest.get("database", "")
    if target is not None:
        if result.database != "sqlite":
            result.problems.append(tr.t("This is a PostgreSQL backup, but the configured database is SQLite."))
            return result
        target.parent.mkdir(parents=True, exist_ok=True)
        if _sqlite_has_data(target):
            if not force:
                result.problems.append(tr.t("The database {path} already holds data. Stop the bot, then run restore "
                                            "with --force (a copy of the current database is kept first).",
                                            path=str(target)))
                return result
            keep = target.with_name(f"{target.name}.before-restore-{now.astimezone(settings.tz):%Y%m%d-%H%M%S}")
            backup_sqlite(target, keep)
            result.kept_copy = keep
        src_conn = sqlite3.connect(str(backup_db))
        dst_conn = sqlite3.connect(str(target), timeout=30)
        try:
            src_conn.backup(dst_conn)
        finally:
            dst_conn.close()
            src_conn.close()
        result.tables = _table_counts_sqlite(target)
        expected = manifest.get("tables") or {}
        lost = [t for t, n in expected.items() if result.tables.get(t) != n]
        if lost:
            result.problems.append(tr.t("Row counts differ after the restore in: {tables}", tables=", ".join(lost)))
            return result
    else:
        if result.database != "postgresql":
            result.problems.append(tr.t("This is a SQLite backup, but the configured database is PostgreSQL."))
            return result
        if not _pg_restore(url, backup_db, tr, result, force=force):
            return result
    for folder_name in FOLDERS:
        src_dir = folder / folder_name
        if not src_dir.is_dir():
            continue
        for path in sorted(src_dir.rglob("*")):
            if not path.is_file():
                continue
            out = settings.data_dir / folder_name / path.relative_to(src_dir)
            if out.exists() and not force:
                continue
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, out)
            result.files += 1
    result.ok = True
    return result


def _pg_restore(url: str, dump: Path, tr: Translator, result: RestoreResult, *, force: bool) -> bool:
    exe = shutil.which("pg_restore")
    if exe is None:
        result.problems.append(tr.t("pg_restore was not found. Install the PostgreSQL client tools (apt install "
                                    "postgresql-client) and run the restore again."))
        return False
    from storage.db import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            try:
                has_data = conn.execute(text("SELECT 1 FROM school LIMIT 1")).first() is not None
            except Exception:
                has_data = False
    finally:
        engine.dispose()
    if has_data and not force:
        result.problems.append(tr.t("The PostgreSQL database already holds data. Stop the bot, then run restore "
                                    "with --force."))
        return False
    conn_url, env, _schema = _pg_target(url)
    cmd = [exe, "--clean", "--if-exists", "--no-owner", "--no-privileges", "--single-transaction",
           f"--dbname={conn_url}", str(dump)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600, check=False)
    if proc.returncode != 0:
        result.problems.append(tr.t("pg_restore failed: {error}", error=proc.stderr.strip()[-300:]))
        return False
    from bot.core.flow import discover_workflows

    discover_workflows()  # the workflows' tables are counted too
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            for table in SQLModel.metadata.sorted_tables:
                try:
                    result.tables[table.name] = int(conn.execute(text(f'SELECT COUNT(*) FROM "{table.name}"'))
                                                    .scalar() or 0)
                except Exception:
                    conn.rollback()
    finally:
        engine.dispose()
    return True


def record_restore(db: Database, result: RestoreResult, *, now: datetime | None = None) -> None:
    now = now or datetime.now(UTC)

    def unit(s: Session) -> None:
        row = s.get(KeyValue, "backup.restored") or KeyValue(key="backup.restored")
        row.value = json.dumps({"at": now.isoformat(), "source": str(result.source)}, ensure_ascii=False)
        row.updated_at = now
        s.add(row)
        s.flush()
        audit.record(s, action="backup.restored", subject=f"backup:{result.source.name if result.source else ''}",
                     details={"database": result.database, "rows": sum(result.tables.values()),
                              "files": result.files}, at=now)

    db.run_sync(unit)

