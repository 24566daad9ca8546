"""Helpers shared by the two Zalo adapters (Official Account and Zalo Bot).

* :func:`html_to_plain` turns the core's safe HTML into plain text (Zalo parses no markup);
* :func:`split_text` cuts long texts under Zalo's 2000-character limit at natural boundaries;
* :class:`MenuStore` remembers the last numbered menu shown in each chat (memory + ``KeyValue``
  table, so it survives a restart) and resolves a typed ``1`` / ``2`` / label into its payload;
* :class:`MediaLinks` serves files that Zalo cannot carry (video, spreadsheets …) as expiring links
  from the bot's own web server, logging every download in the audit log;
* :func:`download` fetches an attachment URL with a size cap into the media store."""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import html
import json
import logging
import mimetypes
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from bot.core import (
    CHOICE,
    Button,
    FileRef,
    Keyboard,
    Outbound,
    OutFile,
    Registry,
    Reply,
    destinations,
    reply_to_payload,
)
from bot.engine.reminders import notice_key
from bot.i18n import Translator, escape
from bot.text import fold, parse_id
from storage import audit
from storage.db import Database
from storage.models import KeyValue, Notice, NoticeStatus, Person, School, utcnow
from storage.people import people_with_roles

log = logging.getLogger(__name__)

TEXT_LIMIT = 2000

# ---------------------------------------------------------------------------------------------
# Text
# ---------------------------------------------------------------------------------------------
_LINK = re.compile(r'<a\s+href="([^"]*)"\s*>(.*?)</a>', re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"</?(?:b|i|u|s|em|strong|code|pre|tg-spoiler|blockquote)>", re.IGNORECASE)


#: at shutdown, how long events already accepted (answered 200, so never delivered again) may take
STOP_WAIT = 10.0


async def finish_tasks(tasks: set[asyncio.Task[None]], limit: float = STOP_WAIT) -> None:
    """Let the events being handled finish (up to ``limit`` s), then cancel what is left: an event
    cut off in the middle of its unit is rolled back, and Zalo does not send it again."""
    pending = list(tasks)
    if not pending:
        return
    _done, late = await asyncio.wait(pending, timeout=limit)
    if late:
        log.warning("stopping with %s Zalo event(s) still being handled", len(late))
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)


def html_to_plain(text: str) -> str:
    """Strip the safe-HTML tags of the catalogue (``<b>``, ``<i>``, ``<code>`` …) and unescape entities.

    Links keep their address: ``<a href="u">label</a>`` → ``label (u)``."""

    def _link(m: re.Match[str]) -> str:
        url, label = html.unescape(m.group(1)), m.group(2)
        return f"{label} ({url})" if url and url != html.unescape(label) else label

    out = _LINK.sub(_link, text)
    out = _TAG.sub("", out)
    return html.unescape(out)


def split_text(text: str, limit: int = TEXT_LIMIT) -> list[str]:
    """Split ``text`` into parts of at most ``limit`` characters, preferring paragraph, line, then
    word boundaries. Never returns an empty list for a non-empty text."""
    text = text.strip()
    if len(text) <= limit:
        return [text] if text else []
    parts: list[str] = []
    rest = text
    while len(rest) > limit:
        window = rest[:limit + 1]
        cut = -1
        for sep in ("\n\n", "\n", ". ", " "):
            pos = window.rfind(sep, 0, limit)
            if pos >= limit // 3:
                cut = pos + (1 if sep == ". " else 0)
                break
        if cut <= 0:
            cut = limit
        head, rest = rest[:cut].rstrip(), rest[cut:].lstrip()
        if head:
            parts.append(head)
    if rest:
        parts.append(rest)
    return parts


def flat_buttons(buttons: Keyboard) -> list[Button]:
    return [b for row in buttons for b in row]


_PAYLOAD_SHAPE = re.compile(r"^[a-z]{1,10}:[A-Za-z0-9_:.\-]{1,60}$")


