"""The channel-neutral core: message types, the flow/handler registry and the dispatcher.

A channel adapter turns a platform update into an :class:`Inbound` and hands it to
:meth:`Dispatcher.handle`. The dispatcher resolves the person, drops duplicate updates, takes the
conversation's lock, runs one database unit for the event and routes it (button payload → its
handler, command → its entry point, anything else → the active workflow step). Workflow steps
return a :class:`Step`; they never send anything themselves. After the unit commits, the
:class:`Outbound` messages go to the adapters of every recipient.

This module imports neither ``telegram`` nor ``aiohttp`` (a test checks it)."""

from __future__ import annotations

import asyncio
import importlib
import logging
import pkgutil
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from sqlalchemy import delete, insert
from sqlalchemy import select as sa_select
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql import bindparam
from sqlmodel import Session, col, select

from bot.config import Settings
from bot.i18n import Translator
from storage import audit
from storage.db import Database
from storage.models import (
    ChannelIdentity,
    Conversation,
    Notice,
    NoticeStatus,
    OutboxMessage,
    Person,
    PersonStatus,
    ProcessedUpdate,
    School,
    SentMessage,
    utcnow,
)

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# Messages
# ---------------------------------------------------------------------------------------------
class ChannelName(StrEnum):
    TELEGRAM = "telegram"
    ZALO_OA = "zalo_oa"
    ZALO_BOT = "zalo_bot"
    WEB = "web"


@dataclass(frozen=True, slots=True)
class Contact:
    """A shared phone contact. ``user_id`` is the platform id of the contact's owner, if known."""

    phone: str
    user_id: str | None = None
    first_name: str = ""
    last_name: str = ""


@dataclass(frozen=True, slots=True)
class FileRef:
    """An attachment already fetched into the media store (platform file ids never reach the core).

    ``error`` is set instead of ``path`` when it could not be fetched (``too_big``, ``failed``)."""

    kind: str  # photo | video | voice | audio | document | video_note
    path: str | None
    mime: str = ""
    size: int = 0
    sha256: str = ""
    file_name: str = ""
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Inbound:
    channel: str
    user_id: str
    chat_id: str
    update_key: str
    text: str | None = None
    command: str | None = None
    args: str = ""
    payload: str | None = None
    contact: Contact | None = None
    location: tuple[float, float] | None = None
    files: tuple[FileRef, ...] = ()
    message_id: str | None = None
    display_name: str = ""
    language: str | None = None
    forwarded: bool = False
    at: datetime = field(default_factory=utcnow)

    @property
    def is_empty(self) -> bool:
        return not (self.text or self.command or self.payload or self.contact or self.location or self.files)


@dataclass(frozen=True, slots=True)
class Button:
    label: str
    payload: str

    def __post_init__(self) -> None:
        if len(self.payload.encode()) > 64:
            raise ValueError(f"button payload over 64 bytes: {self.payload[:20]}…")


Keyboard = tuple[tuple[Button, ...], ...]


def keyboard(*rows: Sequence[Button] | Button, per_row: int | None = None) -> Keyboard:
    """Build rows; a flat list of buttons is wrapped ``per_row`` to a row."""
    flat = [b for b in rows if isinstance(b, Button)]
    if flat and len(flat) == len(rows):
        n = per_row or 1
        return tuple(tuple(flat[i:i + n]) for i in range(0, len(flat), n))
    return tuple(tuple(r) if not isinstance(r, Button) else (r,) for r in rows)


@dataclass(frozen=True, slots=True)
class MessageRef:
    channel: str
    chat_id: str
    message_id: str


@dataclass(frozen=True, slots=True)
class OutFile:
    kind: str  # photo | video | document
    path: str
    file_name: str = ""
    mime: str = ""


@dataclass(frozen=True, slots=True)
class Reply:
    """What to show one person (channel-neutral). ``text`` is safe HTML (see bot.i18n)."""

    text: str
    buttons: Keyboard = ()
    file: OutFile | None = None
    protect: bool = False
    ask_contact: str | None = None  # label of a one-tap "share my phone number" button
    remove_keyboard: bool = False
    track: tuple[str, str] | None = None  # (ref_kind, ref_id): remember where it was sent
    delete_after: int | None = None  # seconds; the message is deleted from the chat then
    edit: MessageRef | None = None  # edit this message instead of sending a new one


@dataclass(frozen=True, slots=True)
class Outbound:
    channel: str
    chat_id: str
    reply: Reply
    person_id: int | None = None


def reply_to_payload(reply: Reply) -> dict[str, Any]:
    """A JSON form of a Reply, so a queued message survives a restart."""
    out: dict[str, Any] = {"text": reply.text,
                           "buttons": [[[b.label, b.payload] for b in row] for row in reply.buttons]}
    if reply.protect:
        out["protect"] = True
    if reply.file is not None:
        f = reply.file
        out["file"] = {"kind": f.kind, "path": str(f.path), "file_name": f.file_name, "mime": f.mime}
    if reply.ask_contact is not None:
        out["ask_contact"] = reply.ask_contact
    if reply.remove_keyboard:
        out["remove_keyboard"] = True
    if reply.track is not None:
        out["track"] = list(reply.track)
    if reply.delete_after:
        out["delete_after"] = reply.delete_after
    if reply.edit is not None:
        e = reply.edit
        out["edit"] = [e.channel, e.chat_id, e.message_id]
    return out


