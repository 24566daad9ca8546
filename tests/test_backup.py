"""``main.py backup`` / ``main.py restore``: a consistent backup while the bot writes, restored into a
fresh location with nothing lost that was committed before the backup started, and an audit chain
that still verifies; pg_dump for PostgreSQL (a clear failure without it)."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlmodel import Session, col, select

import main
from bot.i18n import Translator
from storage import audit
from storage.backup import last_backup, record_backup, run_backup
from storage.db import Database
from storage.models import AuditEvent, KeyValue
from tests.helpers import make_person, make_school

TR = Translator("vi")


class Writer(threading.Thread):
    """Writes like the bot does — one committed unit per event, each with an audit row — until told
    to stop; remembers which units were committed."""

    def __init__(self, db: Database) -> None:
        super().__init__(daemon=True)
        self.db = db
        self.committed: list[int] = []
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self._cond = threading.Condition()

    def run(self) -> None:
        n = 0
        try:
            while not self.stop.is_set():
                def unit(s: Session, n: int = n) -> None:
                    s.add(KeyValue(key=f"w.{n:06d}", value="x" * 200))  # takes the write lock first
                    s.flush()
                    audit.record(s, action="test.write", subject=f"w:{n}", details={"n": n, "pad": "y" * 300})
                self.db.run_sync(unit)
                with self._cond:
                    self.committed.append(n)
                    self._cond.notify_all()
                n += 1
        except BaseException as exc:  # pragma: no cover - reported by the test
            self.error = exc

    def wait_for(self, count: int, timeout: float = 30) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.committed) >= count or self.error is not None, timeout)
        assert self.error is None, self.error


def _env(monkeypatch: pytest.MonkeyPatch, data_dir: Path, url: str | None) -> None:
    monkeypatch.setenv("DATA_DIR", str(data_dir))
    if url is None:
        monkeypatch.delenv("DATABASE_URL", raising=False)
    else:
        monkeypatch.setenv("DATABASE_URL", url)


def _fresh_pg(url: str) -> tuple[str, str]:
    """A new empty database on the same server (the restore target); returns (url, name)."""
    u = make_url(url)
    name = f"eq_restore_{os.getpid()}"
    admin = create_engine(u.set(query={}), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return u.set(database=name).render_as_string(hide_password=False), name


def _drop_pg(url: str, name: str) -> None:
    admin = create_engine(make_url(url).set(query={}), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_backup_while_the_bot_writes_then_restore_loses_nothing(db, settings, tmp_path, monkeypatch, capsys):
    ids = db.run_sync(lambda s: {"p": make_person(s, make_school(s), "Nguyễn Văn Tin", ["it"]).id})
    photo = settings.media_dir / "inbox" / "ab" / "abcdef.jpg"
    photo.parent.mkdir(parents=True, exist_ok=True)
    photo.write_bytes(b"\xff\xd8 a photo of a broken projector" * 100)
    report = settings.data_dir / "reports" / "1" / "thiet-bi" / "2026-2027" / "HK1" / "bao-cao.xlsx"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_bytes(b"PK fake report")

    def bulk(s: Session) -> None:  # some volume, so that the copy takes a moment
        for i in range(1500):
            audit.record(s, action="test.bulk", subject=f"b:{i}", details={"pad": "z" * 400})
    db.run_sync(bulk)

    writer = Writer(Database(db.url))
    writer.start()
    try:
        writer.wait_for(20)
        with writer._cond:
            before = list(writer.committed)  # committed before the backup started
        _env(monkeypatch, settings.data_dir, db.url)
        dest = tmp_path / "usb"
        assert main.main(["backup", str(dest)]) == 0
        out = capsys.readouterr().out
        assert "Sao lưu hoàn tất" in out
        writer.wait_for(len(before) + 30)  # and it went on writing
    finally:
        writer.stop.set()
        writer.join(30)
    assert writer.error is None
    folders = [p for p in dest.iterdir() if p.name.startswith("saoluu-")]
    assert len(folders) == 1 and not [p for p in dest.iterdir() if p.name.endswith(".part")]
    manifest = json.loads((folders[0] / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["database"] == ("sqlite" if db.is_sqlite else "postgresql")
    info = db.run_sync(last_backup)
    assert info is not None and info["path"] == str(folders[0])
    assert db.run_sync(lambda s: audit.verify(s)).ok

    # Restore into a fresh location (a new server, or after a disk failure).
    fresh = tmp_path / "fresh"
    target_url, pg_name = (None, "") if db.is_sqlite else _fresh_pg(db.url)
    try:
        _env(monkeypatch, fresh, target_url)
        assert main.main(["restore", str(dest)]) == 0, capsys.readouterr().out
        assert "Khôi phục hoàn tất" in capsys.readouterr().out
        assert main.main(["audit-verify"]) == 0
        restored_url = target_url or f"sqlite:///{fresh / 'school.db'}"
        rdb = Database(restored_url)
        try:
            keys = rdb.run_sync(lambda s: [k for k in s.exec(select(KeyValue.key)) if k.startswith("w.")])
            written = sorted(int(k[2:]) for k in keys)
            # Every unit committed before the backup started is there, and what is there is a prefix
            # of what was committed (a consistent snapshot, no torn unit).
            assert set(before) <= set(written)
            assert written == list(range(len(written)))
            events = rdb.run_sync(lambda s: [e.subject for e in s.exec(
                select(AuditEvent).where(AuditEvent.action == "test.write").order_by(col(AuditEvent.id)))])
            assert events == [f"w:{n}" for n in written]
            assert rdb.run_sync(lambda s: len(list(audit.events(s, action="test.bulk")))) == 1500
            assert rdb.run_sync(lambda s: audit.verify(s)).ok
            assert rdb.run_sync(lambda s: list(audit.events(s, action="backup.restored")))
            person = rdb.run_sync(lambda s: s.exec(text("SELECT full_name FROM person WHERE id = :i"),
                                                   params={"i": ids["p"]}).one()[0])
            assert person == "Nguyễn Văn Tin"
        finally:
            rdb.dispose()
        restored_photo = fresh / "media" / "inbox" / "ab" / "abcdef.jpg"
        assert hashlib.sha256(restored_photo.read_bytes()).hexdigest() == hashlib.sha256(photo.read_bytes()).hexdigest()
        assert (fresh / "reports" / "1" / "thiet-bi" / "2026-2027" / "HK1" / "bao-cao.xlsx").is_file()
        # The restored database now holds data: a second restore needs --force.
        assert main.main(["restore", str(dest)]) == 1
        assert "--force" in capsys.readouterr().out
    finally:
        if pg_name:
            _drop_pg(db.url, pg_name)


def _settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str):
    from bot.config import load_settings

    monkeypatch.chdir(tmp_path)  # no stray .env
    for key in ("DATABASE_URL", "DATA_DIR"):
        monkeypatch.delenv(key, raising=False)
    return load_settings(data_dir=tmp_path / "data", database_url=url, web_port=0)


def test_sqlite_copy_stays_consistent_when_written_during_the_copy(sqlite_db, tmp_path, monkeypatch):
    """Page by page, with a unit committed by another connection in the middle of the copy."""
    db = Database(sqlite_db.url)

    def bulk(s: Session) -> None:
        for i in range(600):
            audit.record(s, action="test.bulk", subject=f"b:{i}", details={"pad": "z" * 400})
    db.run_sync(bulk)
    wrote: list[int] = []

    def progress(_status: int, remaining: int, _total: int) -> None:
        if not wrote and remaining > 0:
            def unit(s: Session) -> None:
                s.add(KeyValue(key="mid", value="during the copy"))
                s.flush()
                audit.record(s, action="test.mid", subject="mid")
            db.run_sync(unit)
            wrote.append(remaining)

    result = run_backup(_settings(tmp_path, monkeypatch, sqlite_db.url), tmp_path / "bk", tr=TR, pages=5, progress=progress)
    assert result.ok and wrote, result.render(TR)
    copy = Database(f"sqlite:///{result.path / 'database.sqlite3'}")
    try:
        assert copy.run_sync(lambda s: audit.verify(s)).ok
        assert copy.run_sync(lambda s: len(list(audit.events(s, action="test.bulk")))) == 600
        with copy.engine.connect() as conn:
            assert conn.execute(text("PRAGMA integrity_check")).scalar() == "ok"
    finally:
        copy.dispose()
        db.dispose()


def test_without_pg_dump_the_backup_fails_clearly(tmp_path, monkeypatch, sqlite_db):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    pg_settings = _settings(tmp_path, monkeypatch, "postgresql://school:secret@127.0.0.1:1/nowhere")
    (pg_settings.media_dir / "x").mkdir(parents=True)
    (pg_settings.media_dir / "x" / "a.jpg").write_bytes(b"photo")
    result = run_backup(pg_settings, tmp_path / "bk", tr=TR)
    text_out = result.render(TR)
    assert not result.ok and "pg_dump" in text_out and "CHƯA" in text_out
    assert result.files == 1  # the media were still copied
    record_backup(sqlite_db, result)
    assert sqlite_db.run_sync(last_backup) is None  # a failed backup is not "the last backup"
    assert sqlite_db.run_sync(lambda s: list(audit.events(s, action="backup.failed")))
    # and nothing of the password reached the report
    assert "secret" not in text_out
