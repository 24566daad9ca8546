"""Zalo Official Account (API v3) channel: webhook in, customer-service messages out.

In: ``POST settings.zalo_oa_webhook_path``; the ``X-ZEvent-Signature`` header must equal the hex
SHA-256 of ``app_id + raw body + timestamp + OA secret key`` (403 otherwise). Events become
:class:`~bot.core.Inbound` (text, image, file, audio, video, location; ``follow`` acts as ``/start``);
the OA's own echoes (``oa_send_*``) are ignored and ``msg_id`` de-duplicates redeliveries.

Out: plain text (the catalogue's safe HTML is stripped) split under 2000 characters; at most five
``oa.query.hide`` buttons per message — with more choices the text also carries a numbered list that
a typed ``1``, ``2`` … resolves; images re-compressed under 1 MB and uploaded; PDF/DOC/DOCX under
5 MB uploaded as files; everything else (video, spreadsheets …) as an expiring link served by the bot.

Tokens: the access token goes in the ``access_token`` header; the pair lives in the ``KeyValue`` table,
shared by every bot process on the database. A refresh is made by one process at a time (a PostgreSQL
advisory lock; one process per SQLite file), which reads the stored pair again once it holds the lock:
if another process refreshed meanwhile, its pair is used and no refresh is made; otherwise the stored
refresh token (it works only once) is exchanged and the new pair stored *before* use. HTTP 401 or
error -216 makes a process take the stored pair, or refresh, once and retry once. The scheduler keeps
the pair alive when nothing is sent (:meth:`ZaloOAChannel.keep_alive`), and a refresh Zalo refuses is
told to IT and the principal once. A pair set in the environment replaces the stored one when it
changes (new tokens from the Zalo developer page, then a restart). Quota: the ``quota`` of each send's
answer is read; IT is told once when the OA's package runs low or a send is refused for quota.

Messaging windows: a person can be written to for 48 hours (free replies) and up to 7 days
(consultation) after they last wrote; beyond, Zalo answers -230 and :func:`reach_window` /
:meth:`ZaloOAChannel.can_reach` tell the reminder engine so."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import json
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

import aiohttp
from aiohttp import web
from sqlalchemy import Table, delete, insert, text
from sqlalchemy import select as sa_select
from sqlalchemy.engine import Connection

from bot.channels.http_body import read_body
from bot.channels.zalo_common import (
    MediaLinks,
    MenuStore,
    WindowClosed,
    dispatch_event,
    download,
    event_key,
    file_size,
    finish_tasks,
    flat_buttons,
    html_to_plain,
    link_text,
    looks_like_payload,
    numbered_list,
    parse_command,
    split_text,
    tell_staff,
    translator_for,
)
from bot.core import Button, ChannelName, Contact, Inbound, MessageRef, Outbound, OutFile, Reply
from bot.core.windows import MESSAGING_WINDOWS
from bot.i18n import Translator
from bot.roles import Role
from bot.text import sanitize
from storage.db import Database
from storage.models import ChannelIdentity, KeyValue

log = logging.getLogger(__name__)

MAX_BUTTONS = 5
MAX_TITLE = 100
MAX_BODY = 1024 * 1024  # webhook bodies are small JSON documents
MAX_DOWNLOAD = 25 * 1024 * 1024
IMAGE_LIMIT = 1024 * 1024
FILE_LIMIT = 5 * 1024 * 1024
DOC_EXTENSIONS = {".pdf", ".doc", ".docx"}
FREE_WINDOW = timedelta(hours=48)
CONSULT_WINDOW = MESSAGING_WINDOWS[ChannelName.ZALO_OA]
KV_ACCESS, KV_REFRESH, KV_EXPIRES = "zalo_oa.access_token", "zalo_oa.refresh_token", "zalo_oa.expires_at"
#: a fingerprint of the environment's refresh token when it was last taken (a new one there replaces the stored pair)
KV_ENV = "zalo_oa.env_pair"
ERR_TOKEN = -216
ERR_WINDOW = -230
#: Zalo's "out of quota" answer to a send (the OA's message package is used up)
ERR_QUOTA = -211
#: PostgreSQL advisory lock (second key: the schema) held by the one process refreshing the pair
TOKEN_LOCK_KEY = 7318203
TOKEN_LOCK_WAIT = "60s"
#: the scheduler refreshes the pair when the access token (about 25 h) has less than this left …
KEEPALIVE_AHEAD = timedelta(hours=2)
#: … or when the refresh token (about 3 months, single use) is older than this, sends or none
KEEPALIVE_MAX_AGE = timedelta(days=7)
#: after a keep-alive refresh got no answer from Zalo, the next try waits this long
KEEPALIVE_RETRY = timedelta(minutes=5)
#: a refresh that keeps failing without an answer from Zalo (network) is reported once the stored
#: pair is this old (two months left before the refresh token expires)
REPORT_UNREACHABLE_AFTER = timedelta(days=30)
#: IT is told when the OA's package has at most this share of its messages left, or QUOTA_LOW_MIN
QUOTA_LOW_SHARE = 0.1
QUOTA_LOW_MIN = 20
ALERT_TOKEN, ALERT_QUOTA = "zalo_oa.token", "zalo_oa.quota"


class ZaloOAError(Exception):
    """A Zalo OA API call failed (``code`` is Zalo's error number or the HTTP status).

    ``refused``: Zalo answered and said no (as opposed to no answer at all: network, server error)."""

    def __init__(self, code: int, message: str = "", *, refused: bool = True) -> None:
        super().__init__(f"Zalo OA error {code}: {message}")
        self.code = code
        self.refused = refused


class QuotaExceeded(ZaloOAError):
    """Zalo refused a send because the OA's message quota (its paid package) is used up."""


@dataclass(frozen=True, slots=True)
class TokenPair:
    """The token pair as stored; ``issued_at``: when its refresh token was stored (its age)."""

    access: str
    refresh: str
    expires_at: float | None
    issued_at: datetime | None


def _kv() -> Table:
    return cast(Table, KeyValue.__table__)  # type: ignore[attr-defined]


def token_mark(refresh_token: str) -> str:
    """A fingerprint of a refresh token (the token itself is not stored twice)."""
    return hashlib.sha256(refresh_token.encode()).hexdigest()[:24]


def _read_pair(conn: Connection) -> tuple[TokenPair | None, str]:
    """The stored pair (None if there is none) and the fingerprint of the environment's last pair."""
    kv = _kv()
    rows = {k: (v, at) for k, v, at in conn.execute(
        sa_select(kv.c.key, kv.c.value, kv.c.updated_at).where(kv.c.key.in_([KV_ACCESS, KV_REFRESH, KV_EXPIRES,
                                                                              KV_ENV])))}
    env_seen = rows.get(KV_ENV, ("", None))[0]
    access, refresh = rows.get(KV_ACCESS, ("", None))[0], rows.get(KV_REFRESH, ("", None))
    if not access or not refresh[0]:
        return None, env_seen
    try:
        expires_at: float | None = float(rows.get(KV_EXPIRES, ("", None))[0]) or None
    except ValueError:
        expires_at = None
    return TokenPair(access, refresh[0], expires_at, refresh[1]), env_seen


def _write_pair(conn: Connection, values: dict[str, str], now: datetime) -> None:
    kv = _kv()
    conn.execute(delete(kv).where(kv.c.key.in_(list(values))))
    conn.execute(insert(kv), [{"key": k, "value": v, "updated_at": now} for k, v in values.items()])


def _lock_pair(conn: Connection) -> None:
    conn.execute(text(f"SET LOCAL lock_timeout = '{TOKEN_LOCK_WAIT}'"))
    conn.execute(text("SELECT pg_advisory_xact_lock(:k, hashtext(current_schema()))"), {"k": TOKEN_LOCK_KEY})


def _close(conn: Connection) -> None:
    try:
        conn.rollback()  # a transaction still open (an error): its lock goes with it
    finally:
        conn.close()


class _PairTx:
    """The stored pair inside the guard: read and written on the guard's connection (PostgreSQL), or
    as units of their own (SQLite: one process per file, the channel's lock is the guard)."""

    def __init__(self, db: Database, conn: Connection | None) -> None:
        self.db, self.conn = db, conn

    async def read(self) -> tuple[TokenPair | None, str]:
        if self.conn is None:
            return await self.db.run(lambda s: _read_pair(s.connection()))
        return await asyncio.to_thread(_read_pair, self.conn)

    async def write(self, values: dict[str, str], now: datetime) -> None:
        if self.conn is None:
            await self.db.run(lambda s: _write_pair(s.connection(), values, now))
        else:
            await asyncio.to_thread(_write_pair, self.conn, values, now)


@asynccontextmanager
async def pair_guard(db: Database) -> AsyncIterator[_PairTx]:
    """Hold the token pair for one process: on PostgreSQL a transaction-level advisory lock on a
    connection of its own, released when what was written commits (or is rolled back)."""
    if db.is_sqlite:
        yield _PairTx(db, None)
        return
    conn = await asyncio.to_thread(db.engine.connect)
    try:
        await asyncio.to_thread(_lock_pair, conn)
        yield _PairTx(db, conn)
        await asyncio.to_thread(conn.commit)
    finally:
        await asyncio.to_thread(_close, conn)


def reach_window(last_seen_at: datetime | None, now: datetime) -> str:
    """``"free"`` (within 48 h of their last message), ``"consult"`` (within 7 days) or ``"closed"``."""
    if last_seen_at is None:
        return "closed"
    age = now - last_seen_at
    if age <= FREE_WINDOW:
        return "free"
    if age <= CONSULT_WINDOW:
        return "consult"
    return "closed"


def can_reach(identity: ChannelIdentity, now: datetime) -> bool:
    """Whether the OA may still message this person without a paid template (7-day window)."""
    return identity.active and reach_window(identity.last_seen_at, now) != "closed"


def signature(app_id: str, raw_body: bytes, timestamp: str, secret_key: str) -> str:
    """The expected ``X-ZEvent-Signature``: hex sha256(app_id + raw body + timestamp + OA secret key)."""
    return hashlib.sha256(app_id.encode() + raw_body + timestamp.encode() + secret_key.encode()).hexdigest()


def compress_image(path: str, limit: int = IMAGE_LIMIT) -> bytes:
    """Re-encode an image as JPEG under ``limit`` bytes (scales down and lowers quality as needed)."""
    from PIL import Image, ImageOps

    with Image.open(path) as opened:
        im: Image.Image = opened
        im = ImageOps.exif_transpose(im) or im
        if im.mode not in ("RGB", "L"):
            background = Image.new("RGB", im.size, (255, 255, 255))
            rgba = im.convert("RGBA")
            background.paste(rgba, mask=rgba.getchannel("A"))
            im = background
        im.thumbnail((2048, 2048))
        quality = 85
        while True:
            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=quality, optimize=True)
            data = buf.getvalue()
            if len(data) <= limit:
                return data
            if quality > 45:
                quality -= 15
            else:
                im = im.resize((max(1, im.width * 3 // 4), max(1, im.height * 3 // 4)))


class ZaloOAChannel:
    """The Zalo Official Account adapter (implements the Channel and ChannelAdapter protocols)."""

    name = ChannelName.ZALO_OA.value

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.db = runtime.db
        self.menus = MenuStore(self.db, self.name)
        self.links = MediaLinks.of(runtime)
        self.api_base = self.settings.zalo_oa_api_base.rstrip("/")
        self.oauth_base = self.settings.zalo_oa_oauth_base.rstrip("/")
        self.access_token = self.settings.zalo_oa_access_token
        self.refresh_token = self.settings.zalo_oa_refresh_token
        self.expires_at: float | None = None  # epoch seconds; None: unknown (use until refused)
        self.refresh_count = 0  # refresh calls this process made to Zalo
        self._token_lock = asyncio.Lock()
        self._refused_refresh = ""  # a refresh token Zalo refused: not offered again
        self._told: set[str] = set()  # alerts this process already handled (the database keeps them once)
        self.quota: dict[str, Any] = {}  # the last ``quota`` Zalo reported with a send
        self._keepalive_after: datetime | None = None  # after a failure without an answer from Zalo
        self._http: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self.window_closed: list[str] = []  # chat ids refused with -230 (for logs and tests)

    # -- lifecycle -----------------------------------------------------------------------------
    def setup_routes(self, app: web.Application) -> None:
        app.router.add_post(self.settings.zalo_oa_webhook_path, self._webhook)

    async def start(self) -> None:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        await self._load_tokens()

    async def stop(self) -> None:
        await finish_tasks(self._tasks)  # events already answered 200 finish, as Telegram's do
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def idle(self) -> None:
        """Wait until every webhook event received so far is processed (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        return self._http

    # -- tokens --------------------------------------------------------------------------------
    def _now(self) -> datetime:
        return self.runtime.services.clock.now()  # type: ignore[no-any-return]

    def _use(self, pair: TokenPair) -> None:
        self.access_token, self.refresh_token, self.expires_at = pair.access, pair.refresh, pair.expires_at

    async def _load_tokens(self) -> None:
        """Take the stored pair (it replaced the environment's after the first refresh), unless the
        environment carries a new pair (an administrator set new tokens): then that one, stored."""
        env_access, env_refresh = self.settings.zalo_oa_access_token, self.settings.zalo_oa_refresh_token
        mark = token_mark(env_refresh) if env_refresh else ""
        async with self._token_lock, pair_guard(self.db) as tx:
            stored, env_seen = await tx.read()
            # The stored pair wins unless the environment's changed since it was last taken (an
            # earlier version recorded nothing: its environment pair is the one it started from).
            if stored is not None and (not mark or not env_seen or mark == env_seen or stored.refresh == env_refresh):
                self._use(stored)
                if mark and env_seen != mark:
                    await tx.write({KV_ENV: mark}, self._now())
                return
            if not (env_access and env_refresh):
                return
            if stored is not None:
                log.warning("Zalo OA: new tokens in the environment replace the stored pair")
            self.access_token, self.refresh_token, self.expires_at = env_access, env_refresh, None
            await tx.write({KV_ACCESS: env_access, KV_REFRESH: env_refresh, KV_EXPIRES: "", KV_ENV: mark},
                           self._now())

    async def refresh(self, stale: str | None = None, *, keepalive: bool = False) -> bool:
        """Get a valid pair: the one another process stored, or a new one from Zalo.

        ``stale`` is the access token the caller saw refused (or about to expire): if this process
        or another one replaced it meanwhile, the newer pair is used and nothing is asked of Zalo.
        ``keepalive``: the scheduler's check, which refreshes only when the pair is due
        (:data:`KEEPALIVE_AHEAD`, :data:`KEEPALIVE_MAX_AGE`). The new pair is stored before it is
        used. True when a refresh was made; :class:`ZaloOAError` when it failed."""
        async with self._token_lock:
            if stale is not None and self.access_token != stale:
                return False
            async with pair_guard(self.db) as tx:
                stored, _env_seen = await tx.read()
                if stored is not None and stored.access != self.access_token:
                    self._use(stored)  # another process refreshed: its pair is the one
                    if stale is not None or not keepalive:
                        log.info("Zalo OA: using the token pair another process stored")
                        return False
                if keepalive and not self._due(stored):
                    return False
                refresh_token = stored.refresh if stored is not None else self.refresh_token
                if not refresh_token:
                    raise ZaloOAError(ERR_TOKEN, "access token expired and no refresh token is configured")
                if refresh_token == self._refused_refresh:
                    raise ZaloOAError(ERR_TOKEN, "the refresh token was refused; new tokens are needed")
                access, new_refresh, expires_in = await self._exchange(refresh_token)
                now = self._now()
                expires_at = now.timestamp() + expires_in
                # stored before use: the old refresh token is spent
                await tx.write({KV_ACCESS: access, KV_REFRESH: new_refresh, KV_EXPIRES: str(expires_at)}, now)
            self.access_token, self.refresh_token, self.expires_at = access, new_refresh, expires_at
            log.info("Zalo OA access token refreshed (valid %d s)", int(expires_in))
            return True

    def _due(self, stored: TokenPair | None) -> bool:
        """Whether the scheduler should refresh now: the access token runs out soon (or its expiry is
        unknown), or the refresh token has aged (it must be used well before its three months)."""
        now = self._now()
        expires_at = stored.expires_at if stored is not None else self.expires_at
        if expires_at is None or expires_at - now.timestamp() < KEEPALIVE_AHEAD.total_seconds():
            return True
        return stored is None or stored.issued_at is None or now - stored.issued_at >= KEEPALIVE_MAX_AGE

    async def _exchange(self, refresh_token: str) -> tuple[str, str, float]:
        """One call to Zalo's OAuth endpoint: (access token, refresh token, seconds it is valid)."""
        self.refresh_count += 1
        try:
            async with self.http.post(
                    f"{self.oauth_base}/v4/oa/access_token",
                    data={"refresh_token": refresh_token, "app_id": self.settings.zalo_oa_app_id,
                          "grant_type": "refresh_token"},
                    headers={"secret_key": self.settings.zalo_oa_app_secret}) as resp:
                status = resp.status
                try:
                    body = await resp.json(content_type=None)
                except (ValueError, aiohttp.ContentTypeError):
                    body = None
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("Zalo OA token refresh: no answer from Zalo (%s)", type(exc).__name__)
            raise ZaloOAError(-1, "token refresh unreachable", refused=False) from None
        if not isinstance(body, dict) or status >= 500:
            log.warning("Zalo OA token refresh: unreadable answer (HTTP %s)", status)
            raise ZaloOAError(status, "token refresh answer unreadable", refused=False)
        access, refresh = str(body.get("access_token") or ""), str(body.get("refresh_token") or "")
        if status != 200 or not access or not refresh:
            try:
                code = int(body.get("error", status) or status)
            except (TypeError, ValueError):
                code = status
            self._refused_refresh = refresh_token
            log.error("Zalo OA token refresh refused (error %s): new tokens are needed", code)
            raise ZaloOAError(code, "token refresh refused")
        try:
            expires_in = float(body.get("expires_in") or 3600)
        except (TypeError, ValueError):
            expires_in = 3600.0
        return access, refresh, expires_in

    async def keep_alive(self) -> None:
        """Scheduler job (one process: the scheduler's leader): refresh the pair when it is due,
        whether or not anything was sent (a summer without messages must not let it expire). A
        failure is told to IT and the principal once (:meth:`_report_refresh_failure`)."""
        now = self._now()
        if self._keepalive_after is not None and now < self._keepalive_after:
            return
        try:
            await self.refresh(keepalive=True)
        except ZaloOAError as exc:
            if not exc.refused:  # no answer: not again at every tick
                self._keepalive_after = now + KEEPALIVE_RETRY
            await self._report_refresh_failure(exc)
        else:
            self._keepalive_after = None

    def scheduled_jobs(self) -> list[tuple[str, Any]]:
        """Periodic work for the runtime's scheduler (see :class:`bot.runtime.ScheduledChannel`)."""
        return [("zalo_oa_keepalive", self.keep_alive)]

    async def _report_refresh_failure(self, exc: ZaloOAError) -> None:
        """Tell IT and the principal of every school, once per refused refresh token, what to do. A
        failure without an answer from Zalo (network) is told only once the pair has aged."""
        if not exc.refused:
            stored, _ = await self.db.run(lambda s: _read_pair(s.connection()))
            issued = stored.issued_at if stored is not None else None
            if issued is None or self._now() - issued < REPORT_UNREACHABLE_AFTER:
                return
        period = "refresh:" + token_mark(self._refused_refresh or self.refresh_token or "-")
        code = exc.code

        refused = exc.refused

        def make(tr: Translator) -> Reply:
            if not refused:
                return Reply(tr.t(
                    "⚠️ For weeks the school assistant has not reached Zalo to renew its access to the "
                    "school's Zalo Official Account. If it cannot before the refresh token expires (about 3 "
                    "months after it was issued), messages through Zalo OA stop.\n\nWhat to do: check that "
                    "the bot's server can reach oauth.zaloapp.com. If the access is lost, sign in at "
                    "developers.zalo.me, create a new access token and refresh token for the OA, put them "
                    "in <code>ZALO_OA_ACCESS_TOKEN</code> and <code>ZALO_OA_REFRESH_TOKEN</code> (the bot's "
                    ".env file) and restart the bot."))
            return Reply(tr.t(
                "⚠️ The school assistant could not renew its access to the school's Zalo Official Account "
                "(Zalo answered: error {code}). Messages through Zalo OA will stop when the current access "
                "token runs out.\n\nWhat to do: sign in at developers.zalo.me, open the app linked to the "
                "OA, create a new access token and refresh token for the OA, put them in "
                "<code>ZALO_OA_ACCESS_TOKEN</code> and <code>ZALO_OA_REFRESH_TOKEN</code> (the bot's .env "
                "file) and restart the bot.", code=code))
        await self._tell(ALERT_TOKEN, period, (Role.IT, Role.PRINCIPAL), make)

    async def _tell(self, rule: str, period: str, roles: tuple[str, ...], make: Any,
                    fallback: tuple[str, ...] = ()) -> None:
        key = f"{rule}|{period}"
        if key in self._told:
            return
        self._told.add(key)  # at once: the sends noticing the same thing meanwhile do not queue it again
        try:
            await tell_staff(self.runtime, rule=rule, period=period, roles=roles, fallback_roles=fallback,
                             make=make, avoid=self.name)
        except Exception:
            self._told.discard(key)  # tried again when noticed again
            raise

    # -- quota ---------------------------------------------------------------------------------
    def _read_quota(self, data: Any) -> None:
        """The ``quota`` Zalo reports with each send (``quota_type``, ``remain``, ``total`` …): IT is
        told once when the OA's package runs low. ``reply`` (the 8 free replies within 48 h of a
        person's message) belongs to one person's window, not to the package."""
        quota = data.get("quota") if isinstance(data, dict) else None
        if not isinstance(quota, dict):
            return
        self.quota = dict(quota)
        kind = str(quota.get("quota_type") or "")
        try:
            remain, total = int(quota.get("remain")), int(quota.get("total") or 0)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return
        if kind == "reply" or remain > max(QUOTA_LOW_MIN, int(total * QUOTA_LOW_SHARE)):
            return
        period = f"low:{kind or '-'}:{str(quota.get('expired_date') or self._month())[:40]}"

        def make(tr: Translator) -> Reply:
            return Reply(tr.t(
                "⚠️ The school's Zalo Official Account is running out of messages: {remain} of {total} left "
                "in its package. When none are left, the bot cannot send through Zalo OA. Sending from an "
                "OA through the API needs Zalo's paid OA package: renew or top it up on oa.zalo.me.",
                remain=tr.number(remain), total=tr.number(total)))
        self._spawn_tell(ALERT_QUOTA, period, make)

    def _quota_refused(self, code: int) -> None:
        def make(tr: Translator) -> Reply:
            return Reply(tr.t(
                "⛔ Zalo refused to send a message from the school's Official Account: its message quota is "
                "used up (error {code}). Until the OA's paid package is renewed or topped up on oa.zalo.me, "
                "people reached only through Zalo OA get no messages from the bot.", code=code))
        self._spawn_tell(ALERT_QUOTA, f"out:{self._month()}", make)

    def _month(self) -> str:
        return self._now().astimezone(self.settings.tz).strftime("%Y-%m")

    def _spawn_tell(self, rule: str, period: str, make: Any) -> None:
        if f"{rule}|{period}" in self._told:
            return
        # in the background: the send that noticed it is not held up (and holds no lock the warning needs)
        self.runtime.dispatcher.spawn(self._tell(rule, period, (Role.IT,), make, fallback=(Role.PRINCIPAL,)))

    async def _call(self, path: str, *, json_body: dict[str, Any] | None = None,
                    form: aiohttp.FormData | None = None, build_form: Any = None) -> dict[str, Any]:
        """POST to the OA API; on HTTP 401 / error -216 take the stored pair or refresh, and retry
        once; raise on any error."""
        if self.expires_at is not None and self.expires_at - self._now().timestamp() < 60:
            await self._refresh_or_report(self.access_token)
        for attempt in (1, 2):
            token = self.access_token
            data = build_form() if build_form is not None else form
            async with self.http.post(f"{self.api_base}{path}", json=json_body, data=data,
                                      headers={"access_token": token}) as resp:
                status = resp.status
                try:
                    body = await resp.json(content_type=None)
                except (ValueError, aiohttp.ContentTypeError):
                    body = None
            if not isinstance(body, dict):
                body = {"error": status if status != 200 else -1, "message": "unreadable answer"}
            try:
                code = int(body.get("error", 0) or 0) if status == 200 else status
            except (TypeError, ValueError):
                code = -1
            if status == 401 or code == ERR_TOKEN:
                if attempt == 1:
                    await self._refresh_or_report(token)
                    continue
                raise ZaloOAError(ERR_TOKEN, "access token refused after refresh")
            if status != 200:
                raise ZaloOAError(status, "HTTP error", refused=status < 500)
            if code != 0:
                message = str(body.get("message", ""))
                if code == ERR_WINDOW:
                    raise WindowClosed(message)
                if code == ERR_QUOTA or "quota" in message.lower():
                    log.error("Zalo OA: send refused, the OA's message quota is used up (error %s)", code)
                    self._quota_refused(code)
                    raise QuotaExceeded(code, message)
                raise ZaloOAError(code, message)
            return body
        raise ZaloOAError(ERR_TOKEN, "unreachable")  # pragma: no cover

    async def _refresh_or_report(self, stale: str) -> None:
        try:
            await self.refresh(stale)
        except ZaloOAError as exc:
            if exc.refused:
                self.runtime.dispatcher.spawn(self._report_refresh_failure(exc))
            raise

    # -- inbound -------------------------------------------------------------------------------
    async def _webhook(self, request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > MAX_BODY:
            return web.Response(status=413)
        raw = await read_body(request, MAX_BODY + 1)
        if len(raw) > MAX_BODY:
            return web.Response(status=413)
        try:
            event = json.loads(raw)
        except (ValueError, RecursionError):  # RecursionError: absurdly nested JSON
            return web.Response(status=400, text="malformed JSON")
        if not isinstance(event, dict):
            return web.Response(status=400, text="malformed JSON")
        given = request.headers.get("X-ZEvent-Signature", "").strip()
        if given.lower().startswith("mac="):
            given = given[4:].strip()
        expected = signature(self.settings.zalo_oa_app_id, raw, str(event.get("timestamp", "")),
                             self.settings.zalo_oa_secret_key)
        if not given or not hmac.compare_digest(given.lower().encode(), expected.encode()):
            log.warning("Zalo OA webhook with a bad signature refused")
            return web.Response(status=403)
        name = str(event.get("event_name", ""))
        if name.startswith("oa_send_"):
            return web.json_response({"ok": True})  # the OA's own message echoed back
        key = self._update_key(event)
        if key in self._seen:
            return web.json_response({"ok": True})
        self._seen[key] = None
        while len(self._seen) > 5000:
            self._seen.popitem(last=False)
        task = asyncio.get_running_loop().create_task(self._process(event, key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return web.json_response({"ok": True})

    @staticmethod
    def _update_key(event: dict[str, Any]) -> str:
        return event_key(event, "msg_id")

    async def _process(self, event: dict[str, Any], key: str) -> None:
        await dispatch_event(self.runtime, self._to_inbound, event, key, "Zalo OA")

    async def _to_inbound(self, event: dict[str, Any], key: str) -> Inbound | None:
        name = str(event.get("event_name", ""))
        sender = event.get("sender") or event.get("follower") or event.get("user") or {}
        user_id = str(sender.get("id", "")) if isinstance(sender, dict) else ""
        if not user_id:
            return None
        msg = event.get("message") if isinstance(event.get("message"), dict) else {}
        msg = msg or {}
        mid = str(msg.get("msg_id")) if msg.get("msg_id") else None
        base: dict[str, Any] = {"channel": self.name, "user_id": user_id, "chat_id": user_id,
                                "update_key": key, "message_id": mid}
        attachments = [a for a in (msg.get("attachments") or []) if isinstance(a, dict)]
        if name == "follow":
            return Inbound(**base, command="start")
        if name == "user_submit_info":
            # The person shared their Zalo account's own phone number through request_user_info.
            info = event.get("info") if isinstance(event.get("info"), dict) else {}
            phone = str((info or {}).get("phone") or "").strip()
            if not phone:
                return Inbound(**base)
            return Inbound(**base, contact=Contact(phone=phone, user_id=user_id,
                                                   first_name=str((info or {}).get("name") or "")[:100]))
        if name == "user_send_text":
            text = str(msg.get("text") or "")
            return await self._text_inbound(base, text)
        if name in ("user_send_image", "user_send_gif", "user_send_file", "user_send_audio", "user_send_video"):
            kind = {"user_send_image": "photo", "user_send_gif": "photo", "user_send_file": "document",
                    "user_send_audio": "voice", "user_send_video": "video"}[name]
            files = []
            for att in attachments[:10]:
                payload = att.get("payload") or {}
                url = str(payload.get("url") or payload.get("thumbnail") or "")
                fname = str(payload.get("name") or "")
                files.append(await download(self.http, url, media=self.runtime.media, kind=kind,
                                            max_bytes=MAX_DOWNLOAD, file_name=fname))
            caption = str(msg.get("text") or "") or None
            return Inbound(**base, text=caption, files=tuple(files))
        if name == "user_send_location":
            for att in attachments:
                coords = (att.get("payload") or {}).get("coordinates") or {}
                try:
                    loc = (float(coords["latitude"]), float(coords["longitude"]))
                except (KeyError, TypeError, ValueError):
                    continue
                return Inbound(**base, location=loc)
            return Inbound(**base)
        if name.startswith("user_send_"):
            return Inbound(**base)  # sticker, business card …: no content, the core answers
        return None  # seen/received receipts, unfollow, …

    async def _text_inbound(self, base: dict[str, Any], text: str) -> Inbound:
        text = sanitize(text)  # before a command or a menu number is read from it, as Inbound would
        stripped = text.strip()
        if looks_like_payload(stripped, self.runtime.registry):
            return Inbound(**base, payload=stripped)
        cmd = parse_command(stripped)
        if cmd is not None:
            return Inbound(**base, text=text, command=cmd[0], args=cmd[1])
        payload = await self.menus.resolve(base["chat_id"], stripped)
        if payload is not None:
            return Inbound(**base, text=text, payload=payload)
        return Inbound(**base, text=text)

    # -- outbound ------------------------------------------------------------------------------
    async def _send_message(self, chat_id: str, message: dict[str, Any]) -> str | None:
        body = await self._call("/v3.0/oa/message/cs", json_body={"recipient": {"user_id": chat_id},
                                                                   "message": message})
        data = body.get("data") or {}
        self._read_quota(data)
        mid = data.get("message_id") if isinstance(data, dict) else None
        return str(mid) if mid is not None else None

    def _request_info_payload(self, tr: Translator) -> dict[str, Any]:
        """Zalo's ``request_user_info`` card: the person shares the phone number of their Zalo account
        with the OA (needs the OA's permission), which arrives as a ``user_submit_info`` event."""
        element: dict[str, Any] = {
            "title": tr.t("Link your account with the school assistant")[:MAX_TITLE],
            "subtitle": tr.t("Share your phone number so it can be checked against the school's staff list.")[:500]}
        if self.settings.zalo_oa_request_image_url:
            element["image_url"] = self.settings.zalo_oa_request_image_url
        return {"type": "template", "payload": {"template_type": "request_user_info", "elements": [element]}}

    @staticmethod
    def _buttons_payload(buttons: list[Button]) -> dict[str, Any]:
        return {"type": "template", "payload": {"buttons": [
            {"title": b.label[:MAX_TITLE], "type": "oa.query.hide", "payload": b.payload} for b in buttons]}}

    async def send(self, out: Outbound) -> str | None:
        try:
            return await self._send(out)
        except WindowClosed:
            self.window_closed.append(out.chat_id)
            log.warning("Zalo OA: messaging window closed for a recipient (person %s); not sent", out.person_id)
            return None

    async def _send(self, out: Outbound) -> str | None:
        reply = out.reply
        tr: Translator | None = None

        async def translator() -> Translator:
            nonlocal tr
            if tr is None:
                tr = await translator_for(self.db, out.person_id, self.settings.default_locale, self.settings.tz)
            return tr

        html_text = reply.text
        buttons = flat_buttons(reply.buttons)
        ask_info = bool(reply.ask_contact and not buttons)
        if ask_info and self.settings.zalo_oa_request_user_info:
            html_text += "\n\n" + (await translator()).t(
                "Tap “Share” on the card below to send the phone number of your Zalo account, or send the "
                "link code the school office gave you (for example K7QX-M2PD-9TRA).")
        elif ask_info:
            html_text += "\n\n" + (await translator()).t(
                "On Zalo, link your account by sending the link code the school office gave you "
                "(for example K7QX-M2PD-9TRA).")
        if len(buttons) > MAX_BUTTONS:
            html_text += "\n\n" + numbered_list(await translator(), buttons)
        parts = split_text(html_to_plain(html_text))
        first_id: str | None = None
        if reply.file is not None:
            first_id = await self._send_file(out, reply.file, await translator())
        button_id: str | None = None
        pages = [buttons[i:i + MAX_BUTTONS] for i in range(0, len(buttons), MAX_BUTTONS)]
        for i, part in enumerate(parts):
            message: dict[str, Any] = {"text": part}
            if i == len(parts) - 1 and pages:
                message["attachment"] = self._buttons_payload(pages[0])
            mid = await self._send_message(out.chat_id, message)
            first_id = first_id or mid
            if "attachment" in message:
                button_id = mid
        for n, page in enumerate(pages[1:], 2):
            more = (await translator()).t("More choices ({page}/{pages}):", page=n, pages=len(pages))
            await self._send_message(out.chat_id, {"text": html_to_plain(more),
                                                   "attachment": self._buttons_payload(page)})
        if ask_info and self.settings.zalo_oa_request_user_info:
            await self._send_message(out.chat_id, {"attachment": self._request_info_payload(await translator())})
        if buttons:
            await self.menus.remember(out.chat_id, buttons)
        else:
            await self.menus.plain_sent(out.chat_id)
        return button_id or first_id

    async def _send_file(self, out: Outbound, file: OutFile, tr: Translator) -> str | None:
        path = Path(file.path)
        ext = path.suffix.lower() if not file.file_name else Path(file.file_name).suffix.lower()
        size = await asyncio.to_thread(file_size, path)
        if not size:
            log.warning("Zalo OA: outbound file missing; nothing sent")
            return None
        name = file.file_name or path.name
        data = b""
        if file.kind == "photo":
            try:
                data = await asyncio.to_thread(compress_image, str(path))
            except (OSError, ValueError) as exc:  # not an image Pillow can read: offer it as a link
                log.warning("Zalo OA: photo could not be re-compressed (%s); sending a link", type(exc).__name__)
        if data:

            def image_form() -> aiohttp.FormData:
                form = aiohttp.FormData()
                form.add_field("file", data, filename=Path(name).stem + ".jpg", content_type="image/jpeg")
                return form
            body = await self._call("/v2.0/oa/upload/image", build_form=image_form)
            attachment_id = (body.get("data") or {}).get("attachment_id")
            return await self._send_message(out.chat_id, {"attachment": {"type": "template", "payload": {
                "template_type": "media", "elements": [{"media_type": "image", "attachment_id": attachment_id}]}}})
        if ext in DOC_EXTENSIONS and size <= FILE_LIMIT:
            raw = await asyncio.to_thread(path.read_bytes)

            def file_form() -> aiohttp.FormData:
                form = aiohttp.FormData()
                form.add_field("file", raw, filename=name, content_type=file.mime or "application/octet-stream")
                return form
            body = await self._call("/v2.0/oa/upload/file", build_form=file_form)
            ftoken = (body.get("data") or {}).get("token")
            return await self._send_message(out.chat_id, {"attachment": {"type": "file",
                                                                         "payload": {"token": ftoken}}})
        link = await self.links.create(file, channel=self.name, chat_id=out.chat_id, person_id=out.person_id)
        return await self._send_message(out.chat_id, {"text": html_to_plain(link_text(tr, link))})

    async def edit(self, ref: MessageRef, reply: Reply) -> bool:
        """Zalo cannot edit a sent message: the updated text is sent as a new message."""
        mid = await self.send(Outbound(self.name, ref.chat_id, reply))
        return mid is not None

    async def delete(self, ref: MessageRef) -> bool:
        """Zalo OA has no delete for the OA's messages."""
        return False

    # -- messaging windows -----------------------------------------------------------------------
    @staticmethod
    def can_reach(identity: ChannelIdentity, now: datetime) -> bool:
        return can_reach(identity, now)

    @staticmethod
    def window(identity: ChannelIdentity, now: datetime) -> str:
        return reach_window(identity.last_seen_at, now)


__all__ = ["ZaloOAChannel", "ZaloOAError", "can_reach", "compress_image", "reach_window", "signature"]