def payload_to_reply(p: Mapping[str, Any]) -> Reply:
    buttons = tuple(tuple(Button(str(lbl), str(pl)) for lbl, pl in row) for row in p.get("buttons") or [])
    f = p.get("file")
    file = OutFile(kind=str(f["kind"]), path=str(f["path"]), file_name=str(f.get("file_name") or ""),
                   mime=str(f.get("mime") or "")) if isinstance(f, Mapping) else None
    track = (str(p["track"][0]), str(p["track"][1])) if p.get("track") else None
    edit = MessageRef(*(str(x) for x in p["edit"])) if p.get("edit") else None
    ask = p.get("ask_contact")
    delete_after = p.get("delete_after")
    return Reply(str(p.get("text", "")), buttons=buttons, file=file, protect=bool(p.get("protect")),
                 ask_contact=str(ask) if ask is not None else None, remove_keyboard=bool(p.get("remove_keyboard")),
                 track=track, delete_after=int(delete_after) if delete_after else None, edit=edit)


# ---------------------------------------------------------------------------------------------
# Steps, flows, handlers
# ---------------------------------------------------------------------------------------------
@dataclass(slots=True)
class Step:
    """What a workflow step (or a handler) decided.

    * ``goto(state, ...)`` moves to the next state; ``stay(...)`` keeps the state (validation error
      or re-prompt); ``done(...)`` ends the workflow; ``start_flow(name)`` starts another one."""

    replies: list[Reply] = field(default_factory=list)
    next: str | None = None
    end: bool = False
    start: str | None = None
    seed: dict[str, Any] | None = None  # initial draft data of the flow being started

    @classmethod
    def goto(cls, state: str, *replies: Reply) -> Step:
        return cls(list(replies), next=state)

    @classmethod
    def stay(cls, *replies: Reply) -> Step:
        return cls(list(replies))

    @classmethod
    def done(cls, *replies: Reply) -> Step:
        return cls(list(replies), end=True)

    @classmethod
    def start_flow(cls, name: str, *replies: Reply, seed: dict[str, Any] | None = None) -> Step:
        return cls(list(replies), start=name, seed=seed)


StepFn = Callable[["Ctx", Inbound], Step]
StartFn = Callable[["Ctx"], Step]


@dataclass(frozen=True)
class Flow:
    """One workflow: an entry point and a table of states (see ``bot/flows/profile.py``)."""

    name: str
    title: str  # msgid, shown on the menu button
    start: StartFn
    states: Mapping[str, StepFn]
    command: str | None = None
    description: str = ""  # msgid, for /trogiup
    roles: frozenset[str] | None = None  # None: every linked, active person
    order: int = 100
    in_menu: bool = True
    icon: str = ""

    def allowed(self, person: Person) -> bool:
        return self.roles is None or any(r in self.roles for r in person.roles)


HandlerFn = Callable[["Ctx"], Step]


@dataclass(frozen=True)
class Handler:
    """An entry point that is not a workflow: a command and/or a payload namespace."""

    fn: HandlerFn
    commands: tuple[str, ...] = ()
    prefix: str | None = None  # payload namespace, e.g. "ap" for "ap:12:ok"
    allow_unlinked: bool = False
    roles: frozenset[str] | None = None
    description: str = ""  # msgid for /trogiup
    order: int = 100


