"""The context a step or handler receives (:class:`Ctx`) and its typed :class:`Services`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol

from sqlmodel import Session, col, select

from bot.config import Settings
from bot.core.clock import Clock, SystemClock
from bot.core.flow import Registry
from bot.core.messages import ChannelName, Inbound, Outbound, Reply
from bot.core.sending import Sender
from bot.i18n import Translator
from storage import audit
from storage.db import Database
from storage.models import (
    ChannelIdentity,
    Conversation,
    Person,
    School,
)

log = logging.getLogger(__name__)


class NoticeQueue(Protocol):
    """The reminders' fan-out worker (:class:`bot.engine.fanout.FanOut`) as a unit sees it."""

    async def drain(self, *, max_rounds: int = ...) -> int: ...


class UnitRunner(Protocol):
    """What background work needs of the dispatcher."""

    async def run_unit(self, fn: Callable[[Ctx], None], *, person_id: int | None = None,
                       channel: str = "system", school_id: int | None = None) -> list[Outbound]: ...

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]: ...


class Host(Protocol):
    """The running bot (:class:`bot.runtime.Runtime`) as work after a unit sees it: a footage cut
    opens its own units, reaches the channel adapters and the database."""

    @property
    def settings(self) -> Settings: ...

    @property
    def db(self) -> Database: ...

    @property
    def services(self) -> Services: ...

    @property
    def sender(self) -> Sender: ...

    @property
    def dispatcher(self) -> UnitRunner: ...


@dataclass
class Services:
    """Dependencies handed to steps and handlers (no globals).

    ``host`` and ``fanout`` are set by the running bot; plain unit tests leave them ``None`` (no
    work after the unit; notices go out with the unit's own messages)."""

    settings: Settings
    registry: Registry
    clock: Clock = field(default_factory=SystemClock)
    fanout: NoticeQueue | None = None
    host: Host | None = None


@dataclass
class Ctx:
    session: Session
    services: Services
    inbound: Inbound
    person: Person | None
    school: School | None
    tr: Translator
    now: datetime
    conversation: Conversation | None = None
    data: dict[str, Any] = field(default_factory=dict)
    outbox: list[Outbound] = field(default_factory=list)
    after: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    def later(self, job: Callable[[], Awaitable[None]]) -> None:
        """Run ``job`` after this event's unit has committed and its messages were sent
        (long work such as cutting a clip; it must open its own database units)."""
        self.after.append(job)

    @property
    def settings(self) -> Settings:
        return self.services.settings

    @property
    def registry(self) -> Registry:
        return self.services.registry

    def t(self, msgid: str, /, **values: Any) -> str:
        return self.tr.t(msgid, **values)

    def tn(self, singular: str, plural: str, n: int, /, **values: Any) -> str:
        return self.tr.tn(singular, plural, n, **values)

    def today(self) -> date:
        return self.now.astimezone(self.tr.tz).date()

    def local_now(self) -> datetime:
        return self.now.astimezone(self.tr.tz)

    def audit(self, action: str, subject: str = "", /, **details: Any) -> None:
        audit.record(self.session, action=action, school_id=self.school.id if self.school else None,
                     actor_id=self.person.id if self.person else None, channel=self.inbound.channel,
                     subject=subject, details=details, at=self.now)

    def translator_for(self, person: Person) -> Translator:
        return Translator(person.locale or self.settings.default_locale, self.tr.tz)

    def send_to(self, person: Person, make: Callable[[Translator], Reply] | Reply) -> bool:
        """Queue a message for another person on their preferred channel. False if unreachable."""
        reply = make(self.translator_for(person)) if callable(make) else make
        dests = destinations(self.session, person)
        if not dests:
            log.info("person %s has no linked channel; message not sent", person.id)
            return False
        ch, chat = dests[0]
        self.outbox.append(Outbound(ch, chat, reply, person.id))
        return True


def destinations(session: Session, person: Person) -> list[tuple[str, str]]:
    """Active channel identities of a person, preferred channel first."""
    if not person.is_active:
        return []
    rows = session.exec(select(ChannelIdentity).where(ChannelIdentity.person_id == person.id,
                                                      col(ChannelIdentity.active).is_(True))
                        .order_by(col(ChannelIdentity.last_seen_at).desc(), col(ChannelIdentity.id))).all()
    # Only a private chat is written to: its chat is the account itself on every channel. An identity
    # linked from a group by an older version (Zalo Bot) is skipped until its owner writes privately.
    rows = [r for r in rows if r.chat_id == r.external_id]
    pref = person.preferred_channel
    # The preferred channel first; the web chat (a browser tab that may be closed) only when the
    # person has no messenger linked, however recently they used it.
    rows = sorted(rows, key=lambda r: 0 if r.channel == pref else 2 if r.channel == ChannelName.WEB else 1)
    return [(r.channel, r.chat_id) for r in rows]