def looks_like_payload(text: str, registry: Registry) -> bool:
    """True if ``text`` has the shape of one of our button payloads (``ap:12:ok``, ``c:email``,
    ``m:profile``) in a known namespace. Such text is passed on as a payload: the server decides
    whether the sender may use it, exactly as for a tapped button."""
    text = text.strip()
    if len(text.encode()) > 64 or not _PAYLOAD_SHAPE.match(text):
        return False
    return text.startswith(CHOICE + ":") or registry.payload_handler(text) is not None


def parse_command(text: str) -> tuple[str, str] | None:
    """``/hoso abc`` → ``("hoso", "abc")``; None if the text is not a command."""
    s = text.strip()
    if not s.startswith("/") or len(s) < 2:
        return None
    head, _, args = s[1:].partition(" ")
    head = head.split("@", 1)[0].lower()
    if not head or not all(c.isalnum() or c == "_" for c in head):
        return None
    return head, args.strip()


# ---------------------------------------------------------------------------------------------
# Translator of a recipient
# ---------------------------------------------------------------------------------------------
async def translator_for(db: Database, person_id: int | None, default_locale: str, tz: Any) -> Translator:
    """The translator of the person an outbound message goes to (their language), else the default."""
    locale = default_locale
    if person_id is not None:
        def _get(s: Session) -> str | None:
            p = s.get(Person, person_id)
            return p.locale if p else None
        locale = (await db.run(_get)) or default_locale  # type: ignore[arg-type]
    return Translator(locale, tz)


# ---------------------------------------------------------------------------------------------
# Numbered menus
# ---------------------------------------------------------------------------------------------
@dataclass
class _ReplyBatch:
    chat_id: str
    menu_sent: bool = False


# Set by an adapter while the dispatcher handles one inbound message: sends to that chat in this
# context are the answer to it (a plain prompt there supersedes the previous menu); sends to the
# chat from elsewhere (another person's approval, a reminder) leave the menu alone.
_replying: contextvars.ContextVar[_ReplyBatch | None] = contextvars.ContextVar("zalo_replying", default=None)


def begin_reply(chat_id: str) -> contextvars.Token[_ReplyBatch | None]:
    return _replying.set(_ReplyBatch(chat_id))


def end_reply(token: contextvars.Token[_ReplyBatch | None]) -> None:
    _replying.reset(token)


def _label_key(label: str) -> str:
    """Folded label without leading icons/emoji, for forgiving matches of a typed label."""
    f = fold(label)
    return re.sub(r"^[^0-9a-z]+", "", f).strip()


class MenuStore:
    """The last menu shown in each chat of one channel, in memory and in the ``KeyValue`` table."""

    def __init__(self, db: Database, channel: str) -> None:
        self.db = db
        self.channel = channel
        self._menus: dict[str, list[tuple[str, str]]] = {}

    def _key(self, chat_id: str) -> str:
        return f"{self.channel}.menu.{chat_id}"[:120]

    async def remember(self, chat_id: str, buttons: Sequence[Button]) -> None:
        items = [(b.label, b.payload) for b in buttons]
        self._menus[chat_id] = items
        batch = _replying.get()
        if batch is not None and batch.chat_id == chat_id:
            batch.menu_sent = True
        value = json.dumps(items, ensure_ascii=False)
        key = self._key(chat_id)

        def _save(s: Session) -> None:
            row = s.get(KeyValue, key)
            if row is None:
                row = KeyValue(key=key)
            row.value, row.updated_at = value, utcnow()
            s.add(row)
        await self.db.run(_save)

    async def plain_sent(self, chat_id: str) -> None:
        """A message without choices went to ``chat_id``: if it answers that chat's own message and
        no menu came with it, the earlier menu no longer applies (the bot now asks for text)."""
        batch = _replying.get()
        if batch is None or batch.chat_id != chat_id or batch.menu_sent:
            return
        await self.forget(chat_id)

    async def forget(self, chat_id: str) -> None:
        self._menus[chat_id] = []
        key = self._key(chat_id)

        def _del(s: Session) -> None:
            row = s.get(KeyValue, key)
            if row is not None:
                s.delete(row)
        await self.db.run(_del)

    async def items(self, chat_id: str) -> list[tuple[str, str]]:
        if chat_id in self._menus:
            return self._menus[chat_id]
        key = self._key(chat_id)
        raw = await self.db.run(lambda s: (row.value if (row := s.get(KeyValue, key)) else None))
        items: list[tuple[str, str]] = []
        if raw:
            try:
                items = [(str(a), str(b)) for a, b in json.loads(raw)]
            except (ValueError, TypeError):
                items = []
        self._menus[chat_id] = items
        return items

    async def resolve(self, chat_id: str, text: str, *, numbers: bool = True) -> str | None:
        """The payload a typed answer chooses: ``1``/``2``… (when ``numbers``) or the exact label
        (case and diacritics forgiven). None if it chooses nothing."""
        items = await self.items(chat_id)
        if not items:
            return None
        s = text.strip().rstrip(".)")
        if numbers and parse_id(s) is not None:
            n = int(s)
            return items[n - 1][1] if 1 <= n <= len(items) else None
        key = _label_key(text)
        if not key:
            return None
        for label, payload in items:
            if _label_key(label) == key:
                return payload
        return None


