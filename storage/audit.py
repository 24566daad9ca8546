"""Append-only audit log, each row hashed with the previous row's hash (tamper-evident).

``verify`` walks the chain and names the first row whose content or link does not match."""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any

from sqlalchemy import insert, text
from sqlmodel import Session, col, select

from storage.models import AuditEvent, utcnow

GENESIS = "0" * 64
_PG_AUDIT_LOCK = 7318202


def _canonical_of(at: datetime, school_id: int | None, actor_id: int | None, channel: str, action: str,
                  subject: str, details: Any, prev_hash: str) -> bytes:
    at = at.astimezone(UTC) if at.tzinfo else at.replace(tzinfo=UTC)
    body = {
        "at": at.isoformat(timespec="microseconds"),
        "school_id": school_id,
        "actor_id": actor_id,
        "channel": channel,
        "action": action,
        "subject": subject,
        "details": details,
        "prev": prev_hash,
    }
    return json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str).encode()


def _canonical(ev: AuditEvent) -> bytes:
    return _canonical_of(ev.at, ev.school_id, ev.actor_id, ev.channel, ev.action, ev.subject, ev.details,
                         ev.prev_hash)


def compute_hash(ev: AuditEvent) -> str:
    return hashlib.sha256(_canonical(ev)).hexdigest()


#: ``Session.info`` key: (transaction, hash of the last row it appended) — the next row of the same
#: transaction links to it without reading it back (the chain's lock is held until the end)
_TAIL = "audit_tail"
_TABLE = AuditEvent.__table__  # type: ignore[attr-defined]
_LAST = select(AuditEvent.hash).order_by(col(AuditEvent.id).desc()).limit(1)
_INSERT = insert(_TABLE).returning(_TABLE.c.id)


def _transaction(session: Session) -> Any:
    """The innermost transaction: a savepoint's rows leave the chain if it is rolled back."""
    return session.get_nested_transaction() or session.get_transaction()


def record(session: Session, *, action: str, school_id: int | None = None, actor_id: int | None = None,
           channel: str = "", subject: str = "", details: dict[str, Any] | None = None,
           at: datetime | None = None) -> int:
    """Append one event; returns its id. Never put passwords, tokens or full phone numbers in ``details``.

    A Core insert (no ORM object: nobody uses the row as one here). The previous row's hash is read
    once per transaction (a savepoint counts as one); later rows of the same transaction link to the
    row it appended last."""
    tx = _transaction(session)
    tail = session.info.get(_TAIL)
    if tx is not None and tail is not None and tail[0] is tx:
        last = tail[1]
    else:
        if session.get_bind().dialect.name == "postgresql":
            # Serialise appends across processes so the chain never forks.
            session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_AUDIT_LOCK})
        last = session.execute(_LAST).scalar() or GENESIS
    at = at or utcnow()
    clean = json.loads(json.dumps(details or {}, default=str))
    digest = hashlib.sha256(_canonical_of(at, school_id, actor_id, channel, action, subject, clean, last)).hexdigest()
    new_id = session.execute(_INSERT, {"at": at, "school_id": school_id, "actor_id": actor_id, "channel": channel,
                                       "action": action, "subject": subject, "details": clean,
                                       "prev_hash": last, "hash": digest}).scalar_one()
    session.info[_TAIL] = (_transaction(session), digest)
    return int(new_id)


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    checked: int
    broken_id: int | None = None
    reason: str = ""


def verify(session: Session, batch: int = 1000) -> VerifyResult:
    prev = GENESIS
    checked = 0
    last_id = 0
    while True:
        rows = session.exec(select(AuditEvent).where(col(AuditEvent.id) > last_id)
                            .order_by(col(AuditEvent.id)).limit(batch)).all()
        if not rows:
            return VerifyResult(True, checked)
        for ev in rows:
            assert ev.id is not None
            if ev.prev_hash != prev:
                return VerifyResult(False, checked, ev.id, "link")
            if compute_hash(ev) != ev.hash:
                return VerifyResult(False, checked, ev.id, "content")
            prev = ev.hash
            checked += 1
            last_id = ev.id


def export_csv(session: Session, out: IO[str], *, start: datetime | None = None, end: datetime | None = None,
               school_id: int | None = None) -> int:
    q = select(AuditEvent).order_by(col(AuditEvent.id))
    if start is not None:
        q = q.where(col(AuditEvent.at) >= start)
    if end is not None:
        q = q.where(col(AuditEvent.at) < end)
    if school_id is not None:
        q = q.where(AuditEvent.school_id == school_id)
    w = csv.writer(out)
    w.writerow(["id", "at_utc", "school_id", "actor_id", "channel", "action", "subject", "details",
                "prev_hash", "hash"])
    n = 0
    for ev in session.exec(q):
        w.writerow([ev.id, ev.at.isoformat(), ev.school_id, ev.actor_id, ev.channel, ev.action, ev.subject,
                    json.dumps(ev.details, ensure_ascii=False, sort_keys=True), ev.prev_hash, ev.hash])
        n += 1
    return n


def events(session: Session, *, action: str | None = None, subject: str | None = None) -> Iterable[AuditEvent]:
    q = select(AuditEvent).order_by(col(AuditEvent.id))
    if action:
        q = q.where(AuditEvent.action == action)
    if subject:
        q = q.where(AuditEvent.subject == subject)
    return session.exec(q).all()
