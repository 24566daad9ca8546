"""The dispatcher: one database unit per event, routing to handlers and workflow steps."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import Integer, String, func
from sqlalchemy import select as sa_select
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql import bindparam
from sqlmodel import Session, col, select

from bot.config import Settings
from bot.core.context import Ctx, Services
from bot.core.flow import Flow, Handler, Step
from bot.core.messages import Button, Inbound, Outbound, Reply
from bot.core.sending import Sender
from bot.i18n import Translator
from storage.db import Database
from storage.models import (
    ChannelIdentity,
    Conversation,
    Notice,
    NoticeStatus,
    Person,
    PersonStatus,
    ProcessedUpdate,
    School,
    utcnow,
)

log = logging.getLogger(__name__)


class KeyedLocks:
    """One asyncio lock per conversation, dropped when nobody holds or waits for it.

    It serialises a chat's events within this process; on PostgreSQL each event's unit also takes
    the conversation's lock in the database (``Dispatcher._mark``), for events of the same chat
    handled by other processes."""

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
    _STATEMENTS: dict[tuple[str, ...], Any] = {}
    #: PostgreSQL advisory lock class of a conversation, taken by ``_mark`` (7318201: migrations,
    #: 7318202: the scheduler and the audit chain, 7318203: clip cuts)
    CHAT_LOCK = 7318204
    #: whether an event's unit takes its conversation's lock in the database too (PostgreSQL; see
    #: ``_mark``). Off only to measure what it costs (``bench/throughput --no-chat-lock``): with
    #: several processes, two events of one chat could then interleave their steps.
    chat_lock = True

    def _seen(self, s: Session, msg: Inbound) -> bool:
        return s.exec(select(ProcessedUpdate.id).where(ProcessedUpdate.channel == msg.channel,
                                                       ProcessedUpdate.update_key == msg.update_key)).first() is not None

    def _mark(self, s: Session, msg: Inbound) -> bool:
        """Record the update as processed; False if it already was.

        One statement and no read before it: an insert that does nothing when the unique
        (channel, update_key) is already there, so a duplicate is told by what the insert returns,
        not by an exception. On PostgreSQL a concurrent delivery of the same update waits for the
        first one's transaction: it then finds the row (duplicate), or inserts it if that one
        rolled back.

        On PostgreSQL the same statement first takes the conversation's lock in the database, a
        transaction-level advisory lock keyed by (schema, channel, chat): with several bot processes
        on one database (behind one webhook address), two events of one chat handled by two
        processes run one after the other, and the second reads the conversation as the first
        committed it (READ COMMITTED, PostgreSQL's default: each later statement of the unit sees
        what was committed before the lock was granted). The dispatcher's in-process lock (:class:`KeyedLocks`) still comes first, so
        within a process an event waits without holding a connection. One lock per unit, taken
        before anything else, so no two units can wait for each other's; two chats whose keys
        collide (32-bit hash) are merely served one after the other. No extra round trip: the lock
        is a CTE the insert selects from. SQLite has one process per file: nothing to add there."""
        dialect = s.get_bind().dialect
        if dialect.name not in ("sqlite", "postgresql"):  # read, then insert (the constraint still guards)
            if self._seen(s, msg):
                return False
            s.add(ProcessedUpdate(channel=msg.channel, update_key=msg.update_key))
            return True
        locked = dialect.name == "postgresql" and self.chat_lock
        stmt = self._STATEMENTS.get(("mark", dialect.name, "locked" if locked else ""))
        if stmt is None:
            table = ProcessedUpdate.__table__  # type: ignore[attr-defined]
            ins = sqlite_dialect.insert if dialect.name == "sqlite" else pg_dialect.insert
            at = bindparam("at", type_=table.c.processed_at.type)
            if locked:
                held = sa_select(func.pg_advisory_xact_lock(
                    bindparam("lock_class", type_=Integer),
                    func.hashtext(func.concat(func.current_schema(), ":", bindparam("chat_key", type_=String)))
                )).cte("chat_lock")
                source = sa_select(bindparam("channel", type_=table.c.channel.type),
                                   bindparam("update_key", type_=table.c.update_key.type), at).select_from(held)
                stmt = ins(table).from_select(["channel", "update_key", "processed_at"], source)
            else:
                stmt = ins(table).values(channel=bindparam("channel"), update_key=bindparam("update_key"),
                                         processed_at=at)
            stmt = stmt.on_conflict_do_nothing(index_elements=["channel", "update_key"])
            if dialect.insert_returning:  # PostgreSQL, SQLite ≥ 3.35
                stmt = stmt.returning(table.c.id)
            self._STATEMENTS["mark", dialect.name, "locked" if locked else ""] = stmt
        params: dict[str, Any] = {"channel": msg.channel, "update_key": msg.update_key, "at": utcnow()}
        if locked:
            params.update(lock_class=self.CHAT_LOCK, chat_key=f"{msg.channel}:{msg.chat_id}")
        result = s.exec(stmt, params=params)
        if dialect.insert_returning:  # a row back: inserted
            return result.first() is not None
        return result.rowcount == 1  # type: ignore[attr-defined]

    def _resolve(self, s: Session, msg: Inbound) -> tuple[ChannelIdentity | None, Person | None, School | None]:
        """The sender's identity, person (None unless active) and school, in one query.

        The same query tells whether the person has held notices (``s.info[HELD_HINT]``), so the
        person-seen hook that releases them (:func:`bot.engine.reminders.release_held`) reads nothing
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
        for quick in reg.idle_hooks:  # workflows' quick paths (e.g. a guard's one-line incident)
            step = quick(ctx)
            if step is not None:
                return step
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
        menu = self.services.registry.menu  # the menu lives with the handlers (bot/handlers/menu.py)
        return [menu(ctx)] if menu is not None else []

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