def numbered_list(tr: Translator, buttons: Sequence[Button]) -> str:
    """The choices as safe HTML: ``1. Duyệt`` lines and a "reply with the number" line."""
    lines = [f"{i}. {escape(b.label)}" for i, b in enumerate(buttons, 1)]
    if len(buttons) <= 3:
        choices = ", ".join(tr.t("{n} to choose “{label}”", n=i, label=b.label) for i, b in enumerate(buttons, 1))
        lines.append(tr.t("Reply {choices}.", choices=choices))
    else:
        lines.append(tr.t("Reply with the number of your choice (1–{max}), or type its name.",
                          max=len(buttons)))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Attachments in
# ---------------------------------------------------------------------------------------------
async def download(session: aiohttp.ClientSession, url: str, *, media: Any, kind: str, max_bytes: int,
                   file_name: str = "", mime: str = "") -> FileRef:
    """Fetch ``url`` into the media store; a ``FileRef`` with ``error`` (``too_big``/``failed``) otherwise."""
    if not url.startswith(("https://", "http://")):
        return media.failed(kind=kind, error="failed", file_name=file_name)  # type: ignore[no-any-return]
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=120)) as resp:
            if resp.status != 200:
                log.warning("attachment download answered HTTP %s", resp.status)
                return media.failed(kind=kind, error="failed", file_name=file_name)  # type: ignore[no-any-return]
            if resp.content_length is not None and resp.content_length > max_bytes:
                return media.failed(kind=kind, error="too_big", size=resp.content_length,  # type: ignore[no-any-return]
                                    file_name=file_name)
            buf = bytearray()
            async for chunk in resp.content.iter_chunked(64 * 1024):
                buf.extend(chunk)
                if len(buf) > max_bytes:
                    return media.failed(kind=kind, error="too_big", size=len(buf),  # type: ignore[no-any-return]
                                        file_name=file_name)
            mime = mime or resp.headers.get("Content-Type", "").split(";")[0].strip()
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.warning("attachment download failed: %s", type(exc).__name__)
        return media.failed(kind=kind, error="failed", file_name=file_name)  # type: ignore[no-any-return]
    data = bytes(buf)
    return await asyncio.to_thread(  # type: ignore[no-any-return]
        media.store_bytes, data, kind=kind, mime=mime, file_name=file_name)


# ---------------------------------------------------------------------------------------------
# Expiring links for files the platform cannot carry
# ---------------------------------------------------------------------------------------------
LINK_ROUTE = "/zalo/dl/{token}"
LINK_TTL = timedelta(hours=24)


def file_size(path: str | Path) -> int:
    """Size of a regular file, 0 if it is missing (call through ``asyncio.to_thread``)."""
    p = Path(path)
    return p.stat().st_size if p.is_file() else 0


