"""Helpers of the crash-safety tests (``tests/test_crash.py``): the bot as a real separate process
(``python main.py run``) against the fake Bot API served by the test process, killed with SIGKILL.

* :class:`BotProcess` starts ``main.py run`` in its own process group (so ffmpeg children die with it,
  as they do when a container or a systemd unit is killed), waits for it by watching the fake (its
  first ``getUpdates``), and kills the whole group with SIGKILL.
* :class:`GatedTelegram` is the fake Bot API with gates: a call matching a gate is recorded (so the
  test sees it arrive) and then kept waiting, which stops the bot at a known point. A gate opened
  after the bot died answers with an error, so nothing the dead bot never saw lands in a chat.
* :func:`hold_writes` keeps the database from committing anything (SQLite ``BEGIN IMMEDIATE``;
  PostgreSQL ``LOCK TABLE processed_update``): an update can be handed out but not decided.

Every wait re-checks recorded state (the fake's calls and chats, the database, ``/proc``); nothing
sleeps for a fixed time."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from bot.config import Settings
from storage.db import Database
from tests.fakes.telegram_server import BotApiError, ChatMessage, FakeTelegram, StoredFile

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 60.0  # a cold start on two shared, busy cores


@dataclass
class _Gate:
    method: str
    predicate: Callable[[dict[str, Any]], bool]
    event: asyncio.Event = field(default_factory=asyncio.Event)
    deliver: bool = True
    held: list[dict[str, Any]] = field(default_factory=list)


class GatedTelegram(FakeTelegram):
    """The fake Bot API, with :meth:`gate` to stop the bot inside a call."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._gates: list[_Gate] = []

    def gate(self, method: str, predicate: Callable[[dict[str, Any]], bool] = lambda p: True) -> _Gate:
        """Hold every following call of ``method`` (``sendMessage``, ``editMessageText``, ``sendVideo``)
        whose parameters match, until :meth:`open_gate`."""
        g = _Gate(method.lower(), predicate)
        self._gates.append(g)
        return g

    def open_gate(self, g: _Gate, *, deliver: bool) -> None:
        """Let the held calls go on (``deliver``) or fail them (the caller is dead: record nothing)."""
        g.deliver = deliver
        g.event.set()
        if g in self._gates:
            self._gates.remove(g)

    async def _gated(self, method: str, p: dict[str, Any]) -> None:
        for g in list(self._gates):
            if g.method == method and not g.event.is_set() and g.predicate(p):
                g.held.append(p)
                self._bump()
                await g.event.wait()
                if not g.deliver:
                    raise BotApiError(502, "Bad Gateway: the client went away")

    def _m_sendmessage(self, p: dict[str, Any], f: dict[str, StoredFile]) -> Any:
        async def go() -> Any:
            await self._gated("sendmessage", p)
            return FakeTelegram._m_sendmessage(self, p, f)
        return go()

    def _m_editmessagetext(self, p: dict[str, Any], f: dict[str, StoredFile]) -> Any:
        async def go() -> Any:
            await self._gated("editmessagetext", p)
            return FakeTelegram._m_editmessagetext(self, p, f)
        return go()

    # -- small readers ---------------------------------------------------------------------------
    def texts(self, chat_id: int) -> list[str]:
        return [m.text for m in self.bot_messages(chat_id)]

    def with_button(self, chat_id: int, prefix: str) -> list[ChatMessage]:
        """Bot messages in the chat carrying a button whose payload starts with ``prefix``."""
        return [m for m in self.bot_messages(chat_id)
                if any(str(b.get("callback_data", "")).startswith(prefix) for row in m.inline_buttons for b in row)]


def process_group_members(pgid: int, name: str) -> list[int]:
    """Pids of live processes called ``name`` in process group ``pgid`` (Linux ``/proc``)."""
    out: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.find("(") + 1:stat.rfind(")")]
        fields = stat[stat.rfind(")") + 2:].split()
        # fields: state ppid pgrp ...
        if comm == name and len(fields) > 2 and int(fields[2]) == pgid and fields[0] != "Z":
            out.append(int(entry.name))
    return out


