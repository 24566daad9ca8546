"""People, identities and invite codes: keyword-only storage functions taking the session."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from storage.models import ChannelIdentity, InviteCode, Person, PersonStatus, School, utcnow

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I


def hash_code(code: str) -> str:
    return hashlib.sha256(code.strip().upper().replace("-", "").encode()).hexdigest()


def new_invite(session: Session, *, person: Person, ttl: timedelta, now: datetime | None = None) -> str:
    """Create a single-use code (returned once, only its hash is stored), e.g. ``K7QX-M2PD-9TRA``."""
    raw = "".join(secrets.choice(CODE_ALPHABET) for _ in range(12))
    now = now or utcnow()
    assert person.id is not None
    session.add(InviteCode(code_hash=hash_code(raw), person_id=person.id, created_at=now, expires_at=now + ttl))
    session.flush()
    return f"{raw[:4]}-{raw[4:8]}-{raw[8:]}"


def looks_like_code(text: str) -> bool:
    s = text.strip().upper().replace("-", "").replace(" ", "")
    return len(s) == 12 and all(c in CODE_ALPHABET for c in s)


def redeem_invite(session: Session, *, code: str, now: datetime) -> tuple[Person | None, str]:
    """Return (person, "") or (None, reason) with reason in ``unknown|used|expired|inactive``."""
    row = session.exec(select(InviteCode).where(InviteCode.code_hash == hash_code(code))).first()
    if row is None:
        return None, "unknown"
    if row.used_at is not None:
        return None, "used"
    if row.expires_at < now:
        return None, "expired"
    person = session.get(Person, row.person_id)
    if person is None or person.status != PersonStatus.ACTIVE:
        return None, "inactive"
    row.used_at = now
    session.add(row)
    return person, ""


def link_identity(session: Session, *, person: Person, channel: str, external_id: str, chat_id: str,
                  display_name: str = "", now: datetime | None = None) -> ChannelIdentity:
    """Link (or re-link) a channel account to a person; the person keeps one account per channel."""
    now = now or utcnow()
    for other in session.exec(select(ChannelIdentity).where(ChannelIdentity.person_id == person.id,
                                                            ChannelIdentity.channel == channel,
                                                            ChannelIdentity.external_id != external_id)):
        other.active = False
        session.add(other)
    ident = session.exec(select(ChannelIdentity).where(ChannelIdentity.channel == channel,
                                                       ChannelIdentity.external_id == external_id)).first()
    if ident is None:
        ident = ChannelIdentity(person_id=person.id or 0, channel=channel, external_id=external_id,
                                chat_id=chat_id, display_name=display_name[:200], linked_at=now)
    else:
        ident.person_id, ident.chat_id, ident.active, ident.linked_at = person.id or 0, chat_id, True, now
        ident.display_name = display_name[:200]
    ident.last_seen_at = now
    session.add(ident)
    session.flush()
    return ident


def active_people_by_phone(session: Session, *, phone: str) -> list[Person]:
    return list(session.exec(select(Person).where(Person.phone == phone, Person.status == PersonStatus.ACTIVE)))


def people_with_role(session: Session, *, school_id: int, role: str, active_only: bool = True) -> list[Person]:
    """Everyone of a school holding ``role`` (roles are a small JSON list; filtered here)."""
    q = select(Person).where(Person.school_id == school_id)
    if active_only:
        q = q.where(Person.status == PersonStatus.ACTIVE)
    return [p for p in session.exec(q.order_by(col(Person.id))) if role in p.roles]


def people_with_roles(session: Session, *, school_id: int, roles: list[str] | tuple[str, ...],
                      active_only: bool = True) -> list[Person]:
    """Everyone of a school holding any of ``roles``, in id order."""
    q = select(Person).where(Person.school_id == school_id)
    if active_only:
        q = q.where(Person.status == PersonStatus.ACTIVE)
    wanted = set(roles)
    return [p for p in session.exec(q.order_by(col(Person.id))) if wanted.intersection(p.roles or [])]


def school_units(session: Session, *, school: School) -> list[str]:
    """Units (tổ) known for a school: configured ones first, then those people belong to."""
    configured = [u for u in (school.settings or {}).get("units", []) if isinstance(u, str)]
    seen = {u.casefold() for u in configured}
    out = list(configured)
    for unit in session.exec(select(Person.unit).where(Person.school_id == school.id).distinct()).all():
        if unit and unit.casefold() not in seen:
            seen.add(unit.casefold())
            out.append(unit)
    return out