def _token_key(token: str) -> str:
    return "media_link." + hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class MediaLink:
    url: str
    expires_at: datetime
    file_name: str


class MediaLinks:
    """Expiring download links served by the bot's web server (one instance per runtime).

    Only a hash of each random token is stored (``KeyValue``), so the links survive a restart and a
    copy of the database does not reveal them. Every download is written to the audit log."""

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime
        self.db: Database = runtime.db
        self._warned = False
        runtime.web_app.router.add_get(LINK_ROUTE, self._serve)

    @classmethod
    def of(cls, runtime: Any) -> MediaLinks:
        """The runtime's shared instance (the route is registered once)."""
        links = runtime.media_links
        if links is None:
            links = cls(runtime)
            runtime.media_links = links
        return links  # type: ignore[no-any-return]

    def base_url(self) -> str:
        s = self.runtime.settings
        if s.public_base_url:
            return str(s.public_base_url).rstrip("/")
        if not self._warned:
            self._warned = True
            log.warning("PUBLIC_BASE_URL is not set: Zalo file links point at the local web server, "
                        "which Zalo and people outside this machine cannot reach")
        port = self.runtime.web_port or s.web_port
        return f"http://{s.web_host}:{port}"

    async def create(self, file: OutFile, *, channel: str, chat_id: str, person_id: int | None,
                     ttl: timedelta = LINK_TTL) -> MediaLink:
        token = secrets.token_urlsafe(24)
        expires = utcnow() + ttl
        name = file.file_name or Path(file.path).name
        meta = {"path": str(file.path), "name": name, "kind": file.kind,
                "mime": file.mime or (mimetypes.guess_type(name)[0] or "application/octet-stream"),
                "expires": expires.isoformat(), "person_id": person_id, "channel": channel, "chat_id": chat_id}
        key = _token_key(token)
        stale = utcnow() - ttl - timedelta(days=1)

        def _save(s: Session) -> None:
            # Forget links that expired long ago (their rows only grow the table).
            for row in s.exec(select(KeyValue).where(col(KeyValue.key).startswith("media_link."),
                                                     col(KeyValue.updated_at) < stale).limit(200)):
                s.delete(row)
            s.add(KeyValue(key=key, value=json.dumps(meta, ensure_ascii=False), updated_at=utcnow()))
        await self.db.run(_save)
        return MediaLink(url=f"{self.base_url()}/zalo/dl/{token}", expires_at=expires, file_name=name)

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        token = request.match_info.get("token", "")
        if not (10 <= len(token) <= 100):
            raise web.HTTPNotFound()
        key = _token_key(token)
        raw = await self.db.run(lambda s: (row.value if (row := s.get(KeyValue, key)) else None))
        if raw is None:
            raise web.HTTPNotFound()
        meta = json.loads(raw)
        now = utcnow()
        if datetime.fromisoformat(meta["expires"]) < now:
            raise web.HTTPGone(text="This link has expired.")
        path = Path(meta["path"])
        if not await asyncio.to_thread(path.is_file):
            raise web.HTTPNotFound()
        person_id = meta.get("person_id")

        def _log(s: Session) -> None:
            person = s.get(Person, person_id) if person_id else None
            audit.record(s, action="media.download", school_id=person.school_id if person else None,
                         actor_id=person_id, channel=str(meta.get("channel", "")),
                         subject=f"file:{meta.get('name', '')}"[:120],
                         details={"link": key[-12:], "size": path.stat().st_size, "kind": meta.get("kind")},
                         at=now)
        await self.db.run(_log)
        inline = str(meta.get("kind")) == "photo"
        disp = "inline" if inline else "attachment"
        ascii_name = meta["name"].encode("ascii", "replace").decode().replace('"', "")
        return web.FileResponse(path, headers={
            "Content-Type": meta.get("mime") or "application/octet-stream",
            "Content-Disposition": f'{disp}; filename="{ascii_name}"',
            "Cache-Control": "private, no-store",
        })


