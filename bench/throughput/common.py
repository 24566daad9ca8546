"""Shared by the throughput and memory benchmarks: the database to run on, the seeded schools, the
child processes (fake Bot API, bot) and reading a process's CPU time and resident memory."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

HERE = Path(__file__).resolve().parent
TOKEN = "123456789:BENCH-fake-token_for-benchmarks-only"
SCHOOL_SIZE = 10  # one principal and nine teachers per school
FIRST_UID = 500_001
CAMERA_NAME = "Cổng chính"
# An NVR playback URL: coverage is known without I/O, so the summary offers "📨 Send". Nothing listens
# on port 9; no clip is ever fetched (the benchmark bot does not start extractions, see bots.py).
CAMERA_SOURCE = "nvr:http://127.0.0.1:9/playback/{camera}?from={start_epoch}&to={end_epoch}"
_SURNAMES = ["Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Vũ", "Đặng", "Bùi", "Đỗ", "Ngô"]
_MIDDLE = ["Thị", "Văn", "Minh", "Thu", "Quang", "Ngọc", "Hữu", "Thanh"]
_GIVEN = ["Vân", "Đức", "Hoa", "Nam", "Lan", "Hùng", "Mai", "Tuấn", "Hương", "Long", "Yến", "Phúc"]


# ---------------------------------------------------------------------------------------------
# Clock: local time pinned to 15:00 today (plus elapsed time), so "Hôm nay" + "8h30" is always past
# ---------------------------------------------------------------------------------------------
class AfternoonClock:
    """Real time moving forward, shifted so that the school's local time starts at 15:00 today."""

    def __init__(self, tz: str = "Asia/Ho_Chi_Minh") -> None:
        zone = ZoneInfo(tz)
        now = datetime.now(UTC)
        local = now.astimezone(zone)
        target = datetime.combine(local.date(), time(15, 0), tzinfo=zone)
        self.offset = target - local

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset


# ---------------------------------------------------------------------------------------------
# Database: SQLite file or a private PostgreSQL schema
# ---------------------------------------------------------------------------------------------
def sqlalchemy_url(url: str) -> str:
    if url.startswith("postgres://"):
        return "postgresql+psycopg://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


@dataclass
class BenchDb:
    """One fresh database for one phase. ``url`` is what the bot gets as DATABASE_URL."""

    url: str
    schema: str | None = None
    base_url: str = ""

    @classmethod
    def sqlite(cls, folder: Path) -> BenchDb:
        folder.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                (folder / f"school.db{suffix}").unlink()
        return cls(f"sqlite:///{folder / 'school.db'}")

    @classmethod
    def postgresql(cls, base: str, tag: str) -> BenchDb:
        from sqlalchemy import create_engine, text

        base = sqlalchemy_url(base)
        schema = f"bench_{tag}_{os.getpid()}"
        engine = create_engine(base)
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        engine.dispose()
        url = base + ("&" if "?" in base else "?") + f"options=-csearch_path%3D{schema}"
        return cls(url, schema, base)

    def drop(self) -> None:
        if self.schema is None:
            return
        from sqlalchemy import create_engine, text

        engine = create_engine(self.base_url)
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))
        engine.dispose()


@dataclass
class Seeded:
    """Telegram user ids of the seeded staff."""

    teachers: list[int] = field(default_factory=list)
    principals: list[int] = field(default_factory=list)
    school_of: dict[int, int] = field(default_factory=dict)  # uid -> school index

    @property
    def all(self) -> list[int]:
        return self.principals + self.teachers