class BotProcess:
    """``python main.py run`` as a separate process, pointed at the fake and the test database."""

    def __init__(self, fake: GatedTelegram, *, database_url: str, data_dir: Path, workdir: Path,
                 extra_env: dict[str, str] | None = None) -> None:
        self.fake = fake
        self.workdir = workdir
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("TELEGRAM_", "WEB_", "DATABASE_URL", "DATA_DIR", "ZALO_", "SCHEDULER_"))}
        self.env.update(TELEGRAM_BOT_TOKEN=fake.token, TELEGRAM_BASE_URL=fake.base_url,
                        TELEGRAM_BASE_FILE_URL=fake.base_file_url, DATABASE_URL=database_url,
                        DATA_DIR=str(data_dir), WEB_CHAT_ENABLED="false", WEB_PORT="0",
                        SCHEDULER_TICK_SECONDS="1", LOG_LEVEL="INFO", PYTHONUNBUFFERED="1")
        self.env.update(extra_env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.log_path = workdir / "bot.log"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    async def start(self) -> None:
        """Start and wait until the bot polls the fake for updates."""
        assert not self.alive(), "the bot is already running"
        since = len(self.fake.calls)
        log = self.log_path.open("ab")
        log.write(f"\n===== start {self.starts + 1} =====\n".encode())
        log.flush()
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "run"], cwd=self.workdir,
                                     env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.starts += 1
        await self.wait(lambda: any(c.method.lower() == "getupdates" for c in self.fake.calls[since:]),
                        START_TIMEOUT, "the bot's first getUpdates")

    async def wait(self, check: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:  # noqa: ASYNC109
        """``fake.wait_until`` that fails at once (with the bot's log) when the bot process died."""
        def guarded() -> Any:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"the bot exited ({self.proc.returncode}) while waiting for {what}:\n"
                                     + self.log_tail())
            return check()
        try:
            return await self.fake.wait_until(guarded, timeout, what)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\n--- bot log ---\n{self.log_tail()}") from None

    def kill(self) -> None:
        """SIGKILL the bot's whole process group (the bot and any ffmpeg it runs)."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    async def restart(self) -> None:
        if self.alive():
            self.kill()
        await self.start()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill()


@contextlib.contextmanager
def hold_writes(db: Database) -> Iterator[None]:
    """Nothing can be committed to the database while this is held (reads still work)."""
    if db.is_sqlite:
        path = db.url.split("///", 1)[1]
        conn = sqlite3.connect(path, timeout=30, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield
            conn.execute("ROLLBACK")
        finally:
            conn.close()
        return
    with db.engine.connect() as c:
        c.execute(text("LOCK TABLE processed_update IN EXCLUSIVE MODE"))
        try:
            yield
        finally:
            c.rollback()


# -- fixtures shared by the tests that run the bot as a real process ----------------------------------
# (imported by those test modules: ``from tests.crash_harness import bot, fake``)
@pytest.fixture
async def fake() -> AsyncIterator[GatedTelegram]:
    """The gated fake Bot API on 127.0.0.1, stopped at the end."""
    f = GatedTelegram()
    await f.start()
    try:
        yield f
    finally:
        await f.stop()


@pytest.fixture
async def bot(fake: GatedTelegram, settings: Settings, db_url: str, tmp_path: Path) -> AsyncIterator[BotProcess]:
    """The bot process (not started yet) on the test database; killed at the end whatever happens."""
    proc = BotProcess(fake, database_url=db_url, data_dir=settings.data_dir, workdir=tmp_path)
    try:
        yield proc
    finally:
        proc.stop()


__all__ = ["BotProcess", "GatedTelegram", "bot", "fake", "hold_writes", "process_group_members"]