def link_text(tr: Translator, link: MediaLink) -> str:
    """Safe-HTML line offering a file by its expiring link."""
    return tr.t("📎 {name}: {url}\nThe link works until {until}.", name=link.file_name, url=link.url,
                until=tr.datetime(link.expires_at))


class WindowClosed(Exception):
    """Zalo refused a message because the person's messaging window is closed (OA error -230)."""


# ---------------------------------------------------------------------------------------------
# Telling the school's staff about a problem of the channel itself (tokens, quota)
# ---------------------------------------------------------------------------------------------
async def tell_staff(runtime: Any, *, rule: str, period: str, roles: Sequence[str], make: Callable[[Translator], Reply],
                     fallback_roles: Sequence[str] = (), avoid: str = "") -> int:
    """Tell the people holding ``roles`` in every school (``fallback_roles`` where a school has none)
    once per ``period``: each message is a ``notice`` row keyed ``rule|person|period``, written in the
    unit that sends it, so restarts and other bot processes never repeat it. Each goes to a channel of
    the person other than ``avoid`` (the channel in trouble) when they have one; a person with none
    linked gets it when they next write. Returns how many were queued now."""
    queued = 0

    def unit(ctx: Any) -> None:
        nonlocal queued
        s: Session = ctx.session
        for school in s.exec(select(School).order_by(col(School.id))).all():
            people = people_with_roles(s, school_id=school.id or 0, roles=list(roles))
            if not people and fallback_roles:
                people = people_with_roles(s, school_id=school.id or 0, roles=list(fallback_roles))
            for person in people:
                key = notice_key(rule, person.id, period)
                if s.exec(select(Notice.id).where(Notice.key == key)).first() is not None:
                    continue
                reply = make(ctx.translator_for(person))
                row = Notice(key=key, school_id=school.id, rule=rule, person_id=person.id, period=period,
                             created_at=ctx.now, payload=reply_to_payload(reply), status=NoticeStatus.HELD)
                dests = sorted(destinations(s, person), key=lambda d: d[0] == avoid)
                if dests:
                    row.channel, row.chat_id = dests[0]
                    row.status, row.sent_at = NoticeStatus.SENT, ctx.now
                    ctx.outbox.append(Outbound(row.channel, row.chat_id, reply, person.id))
                    queued += 1
                s.add(row)
        s.flush()

    try:
        await runtime.dispatcher.run_unit(unit, channel="system")
    except IntegrityError:  # another process told them at the same moment
        log.info("%s %s: already told by another process", rule, period)
        return 0
    return queued


__all__ = [
    "LINK_TTL", "MediaLink", "MediaLinks", "MenuStore", "TEXT_LIMIT", "WindowClosed", "begin_reply",
    "download", "end_reply", "file_size", "flat_buttons", "html_to_plain", "link_text", "looks_like_payload",
    "numbered_list", "parse_command", "split_text", "tell_staff", "translator_for",
]


# ---------------------------------------------------------------------------------------------
# Inbound events, shared by both adapters
# ---------------------------------------------------------------------------------------------
def event_key(event: dict[str, Any], id_field: str) -> str:
    """The de-duplication key of an event: the platform's message id, else a hash of the event."""
    msg = event.get("message") if isinstance(event.get("message"), dict) else {}
    mid = (msg or {}).get(id_field)
    if mid:
        return str(mid)[:120]
    blob = json.dumps(event, sort_keys=True, ensure_ascii=False).encode()
    return "h:" + hashlib.sha256(blob).hexdigest()[:40]


async def dispatch_event(runtime: Any, to_inbound: Any, event: dict[str, Any], key: str, label: str) -> None:
    """Turn one event into an Inbound and hand it to the dispatcher; failures are logged, never raised."""
    try:
        msg = await to_inbound(event, key)
        if msg is None:
            return
        token = begin_reply(msg.chat_id)
        try:
            await runtime.dispatcher.handle(msg)
        finally:
            end_reply(token)
    except Exception:
        log.exception("%s event %s could not be processed", label, event.get("event_name"))