class Registry:
    """Flows (auto-discovered from ``bot.flows``) and handlers (from ``bot.handlers``)."""

    def __init__(self) -> None:
        self.flows: dict[str, Flow] = {}
        self.handlers: list[Handler] = []
        self._by_command: dict[str, Handler | Flow] = {}
        self._by_prefix: dict[str, Handler] = {}
        self.on_contact: HandlerFn | None = None
        self.on_unlinked: HandlerFn | None = None
        self.on_idle: HandlerFn | None = None
        self.on_unknown_command: HandlerFn | None = None
        #: kind → fn(ctx, approval, outcome) called in the decider's unit when an approval ends
        self.approval_hooks: dict[str, Callable[..., None]] = {}
        #: reminder rules (bot.reminders.Rule) declared by flow modules as ``RULES``
        self.rules: dict[str, Any] = {}
        #: called with the context whenever a linked person writes (e.g. to release held notices)
        self.person_seen_hooks: list[Callable[[Ctx], object]] = []

    def add_flow(self, flow: Flow) -> None:
        if flow.name in self.flows:
            raise ValueError(f"duplicate flow {flow.name}")
        self.flows[flow.name] = flow
        if flow.command:
            self._claim(flow.command, flow)

    def add_rule(self, rule: Any) -> None:
        if rule.key in self.rules:
            raise ValueError(f"duplicate reminder rule {rule.key}")
        self.rules[rule.key] = rule

    def add_handler(self, handler: Handler) -> None:
        self.handlers.append(handler)
        for c in handler.commands:
            self._claim(c, handler)
        if handler.prefix:
            if handler.prefix in self._by_prefix or handler.prefix == "c":
                raise ValueError(f"payload prefix {handler.prefix!r} taken")
            self._by_prefix[handler.prefix] = handler

    def _claim(self, command: str, target: Handler | Flow) -> None:
        if command in self._by_command:
            raise ValueError(f"command /{command} registered twice")
        self._by_command[command] = target

    def command(self, name: str) -> Handler | Flow | None:
        return self._by_command.get(name)

    def payload_handler(self, payload: str) -> Handler | None:
        return self._by_prefix.get(payload.split(":", 1)[0])

    def flows_for(self, person: Person) -> list[Flow]:
        return sorted((f for f in self.flows.values() if f.allowed(person)), key=lambda f: (f.order, f.name))

    def commands_for(self, person: Person | None) -> list[tuple[str, str]]:
        """(command, description msgid) pairs this person may use, for help and setMyCommands."""
        out: list[tuple[int, str, str]] = []
        for h in self.handlers:
            if h.description and h.commands and (person is None or h.roles is None
                                                 or any(r in h.roles for r in person.roles)):
                out.append((h.order, h.commands[0], h.description))
        for f in self.flows.values():
            if f.command and (person is None or f.allowed(person)):
                out.append((f.order, f.command, f.description or f.title))
        return [(c, d) for _, c, d in sorted(out)]

    def discover(self, flows_package: str = "bot.flows", handlers_package: str = "bot.handlers") -> Registry:
        for pkg_name, attr in ((handlers_package, "register"), (flows_package, "FLOW")):
            pkg = importlib.import_module(pkg_name)
            for mod in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
                if mod.name.startswith("_"):
                    continue
                module = importlib.import_module(f"{pkg_name}.{mod.name}")
                obj = getattr(module, attr, None)
                if obj is None:
                    continue
                if attr == "FLOW":
                    self.add_flow(obj)
                    self.approval_hooks.update(getattr(module, "APPROVAL_HOOKS", {}) or {})
                    for rule in getattr(module, "RULES", ()) or ():
                        self.add_rule(rule)
                    extra = getattr(module, "register", None)
                    if callable(extra):  # a flow's own buttons and sub-flows
                        extra(self)
                else:
                    obj(self)
        return self


# ---------------------------------------------------------------------------------------------
# Context given to steps and handlers
# ---------------------------------------------------------------------------------------------
class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass
class Services:
    """Dependencies handed to steps and handlers (no globals)."""

    settings: Settings
    registry: Registry
    clock: Clock = field(default_factory=SystemClock)
    extras: dict[str, Any] = field(default_factory=dict)


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
    pref = person.preferred_channel
    # The preferred channel first; the web chat (a browser tab that may be closed) only when the
    # person has no messenger linked, however recently they used it.
    rows = sorted(rows, key=lambda r: 0 if r.channel == pref else 2 if r.channel == ChannelName.WEB else 1)
    return [(r.channel, r.chat_id) for r in rows]


# ---------------------------------------------------------------------------------------------
# Sending
# ---------------------------------------------------------------------------------------------
class ChannelAdapter(Protocol):
    name: str

    async def send(self, out: Outbound) -> str | None:
        """Send; return the platform message id (or None if it has none)."""
        ...

    async def edit(self, ref: MessageRef, reply: Reply) -> bool: ...

    async def delete(self, ref: MessageRef) -> bool: ...


