"""Login links and sessions of the web console. Only SHA-256 hashes of the link tokens and of the
session cookies are stored; a link is consumed by a conditional update, so it logs in exactly once
even when two processes (or two tabs) open it at the same moment."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from sqlalchemy import update
from sqlmodel import Session, col, select

from bot.channels.admin.access import may_log_in
from bot.config import Settings
from storage.models import ConsoleLogin, ConsoleSession, Person

LINK_TTL = timedelta(minutes=10)
SESSION_TTL = timedelta(hours=8)
COOKIE = "console_session"
#: failed link openings allowed per address within FAILURE_WINDOW (kept in this process's memory)
MAX_FAILURES = 10
FAILURE_WINDOW = timedelta(minutes=15)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def csrf_token(cookie: str) -> str:
    """The session's CSRF token (derived from the cookie's secret, never stored)."""
    return hmac.new(cookie.encode(), b"console-csrf", hashlib.sha256).hexdigest()


def csrf_ok(cookie: str, sent: str) -> bool:
    return bool(sent) and hmac.compare_digest(csrf_token(cookie), sent)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_https(settings: Settings) -> bool:
    return settings.public_base_url.startswith("https://")


def console_served(settings: Settings) -> bool:
    """On a non-loopback WEB_HOST the console needs https (or CONSOLE_ALLOW_HTTP=true)."""
    return is_loopback(settings.web_host) or is_https(settings) or settings.console_allow_http


def base_url(settings: Settings, port: int | None = None) -> str:
    if settings.public_base_url:
        parts = urlsplit(settings.public_base_url)
        return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
    host = settings.web_host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port or settings.web_port}"


def issue_link(session: Session, person: Person, now: datetime) -> str:
    """A new single-use login token for this person (only its hash is stored)."""
    token = secrets.token_urlsafe(32)
    session.add(ConsoleLogin(token_hash=digest(token), person_id=person.id or 0, school_id=person.school_id,
                             created_at=now, expires_at=now + LINK_TTL))
    session.flush()
    return token


@dataclass(frozen=True)
class LoginResult:
    person: Person | None
    #: "" on success, else "invalid", "used", "expired" or "revoked"
    refusal: str = ""
    cookie: str = ""


def consume_link(session: Session, token: str, now: datetime, ip: str) -> LoginResult:
    """Use a login link: mark it used (only if still unused and unexpired) and start a session."""
    if not token or len(token) > 128:
        return LoginResult(None, "invalid")
    h = digest(token)
    row = session.exec(select(ConsoleLogin).where(ConsoleLogin.token_hash == h)).first()
    if row is None:
        return LoginResult(None, "invalid")
    if row.used_at is not None:
        return LoginResult(None, "used")
    if row.expires_at <= now:
        return LoginResult(None, "expired")
    claimed = session.execute(update(ConsoleLogin).where(
        col(ConsoleLogin.id) == row.id, col(ConsoleLogin.used_at).is_(None), col(ConsoleLogin.expires_at) > now)
        .values(used_at=now, ip=ip[:64]))
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        return LoginResult(None, "used")
    person = session.get(Person, row.person_id)
    if person is None or person.school_id != row.school_id or not may_log_in(person):
        return LoginResult(person, "revoked")
    cookie = secrets.token_urlsafe(32)
    session.add(ConsoleSession(id=digest(cookie), person_id=person.id or 0, created_at=now,
                               expires_at=now + SESSION_TTL))
    session.flush()
    return LoginResult(person, "", cookie)


def session_person(session: Session, cookie: str, now: datetime) -> Person | None:
    """The person of a live session (not expired, not revoked, still allowed), else None."""
    if not cookie or len(cookie) > 128:
        return None
    row = session.get(ConsoleSession, digest(cookie))
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        return None
    person = session.get(Person, row.person_id)
    if person is None or not may_log_in(person):
        return None
    return person


def end_session(session: Session, cookie: str, now: datetime) -> bool:
    done = session.execute(update(ConsoleSession).where(
        col(ConsoleSession.id) == digest(cookie), col(ConsoleSession.revoked_at).is_(None)).values(revoked_at=now))
    return bool(done.rowcount)  # type: ignore[attr-defined]


class FailureWindow:
    """Failed link openings per client address in the last FAILURE_WINDOW (in this process's memory:
    a restart forgets them; each process of a multi-process deployment counts its own)."""

    def __init__(self, limit: int = MAX_FAILURES, window: timedelta = FAILURE_WINDOW) -> None:
        self.limit = limit
        self.window = window
        self._seen: dict[str, deque[datetime]] = {}

    def _recent(self, ip: str, now: datetime) -> deque[datetime]:
        q = self._seen.get(ip)
        if q is None:
            return deque()
        while q and q[0] <= now - self.window:
            q.popleft()
        if not q:
            self._seen.pop(ip, None)
        return q

    def blocked(self, ip: str, now: datetime) -> bool:
        return len(self._recent(ip, now)) >= self.limit

    def fail(self, ip: str, now: datetime) -> None:
        if len(self._seen) > 10000:  # never grow without bound under a scan from many addresses
            self._seen.clear()
        self._recent(ip, now)
        self._seen.setdefault(ip, deque()).append(now)
