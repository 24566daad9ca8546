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

from sqlalchemy import event, insert, text
from sqlalchemy.orm import Session as OrmSession
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


#: ``Session.info`` key: the events recorded in this transaction, written when it commits
_PENDING = "audit_pending"
_TABLE = AuditEvent.__table__  # type: ignore[attr-defined]
_LAST = select(AuditEvent.hash).order_by(col(AuditEvent.id).desc()).limit(1)


def _transaction(session: Session) -> Any:
    """The innermost transaction: a savepoint's events leave the chain if it is rolled back."""
    return session.get_nested_transaction() or session.get_transaction()


def record(session: Session, *, action: str, school_id: int | None = None, actor_id: int | None = None,
           channel: str = "", subject: str = "", details: dict[str, Any] | None = None,
           at: datetime | None = None) -> None:
    """Append one event when the session's transaction commits, in that transaction (so the event
    exists exactly when what it records does). Never put passwords, tokens or full phone numbers in
    ``details``.

    The rows are written at the commit (:func:`write_pending`), not here: linking them to the chain
    takes the chain's lock (PostgreSQL: one writer at a time, across processes), and taken at the
    first event it was held for the rest of the unit — under load, events waited 40–90 ms for each
    other's units. Written last, the lock is held for one read, one insert and the commit."""
    row = {"at": at or utcnow(), "school_id": school_id, "actor_id": actor_id, "channel": channel,
           "action": action, "subject": subject, "details": json.loads(json.dumps(details or {}, default=str))}
    session.info.setdefault(_PENDING, []).append((_transaction(session), row))


def write_pending(session: Session) -> int:
    """Link the events recorded in this transaction to the chain and insert them (called when the
    session commits, and before the chain is read); returns how many."""
    pending = session.info.pop(_PENDING, None)
    if not pending:
        return 0
    session.flush()  # the unit's own changes first: the lock below is held from here to the commit
    if session.get_bind().dialect.name == "postgresql":
        # Serialise appends across processes so the chain never forks; held until the commit.
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_AUDIT_LOCK})
    last = session.execute(_LAST).scalar() or GENESIS
    rows = []
    for _tx, row in pending:
        canonical = _canonical_of(row["at"], row["school_id"], row["actor_id"], row["channel"], row["action"],
                                  row["subject"], row["details"], last)
        row = {**row, "prev_hash": last, "hash": hashlib.sha256(canonical).hexdigest()}
        last = row["hash"]
        rows.append(row)
    session.execute(insert(_TABLE), rows)
    return len(rows)


@event.listens_for(OrmSession, "before_commit")
def _before_commit(session: OrmSession) -> None:
    write_pending(session)  # type: ignore[arg-type]


@event.listens_for(OrmSession, "after_soft_rollback")
def _after_rollback(session: OrmSession, previous: Any) -> None:
    """Events recorded in a transaction that was rolled back (a savepoint, or the whole unit) go."""
    pending = session.info.get(_PENDING)
    if not pending:
        return
    if previous.parent is None:  # the whole transaction
        session.info.pop(_PENDING, None)
        return

    def undone(tx: Any) -> bool:
        while tx is not None:
            if tx is previous:
                return True
            tx = tx.parent
        return False
    session.info[_PENDING] = [(tx, row) for tx, row in pending if not undone(tx)]


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    checked: int
    broken_id: int | None = None
    reason: str = ""


def verify(session: Session, batch: int = 1000) -> VerifyResult:
    write_pending(session)
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
    write_pending(session)
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
    write_pending(session)
    q = select(AuditEvent).order_by(col(AuditEvent.id))
    if action:
        q = q.where(AuditEvent.action == action)
    if subject:
        q = q.where(AuditEvent.subject == subject)
    return session.exec(q).all()
