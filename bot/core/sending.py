"""The persistent outbox and the :class:`Sender` that hands messages to the channel adapters."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import delete, insert
from sqlmodel import Session, col, select

from bot.core.clock import Clock
from bot.core.messages import MessageRef, Outbound, Reply, payload_to_reply, reply_to_payload
from storage.db import Database
from storage.models import (
    OutboxMessage,
    SentMessage,
    utcnow,
)

log = logging.getLogger(__name__)


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
