"""Fan-out of notices within the platforms' limits, from a persistent queue.

:func:`bot.engine.reminders.queue_notice` writes each notice as a ``notice`` row (status ``queued``) in
the same transaction as the decision to send it. This worker then sends the queued rows:

* at most ``rate`` messages a second per channel (Telegram allows about 30 overall; we stay under),
  and at most one a second per chat;
* a ``429 retry_after`` (:class:`bot.core.RetryLater` from the adapter) postpones only that chat's
  notices (``not_before``); the other chats go on;
* Zalo OA may only message a person within 7 days of their last message (ZALO.md): when that
  window has closed, the notice goes to the person's other linked channel, or waits (``held``)
  until they next write (:func:`bot.engine.reminders.release_held`);
* a crash cannot lose a notice: rows stay ``queued`` until sent. A row claimed (``sending``) when
  the process died is sent again at the next start. Each row is recorded as sent as soon as its
  message went out (not at the end of its batch), so a ``kill -9`` can repeat at most the one
  message per channel that was in flight; nothing is lost;
* several processes on one PostgreSQL database send each notice once: a claim locks the rows it
  takes and skips those another process is claiming (``FOR UPDATE SKIP LOCKED``), and a row left
  ``sending`` is taken back only when its claim is ``CLAIM_STALE`` old (its process died; a live
  one renews the claim of the rows it has left while it sends), never because another process has
  just started. SQLite has one process: it takes back every such row at its first drain.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy import update
from sqlmodel import Session, col, select

from bot.core import Host, Outbound, Reply, RetryLater, destinations, payload_to_reply, reply_to_payload
from bot.core.windows import MESSAGING_WINDOWS, window_open
from storage.models import ChannelIdentity, Notice, NoticeStatus, Person

log = logging.getLogger(__name__)

SENDING = "sending"
#: messages per second per channel (Telegram's documented overall limit is about 30)
DEFAULT_RATES: Mapping[str, float] = {"telegram": 25.0, "zalo_oa": 10.0, "zalo_bot": 10.0}
PER_CHAT_INTERVAL = 1.0
BATCH = 100
MAX_ATTEMPTS = 5
#: PostgreSQL (several processes): a row still ``sending`` this long after its claim was left by a
#: process that died (as the outbox's ``Sender.STALE``). A claim holds at most ``BATCH`` rows per
#: channel, sent at the channel's rate (4 s at 25 a second, 10 s at 10 a second); a slower batch
#: renews the claim of the rows it has left every ``CLAIM_RENEW``.
CLAIM_STALE = timedelta(seconds=90)
CLAIM_RENEW = CLAIM_STALE.total_seconds() / 3


@dataclass
class _Job:
    notice_id: int
    channel: str
    chat_id: str
    person_id: int | None
    reply: Reply


def _reachable(session: Session, person: Person, now: datetime) -> list[tuple[str, str]]:
    """Destinations the platforms allow right now (Zalo OA only within its 7-day window)."""
    out: list[tuple[str, str]] = []
    for ch, chat in destinations(session, person):
        if ch in MESSAGING_WINDOWS:
            ident = session.exec(select(ChannelIdentity).where(ChannelIdentity.channel == ch,
                                                               ChannelIdentity.chat_id == chat)).first()
            if ident is None or not ident.active or not window_open(ch, ident.last_seen_at, now):
                continue
        out.append((ch, chat))
    return out


class FanOut:
    """Sends queued notices. One instance per process; :meth:`drain` is safe to call concurrently."""

    def __init__(self, runtime: Host, rates: Mapping[str, float] | None = None) -> None:
        self.runtime = runtime
        self.rates = dict(DEFAULT_RATES if rates is None else rates)
        self._lock = asyncio.Lock()
        self._last_chat: dict[tuple[str, str], float] = {}
        self._last_channel: dict[str, float] = {}
        self._recovered = False
        self.sent = 0
        self.retried = 0

    # -- database units ------------------------------------------------------------------------
    def _recover(self, s: Session, now: datetime) -> int:
        """Queue again the rows a dead process left ``sending`` (while a row is ``sending``, its
        ``not_before`` is the time of its claim). SQLite: every such row (one process, at its start);
        PostgreSQL: only claims ``CLAIM_STALE`` old, since another live process may be sending them."""
        q = select(Notice).where(Notice.status == SENDING)
        if s.get_bind().dialect.name != "sqlite":
            q = q.where((col(Notice.not_before).is_(None)) | (col(Notice.not_before) <= now - CLAIM_STALE))
        rows = s.exec(q).all()
        for r in rows:
            r.status = NoticeStatus.QUEUED
            s.add(r)
        return len(rows)

    def _claim(self, s: Session, now: datetime, busy: set[tuple[str, str]]) -> list[_Job]:
        q = (select(Notice).where(Notice.status == NoticeStatus.QUEUED)
             .where((col(Notice.not_before).is_(None)) | (col(Notice.not_before) <= now))
             .order_by(col(Notice.id)).limit(BATCH))
        if s.get_bind().dialect.name == "postgresql":
            # Rows another process is claiming right now are skipped, not waited for and taken again.
            q = q.with_for_update(skip_locked=True)
        rows = s.exec(q).all()
        jobs: list[_Job] = []
        taken: set[tuple[str, str]] = set()
        for r in rows:
            person = s.get(Person, r.person_id) if r.person_id else None
            if person is None or not person.is_active:
                r.status = NoticeStatus.UNREACHABLE
                s.add(r)
                continue
            dests = _reachable(s, person, now)
            if not dests:
                r.status = NoticeStatus.HELD  # released when they next write (release_held)
                s.add(r)
                continue
            ch, chat = dests[0]
            if (ch, chat) in busy or (ch, chat) in taken:
                continue  # one message per chat per round; the next round takes it
            taken.add((ch, chat))
            r.status, r.channel, r.chat_id, r.attempts = SENDING, ch, chat, r.attempts + 1
            r.not_before = now  # the claim's time (see _recover)
            s.add(r)
            jobs.append(_Job(r.id or 0, ch, chat, r.person_id, payload_to_reply(r.payload)))
        return jobs

    def _finish(self, s: Session, results: list[tuple[int, str, float | None]], now: datetime,
                renew: Sequence[int] = ()) -> None:
        if renew:  # still ours: not stale (see _recover)
            s.execute(update(Notice).where(col(Notice.id).in_(renew), col(Notice.status) == SENDING)
                      .values(not_before=now).execution_options(synchronize_session=False))
        for notice_id, outcome, retry_after in results:
            r = s.get(Notice, notice_id)
            if r is None:
                continue
            if outcome == "sent":
                r.status, r.sent_at = NoticeStatus.SENT, now
            elif outcome == "retry" and r.attempts < MAX_ATTEMPTS:
                r.status = NoticeStatus.QUEUED
                r.not_before = now + timedelta(seconds=retry_after or 5.0)
            else:
                r.status = NoticeStatus.UNREACHABLE
            s.add(r)

    # -- sending ---------------------------------------------------------------------------------
    async def _pace(self, channel: str, chat: str) -> None:
        rate = self.rates.get(channel, 20.0)
        loop_now = time.monotonic()
        wait = 0.0
        if rate > 0:
            wait = max(wait, self._last_channel.get(channel, 0.0) + 1.0 / rate - loop_now)
        wait = max(wait, self._last_chat.get((channel, chat), 0.0) + PER_CHAT_INTERVAL - loop_now)
        if wait > 0:
            await asyncio.sleep(wait)
        stamp = time.monotonic()
        self._last_channel[channel] = stamp
        self._last_chat[(channel, chat)] = stamp

    async def _send(self, job: _Job) -> tuple[int, str, float | None]:
        adapter = self.runtime.sender.adapters.get(job.channel)
        if adapter is None:
            return job.notice_id, "failed", None
        await self._pace(job.channel, job.chat_id)
        out = Outbound(job.channel, job.chat_id, job.reply, job.person_id)
        try:
            mid = await adapter.send(out)
        except RetryLater as exc:
            self.retried += 1
            log.info("fan-out: %s asked to wait %.1fs for one chat", job.channel, exc.retry_after)
            return job.notice_id, "retry", exc.retry_after
        except Exception:
            log.exception("fan-out: sending on %s failed", job.channel)
            return job.notice_id, "retry", 10.0
        if mid is None:
            return job.notice_id, "failed", None
        if job.reply.track or job.reply.delete_after:
            await self.runtime.sender.remember([(out, mid)], self.runtime.services.clock.now())
        self.sent += 1
        return job.notice_id, "sent", None

    async def drain(self, *, max_rounds: int = 10_000) -> int:
        """Send every notice that is due now; returns how many were sent."""
        async with self._lock:
            db = self.runtime.db
            if not self._recovered:
                n = await db.run(partial(self._recover, now=self.runtime.services.clock.now()))
                if n:
                    log.warning("fan-out: %d notices were being sent when a bot process stopped; sending again", n)
                # one process per SQLite file: once; PostgreSQL: at every drain (a process may die any time)
                self._recovered = db.is_sqlite
            total = 0
            for _ in range(max_rounds):
                now = self.runtime.services.clock.now()
                jobs: list[_Job] = await db.run(partial(self._claim, now=now, busy=set()))
                if not jobs:
                    break
                by_channel: dict[str, list[_Job]] = {}
                for j in jobs:
                    by_channel.setdefault(j.channel, []).append(j)
                # channels run side by side; within one channel the pace is kept
                results_nested = await asyncio.gather(*[self._send_all(js) for js in by_channel.values()])
                total += sum(1 for rs in results_nested for _, outcome, _ in rs if outcome == "sent")
            return total

    async def _send_all(self, jobs: list[_Job]) -> list[tuple[int, str, float | None]]:
        results = []
        renewed = time.monotonic()
        for n, j in enumerate(jobs):
            result = await self._send(j)
            renew: list[int] = []
            if time.monotonic() - renewed > CLAIM_RENEW:
                renew, renewed = [x.notice_id for x in jobs[n + 1:]], time.monotonic()
            # Recorded at once: a kill -9 now repeats at most this one message, not the whole batch.
            await self.runtime.db.run(partial(self._finish, results=[result],
                                              now=self.runtime.services.clock.now(), renew=renew))
            results.append(result)
        return results

    def kick(self) -> None:
        """Drain in the background (after a unit queued notices)."""
        self.runtime.dispatcher.spawn(self.drain())


__all__ = ["FanOut", "payload_to_reply", "reply_to_payload"]
