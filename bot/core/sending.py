"""The persistent outbox and the :class:`Sender` that hands messages to the channel adapters."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import bindparam, delete, insert, update
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

_OUTBOX = OutboxMessage.__table__  # type: ignore[attr-defined]
_SENT = SentMessage.__table__  # type: ignore[attr-defined]
# Built once, with bind parameters: Core statements, no ORM unit of work (one is run per message).
_DELETE_ROW = delete(_OUTBOX).where(_OUTBOX.c.id == bindparam("row"))
_DELETE_ROWS = delete(_OUTBOX).where(_OUTBOX.c.id.in_(bindparam("rows", expanding=True)))
_AUTOCOMMIT = {"isolation_level": "AUTOCOMMIT"}
_RENEW_CLAIM = (update(_OUTBOX).where(_OUTBOX.c.id.in_(bindparam("rows", expanding=True)))
                .values(claimed_at=bindparam("at", type_=_OUTBOX.c.claimed_at.type)))


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


@dataclass
class _Claim:
    """The outbox rows of one delivery not settled yet, and the timer that renews their claim."""

    rows: set[int]
    timer: asyncio.TimerHandle | None = None
    renewing: asyncio.Task[None] | None = None


class Sender:
    """Hands outbound messages to the adapters, through the persistent outbox.

    An event's (or a scheduled unit's) messages are written as ``outbox`` rows in the unit that
    decided them (:meth:`persist`) and sent after the commit (:meth:`deliver`), one by one. Each
    row is deleted as soon as its own message went out — in one small write with the record of that
    message if it must be edited or deleted later (``track`` / ``delete_after``) — before the next
    message of the unit is handed to an adapter. A crash leaves the rows of the messages not sent
    yet: :meth:`recover` sends them at the next start, so a committed decision never loses its
    messages, and only the message in flight at the kill (handed to the platform, its row not yet
    deleted) can arrive twice. A send that raised keeps its row: it is tried again once its claim
    is stale (``STALE``), at most three times."""

    #: an event's reply that hit a 429 is retried once after at most this many seconds
    MAX_INLINE_WAIT = 30.0
    #: rows not sent this long after their claim belong to a process that died (several processes)
    STALE = timedelta(seconds=90)
    #: a delivery still going renews the claim of the rows it has left this often (a slow upload
    #: or a 429 wait must not let another process take them, or the one in flight, as stale)
    RENEW_AFTER = STALE.total_seconds() / 3

    def __init__(self, db: Database, clock: Clock | None = None) -> None:
        self.db = db
        self.clock = clock
        self.adapters: dict[str, ChannelAdapter] = {}
        self._renewals: set[asyncio.Task[None]] = set()  # referenced until done

    def register(self, adapter: ChannelAdapter) -> None:
        self.adapters[adapter.name] = adapter

    def _now(self) -> datetime:
        return self.clock.now() if self.clock is not None else utcnow()

    @staticmethod
    def persist(s: Session, outbox: Sequence[Outbound]) -> list[int]:
        """Write ``outbox`` as rows in the caller's unit; returns the ids of the rows written, in
        the order of ``outbox`` (:meth:`deliver` deletes each with its own message).

        A message that deletes itself (``delete_after``: a temporary password) is never written to
        the database: it is sent from memory only, so a crash at the wrong moment loses it (the
        person asks again) rather than keeping the secret in a table."""
        keep = [o for o in outbox if not o.reply.delete_after]
        if not keep:
            return []
        now = utcnow()  # a lease in real time, whatever the business clock says
        # A Core insert (no ORM unit of work: these rows are never used as objects here), one
        # statement for all rows. PostgreSQL: SQLAlchemy's ordered form (INSERT … SELECT … ORDER BY,
        # still one statement). SQLite inserts the rows of one VALUES list in order, each taking
        # the next rowid, and only RETURNING's order is unspecified: the ids sorted are in order
        # (asking SQLAlchemy to order them there would cost one INSERT per row).
        sqlite = s.get_bind().dialect.name == "sqlite"
        result = s.execute(insert(_OUTBOX).returning(_OUTBOX.c.id, sort_by_parameter_order=not sqlite),
                           [{"channel": o.channel, "chat_id": o.chat_id, "person_id": o.person_id,
                             "payload": reply_to_payload(o.reply), "claimed_at": now, "attempts": 0}
                            for o in keep])
        ids = [int(i) for i in result.scalars().all()]
        return sorted(ids) if sqlite else ids

    async def _send_one(self, adapter: ChannelAdapter, out: Outbound) -> str | None:
        try:
            return await adapter.send(out)
        except RetryLater as exc:
            # Only this event's replies wait (they go to one chat); other chats are not held up.
            await asyncio.sleep(min(exc.retry_after, self.MAX_INLINE_WAIT))
            return await adapter.send(out)

    async def deliver(self, outbox: Iterable[Outbound], now: datetime | None = None,
                      row_ids: Sequence[int] = (), first: tuple[str, str] | None = None) -> list[str | None]:
        """Send, in order, deleting each message's outbox row (``row_ids``, as :meth:`persist`
        returned them: one per message without ``delete_after``) and recording it if tracked as
        soon as it went out, before the next message.

        A message the adapter could not send (it answered no id, or the platform refused an edit)
        is settled like a sent one: the adapter has logged why, and sending it again would change
        nothing. A send that raised keeps its row, to be tried again once its claim is stale. If
        the database cannot record a sent message, the rest of the unit is left to that recovery
        too, rather than sent with nothing to stop a second copy.

        ``first`` (channel, chat): the chat of the person who acted gets its messages before the
        other chats get theirs (a teacher's "sent to the principal" before the principal's card), each
        chat's own messages staying in order. The ids come back in the order of ``outbox``."""
        items = list(outbox)
        rows = self._rows_of(items, row_ids)
        order = list(range(len(items)))
        if first is not None:
            order.sort(key=lambda i: (items[i].channel, items[i].chat_id) != first)  # stable
        claim = _Claim({r for r in rows if r is not None})
        if claim.rows:
            self._keep_claimed(claim)
        try:
            return await self._deliver(items, rows, order, now, claim)
        finally:
            if claim.timer is not None:
                claim.timer.cancel()

    async def _deliver(self, items: list[Outbound], rows: list[int | None], order: list[int],
                       now: datetime | None, claim: _Claim) -> list[str | None]:
        by_pos: dict[int, str | None] = {}
        for pos in order:
            out = items[pos]
            adapter = self.adapters.get(out.channel)
            mid: str | None = None
            if adapter is None:
                log.warning("no adapter for channel %s; message to chat dropped", out.channel)
            else:
                try:
                    if out.reply.edit is not None:
                        ok = await adapter.edit(out.reply.edit, out.reply)
                        by_pos[pos] = out.reply.edit.message_id if ok else None
                    else:
                        by_pos[pos] = mid = await self._send_one(adapter, out)
                except Exception:  # an adapter failure must not lose the others
                    log.exception("sending on %s failed; it is tried again later", out.channel)
                    by_pos[pos] = None
                    claim.rows.discard(rows[pos] or 0)  # not ours to renew: left to the recovery
                    continue
            try:
                await self._settle(out, mid, rows[pos], now, claim)
            except Exception:
                log.exception("could not record a message sent on %s; the rest of its unit is sent by "
                              "the outbox recovery", out.channel)
                break
        return [by_pos.get(i) for i in range(len(items))]

    @staticmethod
    def _rows_of(items: Sequence[Outbound], row_ids: Sequence[int]) -> list[int | None]:
        """The outbox row of each item (None for a message that deletes itself: never written)."""
        rows: list[int | None] = [None] * len(items)
        if not row_ids:
            return rows
        kept = [i for i, o in enumerate(items) if not o.reply.delete_after]
        if len(kept) != len(row_ids):
            raise ValueError(f"{len(row_ids)} outbox rows for {len(kept)} messages")
        for pos, row in zip(kept, row_ids, strict=True):
            rows[pos] = row
        return rows

    async def _settle(self, out: Outbound, mid: str | None, row: int | None, now: datetime | None,
                      claim: _Claim) -> None:
        """One write: the message's row deleted, with its record if tracked. Nothing is written
        when there is nothing to record."""
        tracked = self._tracked([(out, mid)] if mid is not None else [], now)
        if row is None and not tracked:
            return
        if row is not None:
            claim.rows.discard(row)

        def write(s: Session) -> None:
            if not tracked:
                # The common case, one statement: autocommitted, no BEGIN and COMMIT around it
                # (on PostgreSQL one round trip instead of three).
                s.connection(execution_options=_AUTOCOMMIT).execute(_DELETE_ROW, {"row": row})
                return
            conn = s.connection()
            if row is not None:
                conn.execute(_DELETE_ROW, {"row": row})
            conn.execute(insert(_SENT), tracked)
        await self.db.run(write)

    def _keep_claimed(self, claim: _Claim) -> None:
        """While the delivery goes on, renew the claim of its rows left every ``RENEW_AFTER``
        seconds (in the background: a single upload can outlast ``STALE``)."""
        loop = asyncio.get_running_loop()

        def renew() -> None:
            if claim.rows and (claim.renewing is None or claim.renewing.done()):
                claim.renewing = loop.create_task(self._renew(sorted(claim.rows)))
                self._renewals.add(claim.renewing)
                claim.renewing.add_done_callback(self._renewals.discard)
            claim.timer = loop.call_later(self.RENEW_AFTER, renew)
        claim.timer = loop.call_later(self.RENEW_AFTER, renew)

    async def _renew(self, rows: list[int]) -> None:
        try:
            await self.db.run(lambda s: s.connection(execution_options=_AUTOCOMMIT).execute(
                _RENEW_CLAIM, {"rows": rows, "at": utcnow()}))
        except Exception:  # the next timer tries again; at worst another process sends them too
            log.warning("could not renew the claim of %s outbox row(s) being sent", len(rows))

    def _tracked(self, sent: Iterable[tuple[Outbound, str]], now: datetime | None) -> list[dict[str, Any]]:
        tracked: list[dict[str, Any]] = []
        for out, mid in sent:
            r = out.reply
            if not (r.track or r.delete_after):
                continue
            sent_at = now or self._now()
            tracked.append({
                "channel": out.channel, "chat_id": out.chat_id, "message_id": str(mid), "person_id": out.person_id,
                "ref_kind": r.track[0] if r.track else "ephemeral", "ref_id": r.track[1] if r.track else "",
                "sent_at": sent_at, "deleted_at": None,
                "delete_at": sent_at + timedelta(seconds=r.delete_after) if r.delete_after else None})
        return tracked

    async def remember(self, sent: Iterable[tuple[Outbound, str]], now: datetime | None = None,
                       done: Sequence[int] = ()) -> None:
        """Record the messages that must be edited or deleted later (``track`` / ``delete_after``)
        and delete the outbox rows ``done``, in one write (the fan-out's sends, which have no row)."""
        tracked = self._tracked(sent, now)
        rows = list(done)
        if not tracked and not rows:
            return

        def write(s: Session) -> None:
            conn = s.connection()
            if rows:
                conn.execute(_DELETE_ROWS, {"rows": rows})
            if tracked:
                conn.execute(insert(_SENT), tracked)
        await self.db.run(write)

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
            # In order, one by one (messages to one chat keep their order), each row deleted as its
            # message goes out.
            await self.deliver([out for _, out in jobs], row_ids=[row for row, _ in jobs])
            total += len(jobs)
            if len(jobs) < limit:
                break
        return total