class RetryLater(Exception):
    """Raised by an adapter when the platform asks to wait (HTTP 429 ``retry_after``)."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"retry after {retry_after}s")
        self.retry_after = float(retry_after)


class Sender:
    """Hands outbound messages to the adapters, through the persistent outbox.

    An event's (or a scheduled unit's) messages are written as ``outbox`` rows in the unit that
    decided them (:meth:`persist`), sent after the commit (:meth:`deliver`), and deleted together
    with the record of tracked messages in one unit afterwards. A crash between the commit and the
    end of sending leaves the rows: :meth:`recover` sends them at the next start, so a committed
    decision never loses its messages; what was in flight at the kill may be sent twice."""

    #: an event's reply that hit a 429 is retried once after at most this many seconds
    MAX_INLINE_WAIT = 30.0
    #: rows not sent this long after their claim belong to a process that died (several processes)
    STALE = timedelta(seconds=90)

    #: sent rows are deleted in batches, at most this long after their message went out
    FLUSH_DELAY = 0.05

    def __init__(self, db: Database, clock: Clock | None = None) -> None:
        self.db = db
        self.clock = clock
        self.adapters: dict[str, ChannelAdapter] = {}
        self._sent_rows: list[int] = []
        self._flusher: asyncio.TimerHandle | None = None
        self._flushing: asyncio.Task[None] | None = None

    def register(self, adapter: ChannelAdapter) -> None:
        self.adapters[adapter.name] = adapter

    def _now(self) -> datetime:
        return self.clock.now() if self.clock is not None else utcnow()

    @staticmethod
    def persist(s: Session, outbox: Sequence[Outbound]) -> list[int]:
        """Write ``outbox`` as rows in the caller's unit; returns the ids of the rows written.

        A message that deletes itself (``delete_after``: a temporary password) is never written to
        the database: it is sent from memory only, so a crash at the wrong moment loses it (the
        person asks again) rather than keeping the secret in a table."""
        keep = [o for o in outbox if not o.reply.delete_after]
        if not keep:
            return []
        now = utcnow()  # a lease in real time, whatever the business clock says
        table = OutboxMessage.__table__  # type: ignore[attr-defined]
        # A Core insert (no ORM unit of work: these rows are never used as objects here), one
        # statement for all rows: the ids only say which rows to delete once sent, in any order.
        result = s.execute(insert(table).returning(table.c.id),
                           [{"channel": o.channel, "chat_id": o.chat_id, "person_id": o.person_id,
                             "payload": reply_to_payload(o.reply), "claimed_at": now, "attempts": 0}
                            for o in keep])
        return [int(i) for i in result.scalars().all()]

    async def _send_one(self, adapter: ChannelAdapter, out: Outbound) -> str | None:
        try:
            return await adapter.send(out)
        except RetryLater as exc:
            # Only this event's replies wait (they go to one chat); other chats are not held up.
            await asyncio.sleep(min(exc.retry_after, self.MAX_INLINE_WAIT))
            return await adapter.send(out)

    async def deliver(self, outbox: Iterable[Outbound], now: datetime | None = None,
                      row_ids: Sequence[int] = (), first: tuple[str, str] | None = None) -> list[str | None]:
        """Send, in order; then delete the outbox rows ``row_ids`` and record tracked messages.

        ``first`` (channel, chat): the chat of the person who acted gets its messages before the
        other chats get theirs (a teacher's "sent to the principal" before the principal's card), each
        chat's own messages staying in order. The ids come back in the order of ``outbox``."""
        items = list(outbox)
        order = list(range(len(items)))
        if first is not None:
            order.sort(key=lambda i: (items[i].channel, items[i].chat_id) != first)  # stable
        by_pos: dict[int, str | None] = {}
        sent: list[tuple[Outbound, str]] = []
        for pos in order:
            out = items[pos]
            adapter = self.adapters.get(out.channel)
            if adapter is None:
                log.warning("no adapter for channel %s; message to chat dropped", out.channel)
                by_pos[pos] = None
                continue
            try:
                if out.reply.edit is not None:
                    ok = await adapter.edit(out.reply.edit, out.reply)
                    by_pos[pos] = out.reply.edit.message_id if ok else None
                    continue
                mid = await self._send_one(adapter, out)
            except Exception:  # an adapter failure must not lose the others
                log.exception("sending on %s failed", out.channel)
                by_pos[pos] = None
                continue
            by_pos[pos] = mid
            if mid is not None:
                sent.append((out, mid))
        await self.remember(sent, now, done=row_ids)
        return [by_pos.get(i) for i in range(len(items))]

    def _tracked(self, sent: Iterable[tuple[Outbound, str]], now: datetime | None) -> list[SentMessage]:
        tracked: list[SentMessage] = []
        for out, mid in sent:
            r = out.reply
            if not (r.track or r.delete_after):
                continue
            sent_at = now or self._now()
            tracked.append(SentMessage(
                channel=out.channel, chat_id=out.chat_id, message_id=str(mid), person_id=out.person_id,
                ref_kind=r.track[0] if r.track else "ephemeral", ref_id=r.track[1] if r.track else "",
                sent_at=sent_at,
                delete_at=sent_at + timedelta(seconds=r.delete_after) if r.delete_after else None))
        return tracked

    async def remember(self, sent: Iterable[tuple[Outbound, str]], now: datetime | None = None,
                       done: Sequence[int] = ()) -> None:
        """Record the messages that must be edited or deleted later (``track`` / ``delete_after``)
        at once, and have the outbox rows ``done`` deleted: with that record, else in the next batch
        (``FLUSH_DELAY``; one unit for many events — a kill in between sends those few again)."""
        tracked = self._tracked(sent, now)
        if not tracked:
            if done:
                self._sent_rows.extend(done)
                self._schedule_flush()
            return
        rows = [*self._take_sent_rows(), *done]

        def _save(s: Session) -> None:
            if rows:
                s.execute(delete(OutboxMessage).where(col(OutboxMessage.id).in_(rows)))
            for row in tracked:
                s.add(row)
        try:
            await self.db.run(_save)
        except BaseException:
            self._sent_rows.extend(rows)  # deleted later; the record of the cards is what failed
            raise

    def _take_sent_rows(self) -> list[int]:
        rows, self._sent_rows = self._sent_rows, []
        return rows

    def _schedule_flush(self) -> None:
        if self._flusher is not None or not self._sent_rows:
            return
        loop = asyncio.get_running_loop()

        def start() -> None:
            self._flusher = None
            if self._flushing is None or self._flushing.done():
                self._flushing = loop.create_task(self.flush())
            else:
                self._schedule_flush()
        self._flusher = loop.call_later(self.FLUSH_DELAY, start)

    async def close(self) -> None:
        """At shutdown: the batch in progress finishes, then what is left is deleted now."""
        if self._flusher is not None:
            self._flusher.cancel()
            self._flusher = None
        if self._flushing is not None and not self._flushing.done():
            await asyncio.wait([self._flushing])
        await self.flush()
        if self._flusher is not None:  # a failed delete rescheduled itself: the next start sends again
            self._flusher.cancel()
            self._flusher = None

    async def flush(self) -> None:
        """Delete the outbox rows whose messages went out (tests and shutdown call it directly)."""
        rows = self._take_sent_rows()
        if not rows:
            return
        try:
            await self.db.run(lambda s: s.execute(delete(OutboxMessage).where(col(OutboxMessage.id).in_(rows))))
        except Exception:
            log.warning("could not clear %s sent outbox row(s); will retry", len(rows))
            self._sent_rows.extend(rows)
            self._schedule_flush()

    def _claim(self, s: Session, before: datetime, limit: int) -> list[tuple[int, Outbound]]:
        q = (select(OutboxMessage).where(col(OutboxMessage.claimed_at) < before)
             .order_by(col(OutboxMessage.id)).limit(limit))
        if not self.db.is_sqlite:
            q = q.with_for_update(skip_locked=True)
        rows = s.exec(q).all()
        now = utcnow()
        out: list[tuple[int, Outbound]] = []
        for r in rows:
            r.claimed_at, r.attempts = now, r.attempts + 1
            s.add(r)
            if r.attempts > 3:  # sent three times and still here: something is wrong with it
                log.error("outbox row %s dropped after %s attempts", r.id, r.attempts - 1)
                s.delete(r)
                continue
            try:
                out.append((r.id or 0, Outbound(r.channel, r.chat_id, payload_to_reply(r.payload), r.person_id)))
            except Exception:
                log.error("outbox row %s unreadable; dropped", r.id)
                s.delete(r)
        return out

    async def recover(self, *, before: datetime | None = None, limit: int = 500) -> int:
        """Send the messages a crash left in the outbox: those claimed before ``before`` (at start,
        the moment before the channels started, when no other process can be sending them —
        SQLite), else those whose claim is stale (``STALE``: a process that died)."""
        cutoff = before if before is not None else utcnow() - self.STALE
        total = 0
        while True:
            jobs = await self.db.run(lambda s: self._claim(s, cutoff, limit))
            if not jobs:
                break
            log.info("outbox: sending %s message(s) left by an interrupted run", len(jobs))
            # In order, one by one: messages to one chat keep their order.
            for row_id, out in jobs:
                await self.deliver([out], row_ids=[row_id])
            total += len(jobs)
            if len(jobs) < limit:
                break
        return total


