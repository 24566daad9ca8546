"""Helpers for tests that drive the core directly (channel end-to-end tests use the fakes)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable, Mapping
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


@dataclass(frozen=True)
class Member:
    """One person of a test story: their record's id and the chat they write from."""

    name: str
    id: int
    chat: str | int


class Cast(dict[str, Member]):
    """The people of a story by their part in it: ``cast["the principal"].chat``; ``school_id`` is their school."""

    school_id: int = 0


def enrol(db: Any, people: Mapping[str, tuple[str, list[str]] | tuple[str, list[str], dict[str, Any]]], *,
          channel: str = "test", school: str | None = None, first_user: int = 1) -> Cast:
    """Make a school (or use the one named ``school``) and in it the people of a story, each linked
    to a chat of their own on ``channel``: ``{"the principal": ("Trần Văn Đức", ["principal"])}``
    (a third item gives more fields, e.g. ``{"unit": "Tổ 1"}``). Telegram chats are numbers."""
    from sqlmodel import select

    def go(s: Session) -> Cast:
        found = s.exec(select(School).where(School.name == school)).first() if school else None
        home = found or make_school(s, **({"name": school} if school else {}))
        cast = Cast()
        cast.school_id = home.id or 0
        for n, (part, spec) in enumerate(people.items()):
            name, roles, *more = spec
            user: str | int = first_user + n if channel == "telegram" else f"{channel}{first_user + n}"
            person = make_person(s, home, name, roles, link=str(user), channel=channel, **(more[0] if more else {}))
            cast[part] = Member(name=name, id=person.id or 0, chat=user)
        return cast
    return db.run_sync(go)


@asynccontextmanager
async def recording_runtime(settings: Any, clock: Any, seed: Callable[[Session], None], *,
                            registry: Any = None) -> AsyncIterator[Any]:
    """A migrated, seeded :class:`bot.runtime.Runtime` (not started) whose messages go to a
    :class:`RecordingChannel` (``runtime.test_channel``); background jobs are drained at the end.
    ``registry``: other workflows than those of ``bot.flows`` (``tests/test_new_workflow.py``)."""
    from bot.runtime import Runtime

    runtime = Runtime(settings, clock=clock, registry=registry)
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