def seed(url: str, people: int) -> Seeded:
    """Migrate, then create ``people`` staff in schools of ten (one principal each, the rest teachers),
    one camera per school, and link every person to a Telegram user id (as /start would)."""
    from sqlmodel import Session

    from bot.flows.footage.models import Camera
    from storage.db import Database
    from storage.models import Person, School
    from storage.people import link_identity

    db = Database(url)
    db.migrate()
    out = Seeded()
    schools = max(1, -(-people // SCHOOL_SIZE))

    def go(s: Session) -> None:
        uid = FIRST_UID
        made = 0
        for k in range(schools):
            school = School(name=f"Trường Tiểu học Thử tải {k + 1:03d}", short_name=f"TH {k + 1:03d}")
            s.add(school)
            s.flush()
            assert school.id is not None
            s.add(Camera(school_id=school.id, code="cong", name=CAMERA_NAME, source=CAMERA_SOURCE))
            for j in range(SCHOOL_SIZE):
                if made >= people:
                    break
                n = made
                name = f"{_SURNAMES[n % 10]} {_MIDDLE[(n // 10) % 8]} {_GIVEN[(n // 80) % 12]}"
                role = "principal" if j == 0 else "teacher"
                p = Person(school_id=school.id, full_name=name, roles=[role], phone=f"09{n:08d}",
                           unit="Tổ 1" if j % 2 else "Tổ 2")
                s.add(p)
                s.flush()
                link_identity(s, person=p, channel="telegram", external_id=str(uid), chat_id=str(uid),
                              display_name=name)
                (out.principals if role == "principal" else out.teachers).append(uid)
                out.school_of[uid] = k
                uid += 1
                made += 1

    db.run_sync(go)
    db.dispose()
    return out


def count_rows(url: str) -> dict[str, int]:
    """A few counts that prove the workflows really ran (after a phase)."""
    from sqlalchemy import text

    from storage.db import Database

    db = Database(url)
    try:
        with db.engine.connect() as conn:
            def one(sql: str) -> int:
                return int(conn.execute(text(sql)).scalar() or 0)
            return {
                "processed_updates": one("SELECT count(*) FROM processed_update"),
                "footage_requests": one("SELECT count(*) FROM footage_request"),
                "approved": one("SELECT count(*) FROM approval WHERE status = 'approved'"),
                "open_conversations": one("SELECT count(*) FROM conversation WHERE flow IS NOT NULL"),
                "emails_changed": one("SELECT count(*) FROM audit_event WHERE action = 'profile.email_changed'"),
            }
    finally:
        db.dispose()


# ---------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def postgres_cpu_seconds() -> float:
    """CPU time of every PostgreSQL server process on this machine (Linux /proc): each process's own
    and, for the postmaster, that of the backends it has reaped (connections that ended). Compare two
    readings; other databases' work counts too."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name = text[text.find("(") + 1:text.rfind(")")]
        if name != "postgres":
            continue
        fields = text.rsplit(")", 1)[1].split()
        total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return total / CLK_TCK


def memory_kb(pid: int | str = "self") -> dict[str, int]:
    """VmRSS / VmHWM / RssAnon ... of a process, in kB (Linux /proc)."""
    out: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.startswith(("Vm", "Rss")) and value.strip().endswith("kB"):
                out[key] = int(value.split()[0])
    return out


class Child:
    """A Python child process that prints one JSON line when it is ready, then serves until its stdin
    closes (or SIGTERM)."""

    def __init__(self, proc: asyncio.subprocess.Process, log_path: Path, info: dict[str, Any]) -> None:
        self.proc = proc
        self.log_path = log_path
        self.info = info

    @property
    def pid(self) -> int:
        return self.proc.pid

    @classmethod
    async def spawn(cls, script: Path, args: list[str], log_path: Path, *, cwd: Path,
                    timeout: float = 120.0, wrap: list[str] | None = None) -> Child:  # noqa: ASYNC109
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("TELEGRAM_", "WEB_", "DATABASE_URL", "DATA_DIR", "ZALO_"))}
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        env.setdefault("PYTHONHASHSEED", "0")
        cmd = [*(wrap or []), sys.executable, str(script), *args]
        log = log_path.open("wb")
        proc = await asyncio.create_subprocess_exec(*cmd, stdin=asyncio.subprocess.PIPE,
                                                    stdout=asyncio.subprocess.PIPE, stderr=log, cwd=str(cwd),
                                                    env=env)
        log.close()
        assert proc.stdout is not None
        try:
            while True:
                line = await asyncio.wait_for(proc.stdout.readline(), timeout)
                if not line:
                    raise RuntimeError(f"{script.name} exited before it was ready; see {log_path}:\n"
                                       + tail(log_path))
                with contextlib.suppress(ValueError):
                    info = json.loads(line)
                    if isinstance(info, dict) and info.get("ready"):
                        return cls(proc, log_path, info)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise

    async def stop(self, timeout: float = 30.0) -> dict[str, Any]:  # noqa: ASYNC109
        """Close stdin (the child shuts down cleanly) and return its last JSON line, if any."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        with contextlib.suppress(Exception):
            self.proc.stdin.close()
        last: dict[str, Any] = {}
        try:
            rest = await asyncio.wait_for(self.proc.stdout.read(), timeout)
            for line in rest.splitlines():
                with contextlib.suppress(ValueError):
                    obj = json.loads(line)
                    if isinstance(obj, dict):
                        last = obj
            await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()
        return last


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


async def wait_stdin_closed() -> None:
    """Return when the parent closes our stdin (or SIGTERM/SIGINT arrives)."""
    import signal

    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, done.set)

    def watch() -> None:
        with contextlib.suppress(Exception):
            while sys.stdin.buffer.read(4096):
                pass
        loop.call_soon_threadsafe(done.set)

    import threading

    threading.Thread(target=watch, daemon=True).start()
    await done.wait()


def say(obj: dict[str, Any]) -> None:
    """One JSON line to the parent."""
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(q / 100 * len(s) + 0.5)) - 1))
    return s[k]


def machine() -> str:
    import platform

    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load = ""
    with contextlib.suppress(OSError):
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return (f"{os.cpu_count()} CPU ({cpu or platform.machine()}), Python {platform.python_version()}, "
            f"load average {load}")


__all__ = ["CAMERA_NAME", "TOKEN", "AfternoonClock", "BenchDb", "Child", "Seeded", "count_rows", "cpu_seconds",
           "machine", "memory_kb", "percentile", "say", "seed", "wait_stdin_closed"]