class KeyedLocks:
    """One asyncio lock per conversation, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[tuple[str, str], tuple[asyncio.Lock, int]] = {}

    def __len__(self) -> int:
        return len(self._locks)

    async def __call__(self, key: tuple[str, str], fn: Callable[[], Awaitable[Any]]) -> Any:
        lock, users = self._locks.get(key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                return await fn()
        finally:
            lock2, n = self._locks[key]
            if n <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock2, n - 1)


# ---------------------------------------------------------------------------------------------
# The dispatcher
# ---------------------------------------------------------------------------------------------
CHOICE = "c"  # payload namespace of buttons that answer the active workflow step: "c:<value>"


def choice(label: str, value: str) -> Button:
    return Button(label, f"{CHOICE}:{value}")


def choice_value(msg: Inbound) -> str | None:
    """The value of a tapped step button (``c:<value>``), or None."""
    if msg.payload and msg.payload.startswith(CHOICE + ":"):
        return msg.payload[len(CHOICE) + 1:]
    return None


@dataclass
class _Result:
    outbox: list[Outbound]
    duplicate: bool = False
    after: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)  # the outbox rows holding ``outbox``


def _persisted(s: Session, result: _Result) -> _Result:
    """End of a unit: the messages it decided are written to the outbox in the same transaction."""
    result.rows = Sender.persist(s, result.outbox)
    return result


class Dispatcher:
    def __init__(self, db: Database, services: Services, sender: Sender) -> None:
        self.db = db
        self.services = services
        self.sender = sender
        self.locks = KeyedLocks()
        self.processed = 0
        #: cleared while the runtime starts (the outbox left by a crash goes out before new events)
        self.ready = asyncio.Event()
        self.ready.set()
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        """Run background work, keeping a reference and logging (never raising) its failure."""
        async def guarded() -> None:
            try:
                await coro
            except Exception:
                log.exception("background job failed")

        task = asyncio.ensure_future(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def drain(self) -> None:
        """Wait for background jobs (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def run_unit(self, fn: Callable[[Ctx], None], *, person_id: int | None = None,
                       channel: str = "system", school_id: int | None = None) -> list[Outbound]:
        """Run work that is not an inbound event (scheduler ticks, background jobs) with a context,
        commit, then deliver what it queued."""
        msg = Inbound(channel=channel, user_id="", chat_id="", update_key="")

        def unit(s: Session) -> _Result:
            person = s.get(Person, person_id) if person_id else None
            sid = person.school_id if person else school_id
            school = s.get(School, sid) if sid else None
            ctx = self.make_ctx(s, msg, person, school)
            fn(ctx)
            return _persisted(s, _Result(ctx.outbox, after=ctx.after))

        result = await self.db.run(unit)
        await self.sender.deliver(result.outbox, row_ids=result.rows)
        for job in result.after:
            self.spawn(job())
        return result.outbox

    @property
    def settings(self) -> Settings:
        return self.services.settings

    async def handle(self, msg: Inbound) -> list[Outbound]:
        """Process one inbound event end to end; return what was sent (for tests and adapters)."""
        if not self.ready.is_set():
            await self.ready.wait()

        async def run() -> list[Outbound]:
            try:
                result = await self.db.run(lambda s: _persisted(s, self._process(s, msg)))
            except IntegrityError:
                if await self.db.run(lambda s: self._seen(s, msg)):
                    # A concurrent delivery of the same update won the race: it is a duplicate.
                    log.info("duplicate update %s/%s dropped (race)", msg.channel, msg.update_key)
                    return []
                # Another constraint (e.g. two people adding the same code at once): nothing was
                # saved; the person is told and may try again.
                log.warning("event on %s hit a database constraint; answering with an apology", msg.channel)
                result = await self.db.run(lambda s: _persisted(s, self._failed(s, msg)))
            except Exception:
                log.exception("event on %s failed; answering with an apology", msg.channel)
                result = await self.db.run(lambda s: _persisted(s, self._failed(s, msg)))
            if result.duplicate:
                return []
            self.processed += 1
            await self.sender.deliver(result.outbox, row_ids=result.rows, first=(msg.channel, msg.chat_id))
            for job in result.after:
                self.spawn(job())
            return result.outbox

        return await self.locks((msg.channel, msg.chat_id), run)

    # -- one unit of work ----------------------------------------------------------------------
    #: an identity's ``last_seen_at`` is written when it is at least this old (or the chat changed)
    LAST_SEEN_EVERY = timedelta(seconds=60)
    #: key in ``Session.info``: whether this event's person has held notices (set by ``_resolve``)
    HELD_HINT = "held_notices"
    CONVERSATION = "conversation"
    #: the statements every event runs, built once (on SQLite building one costs more than running it)
    _STATEMENTS: dict[tuple[str, str], Any] = {}

    def _seen(self, s: Session, msg: Inbound) -> bool:
        return s.exec(select(ProcessedUpdate.id).where(ProcessedUpdate.channel == msg.channel,
                                                       ProcessedUpdate.update_key == msg.update_key)).first() is not None

    def _mark(self, s: Session, msg: Inbound) -> bool:
        """Record the update as processed; False if it already was.

        One statement and no read before it: an insert that does nothing when the unique
        (channel, update_key) is already there, so a duplicate is told by what the insert returns,
        not by an exception. On PostgreSQL a concurrent delivery of the same update waits for the
        first one's transaction: it then finds the row (duplicate), or inserts it if that one
        rolled back."""
        dialect = s.get_bind().dialect
        if dialect.name not in ("sqlite", "postgresql"):  # read, then insert (the constraint still guards)
            if self._seen(s, msg):
                return False
            s.add(ProcessedUpdate(channel=msg.channel, update_key=msg.update_key))
            return True
        stmt = self._STATEMENTS.get(("mark", dialect.name))
        if stmt is None:
            table = ProcessedUpdate.__table__  # type: ignore[attr-defined]
            ins = sqlite_dialect.insert if dialect.name == "sqlite" else pg_dialect.insert
            stmt = (ins(table)
                    .values(channel=bindparam("channel"), update_key=bindparam("update_key"),
                            processed_at=bindparam("at", type_=table.c.processed_at.type))
                    .on_conflict_do_nothing(index_elements=["channel", "update_key"]))
            if dialect.insert_returning:  # PostgreSQL, SQLite ≥ 3.35
                stmt = stmt.returning(table.c.id)
            self._STATEMENTS["mark", dialect.name] = stmt
        result = s.exec(stmt, params={"channel": msg.channel, "update_key": msg.update_key, "at": utcnow()})
        if dialect.insert_returning:  # a row back: inserted
            return result.first() is not None
        return result.rowcount == 1  # type: ignore[attr-defined]

    def _resolve(self, s: Session, msg: Inbound) -> tuple[ChannelIdentity | None, Person | None, School | None]:
        """The sender's identity, person (None unless active) and school, in one query.

        The same query tells whether the person has held notices (``s.info[HELD_HINT]``), so the
        person-seen hook that releases them (:func:`bot.reminders.release_held`) reads nothing
        when there are none — the common case — and reads this chat's conversation
        (``s.info[CONVERSATION]``, used by ``_process``)."""
        stmt = self._STATEMENTS.get(("resolve", ""))
        if stmt is None:
            held = (select(Notice.id).where(col(Notice.person_id) == col(Person.id),
                                            col(Notice.status) == NoticeStatus.HELD.value)
                    .exists().label("held"))
            stmt = (sa_select(ChannelIdentity, Person, School, held, Conversation)
                    .outerjoin(Person, col(Person.id) == col(ChannelIdentity.person_id))
                    .outerjoin(School, col(School.id) == col(Person.school_id))
                    .outerjoin(Conversation, (col(Conversation.channel) == col(ChannelIdentity.channel))
                               & (col(Conversation.chat_id) == bindparam("chat_id")))
                    .where(col(ChannelIdentity.channel) == bindparam("channel"),
                           col(ChannelIdentity.external_id) == bindparam("external_id"),
                           col(ChannelIdentity.active).is_(True)))
            self._STATEMENTS["resolve", ""] = stmt
        row = s.execute(stmt, {"channel": msg.channel, "external_id": msg.user_id,
                               "chat_id": msg.chat_id}).first()
        if row is None:
            return None, None, None
        ident, person, school, has_held, conv = row
        if person is None or person.status != PersonStatus.ACTIVE:
            return ident, None, None
        s.info[self.HELD_HINT] = bool(has_held)
        s.info[self.CONVERSATION] = conv  # this chat's conversation (None: none yet), read in the same query
        return ident, person, school

    def make_ctx(self, s: Session, msg: Inbound, person: Person | None, school: School | None) -> Ctx:
        locale = (person.locale if person else None) or self.settings.default_locale
        return Ctx(session=s, services=self.services, inbound=msg, person=person, school=school,
                   tr=Translator(locale, self.settings.tz), now=self.services.clock.now())

    def _failed(self, s: Session, msg: Inbound) -> _Result:
        if not self._mark(s, msg):
            return _Result([], duplicate=True)
        ident, person, _school = self._resolve(s, msg)
        tr = Translator((person.locale if person else None) or self.settings.default_locale, self.settings.tz)
        text = tr.t("Sorry, something went wrong on our side. Nothing you entered was lost; "
                    "please try again, or type /huy to start over.")
        return _Result([Outbound(msg.channel, msg.chat_id, Reply(text), person.id if person else None)])

    def _process(self, s: Session, msg: Inbound) -> _Result:
        if not self._mark(s, msg):
            log.info("duplicate update %s/%s dropped", msg.channel, msg.update_key)
            return _Result([], duplicate=True)
        ident, person, school = self._resolve(s, msg)
        ctx = self.make_ctx(s, msg, person, school)
        reg = self.services.registry
        if ident is not None and person is not None:
            # Written at most once a minute (an UPDATE per event otherwise); who reads it — the
            # choice of destination, Zalo's reply window — can live with a minute of staleness.
            # A time ahead of the clock (set before the clock was put back) is corrected, not kept.
            seen = ident.last_seen_at
            if seen is None or ident.chat_id != msg.chat_id or abs(ctx.now - seen) >= self.LAST_SEEN_EVERY:
                ident.last_seen_at = ctx.now
                ident.chat_id = msg.chat_id
            for hook in reg.person_seen_hooks:
                hook(ctx)

        if person is None:
            step = self._unlinked(ctx, msg)
            # Linking may have happened in this step: greet by the person just linked.
            self._emit(ctx, step.replies)
            return _Result(ctx.outbox, after=ctx.after)

        if self.CONVERSATION in s.info:
            conv = s.info.pop(self.CONVERSATION)
        else:
            conv = s.exec(select(Conversation).where(Conversation.channel == msg.channel,
                                                     Conversation.chat_id == msg.chat_id)).first()
        if conv is None:
            conv = Conversation(channel=msg.channel, chat_id=msg.chat_id, person_id=person.id)
            s.add(conv)
        elif conv.person_id != person.id:
            conv.person_id, conv.flow, conv.state, conv.data = person.id, None, None, {}
        ctx.conversation = conv
        ctx.data = dict(conv.data or {})
        replies: list[Reply] = []

        if conv.flow and conv.expires_at and conv.expires_at < ctx.now:
            flow = reg.flows.get(conv.flow)
            replies.append(Reply(ctx.t("Your unfinished “{flow}” was set aside after a long pause. "
                                       "Let's start again.", flow=ctx.t(flow.title) if flow else conv.flow)))
            self._clear(conv)
            ctx.data = {}

        if msg.text and len(msg.text) > self.settings.max_text_length:
            replies.append(Reply(ctx.t("That message is too long ({n} characters; at most {max}). "
                                       "Please send it in shorter parts.",
                                       n=ctx.tr.number(len(msg.text)),
                                       max=ctx.tr.number(self.settings.max_text_length))))
            self._emit(ctx, replies)
            return _Result(ctx.outbox)

        step = self._route(ctx, conv, msg)
        replies.extend(self._apply(ctx, conv, step))
        self._emit(ctx, replies)
        return _Result(ctx.outbox, after=ctx.after)

    def _unlinked(self, ctx: Ctx, msg: Inbound) -> Step:
        reg = self.services.registry
        if msg.contact is not None and reg.on_contact is not None:
            return reg.on_contact(ctx)
        if msg.command:
            target = reg.command(msg.command)
            if isinstance(target, Handler) and target.allow_unlinked:
                return target.fn(ctx)
        if reg.on_unlinked is not None:
            return reg.on_unlinked(ctx)
        return Step.stay(Reply(ctx.t("You are not linked to a school yet.")))

    def _route(self, ctx: Ctx, conv: Conversation, msg: Inbound) -> Step:
        reg = self.services.registry
        person = ctx.person
        assert person is not None
        if msg.payload is not None:
            handler = reg.payload_handler(msg.payload)
            if handler is not None:
                if handler.roles is not None and not person.has_role(*handler.roles):
                    return Step.stay(Reply(ctx.t("This action is not available for your role.")))
                return handler.fn(ctx)
            if msg.payload.startswith(CHOICE + ":") and conv.flow:
                return self._step(ctx, conv, msg)
            return Step.stay(Reply(ctx.t("That button is no longer valid. Here is the menu again.")),
                             *self._menu(ctx))
        if msg.command:
            target = reg.command(msg.command)
            if isinstance(target, Flow):
                return Step.start_flow(target.name)
            if isinstance(target, Handler):
                if target.roles is not None and not person.has_role(*target.roles):
                    return Step.stay(Reply(ctx.t("This command is not available for your role.")))
                return target.fn(ctx)
            if reg.on_unknown_command is not None:
                return reg.on_unknown_command(ctx)
            return Step.stay(Reply(ctx.t("I don't know the command /{command}. Type /trogiup to see "
                                         "what you can do.", command=msg.command)))
        if msg.contact is not None and not conv.flow and reg.on_contact is not None:
            return reg.on_contact(ctx)
        if conv.flow:
            return self._step(ctx, conv, msg)
        if reg.on_idle is not None:
            return reg.on_idle(ctx)
        return Step.stay(*self._menu(ctx))

    def _step(self, ctx: Ctx, conv: Conversation, msg: Inbound) -> Step:
        flow = self.services.registry.flows.get(conv.flow or "")
        if flow is None or conv.state is None or conv.state not in flow.states:
            self._clear(conv)
            return Step.stay(*self._menu(ctx))
        if ctx.person is not None and not flow.allowed(ctx.person):
            self._clear(conv)
            return Step.done(Reply(ctx.t("You no longer have access to this workflow.")))
        return flow.states[conv.state](ctx, msg)

    def _menu(self, ctx: Ctx) -> list[Reply]:
        from bot.handlers.menu import menu_reply  # the menu lives with the handlers

        return [menu_reply(ctx)]

    def _apply(self, ctx: Ctx, conv: Conversation, step: Step, depth: int = 0) -> list[Reply]:
        replies = list(step.replies)
        if step.start is not None and depth < 3:
            flow = self.services.registry.flows.get(step.start)
            assert ctx.person is not None
            if flow is None or not flow.allowed(ctx.person):
                replies.append(Reply(ctx.t("This workflow is not available for your role.")))
                return replies
            if conv.flow and conv.flow != flow.name:
                old = self.services.registry.flows.get(conv.flow)
                replies.append(Reply(ctx.t("Your unfinished “{flow}” was cancelled.",
                                           flow=ctx.t(old.title) if old else conv.flow)))
            self._clear(conv)
            conv.flow = flow.name
            ctx.data = dict(step.seed or {})
            first = flow.start(ctx)
            if first.next is None and not first.end and first.start is None:
                raise RuntimeError(f"flow {flow.name}: start must goto a state or end")
            replies.extend(self._apply(ctx, conv, first, depth + 1))
            return replies
        if step.end:
            self._clear(conv)
            ctx.data = {}
        elif step.next is not None:
            flow = self.services.registry.flows.get(conv.flow or "")
            if flow is None or step.next not in flow.states:
                raise RuntimeError(f"unknown state {step.next!r} in flow {conv.flow!r}")
            conv.state = step.next
        if conv.flow:
            conv.data = dict(ctx.data)
            conv.updated_at = ctx.now
            conv.expires_at = ctx.now + timedelta(hours=self.settings.conversation_ttl_hours)
        return replies

    @staticmethod
    def _clear(conv: Conversation) -> None:
        conv.flow, conv.state, conv.data, conv.expires_at = None, None, {}, None

    @staticmethod
    def _emit(ctx: Ctx, replies: Iterable[Reply]) -> None:
        msg = ctx.inbound
        pid = ctx.person.id if ctx.person else None
        ctx.outbox[:0] = [Outbound(msg.channel, msg.chat_id, r, pid) for r in replies]


def load_registry() -> Registry:
    return Registry().discover()


__all__ = [
    "Button", "ChannelAdapter", "ChannelName", "Clock", "Contact", "Ctx", "Dispatcher", "FileRef", "Flow",
    "Handler", "Inbound", "Keyboard", "MessageRef", "OutFile", "Outbound", "Registry", "Reply", "RetryLater", "Sender",
    "Services", "Step", "SystemClock", "choice", "choice_value", "destinations", "keyboard", "load_registry",
]
