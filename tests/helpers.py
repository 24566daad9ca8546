"""Helpers for tests that drive the core directly (channel end-to-end tests use the fakes)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import Session

from bot.core import Inbound, MessageRef, Outbound, Reply
from storage.models import Person, School
from storage.people import link_identity

_ids = itertools.count(1)


@dataclass
class RecordingChannel:
    """A channel adapter that keeps what it was asked to send (for core-level tests)."""

    name: str = "test"
    sent: list[Outbound] = field(default_factory=list)
    edits: list[tuple[MessageRef, Reply]] = field(default_factory=list)
    deleted: list[MessageRef] = field(default_factory=list)

    async def send(self, out: Outbound) -> str | None:
        self.sent.append(out)
        return str(next(_ids))

    async def edit(self, ref: MessageRef, reply: Reply) -> bool:
        self.edits.append((ref, reply))
        return True

    async def delete(self, ref: MessageRef) -> bool:
        self.deleted.append(ref)
        return True

    def texts(self, chat_id: str | None = None) -> list[str]:
        return [o.reply.text for o in self.sent if chat_id is None or o.chat_id == chat_id]


def inbound(user: str, *, channel: str = "test", **kw: object) -> Inbound:
    kw.setdefault("update_key", f"u{next(_ids)}")
    return Inbound(channel=channel, user_id=user, chat_id=str(kw.pop("chat_id", user)), **kw)  # type: ignore[arg-type]


def make_school(s: Session, name: str = "Trường Tiểu học Ngọc Thụy", **kw: object) -> School:
    school = School(name=name, short_name=kw.pop("short_name", "TH Ngọc Thụy"), **kw)  # type: ignore[arg-type]
    s.add(school)
    s.flush()
    return school


def make_person(s: Session, school: School, name: str, roles: list[str], phone: str | None = None,
                link: str | None = None, channel: str = "test", **kw: object) -> Person:
    p = Person(school_id=school.id or 0, full_name=name, roles=roles, phone=phone, **kw)  # type: ignore[arg-type]
    s.add(p)
    s.flush()
    if link:
        link_identity(s, person=p, channel=channel, external_id=link, chat_id=link)
    return p


@asynccontextmanager
async def recording_runtime(settings: Any, clock: Any, seed: Callable[[Session], None]) -> AsyncIterator[Any]:
    """A migrated, seeded :class:`bot.runtime.Runtime` (not started) whose messages go to a
    :class:`RecordingChannel` (``runtime.test_channel``); background jobs are drained at the end."""
    from bot.runtime import Runtime

    runtime = Runtime(settings, clock=clock)
    ch = RecordingChannel()
    runtime.sender.register(ch)
    await asyncio.to_thread(runtime.db.migrate)
    runtime.db.run_sync(seed)
    runtime.test_channel = ch  # type: ignore[attr-defined]
    try:
        yield runtime
        await runtime.dispatcher.drain()
    finally:
        await runtime.stop()  # the outbox clean-up and the units in flight finish, connections close
