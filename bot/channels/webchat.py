"""Web chat: try the assistant in a browser as any active person of the school.

Served on the runtime's aiohttp application:

* ``GET /`` — the page (``webchat_static/index.html``): pick a person, then chat as them.
* ``GET /web/static/{name}`` — its script and style sheet (no CDN, nothing external).
* ``GET /web/api/strings`` — the page's labels, translated server side from the catalogue.
* ``POST /web/api/login`` / ``/web/api/logout`` — only when ``WEB_CHAT_PASSWORD`` is set.
* ``GET /web/api/people`` — active people of each school with their role titles.
* ``POST /web/api/open`` — link the person on channel ``web`` (chat id ``p<person id>``) and
  return the chat's recent messages.
* ``POST /web/api/send`` — one event (text, ``/command args`` or a button payload), then the
  chat's changes; ``GET /web/api/ws`` does the same over a WebSocket and pushes every message the
  core sends to that chat (also those caused by other people, e.g. an approval card).
* ``GET /web/files/{token}`` — a file sent by the bot, behind a random, unguessable token.

Every chat keeps a bounded in-memory history (a reload shows recent messages). Each history entry
has a revision number; clients ask for "changes since revision N", so sends, edits and deletes
reach a page whether it is connected by WebSocket or only polls by POST. Answers carry ``boot``
(random per process): after a restart the page starts again from revision 0.

Security: state-changing requests and WebSockets must come from the page's own origin (``Origin``
equals ``Host``); without a password the ``Host`` must be a loopback name (blocks DNS rebinding);
with ``WEB_CHAT_PASSWORD`` every API call needs the HttpOnly session cookie set by the login form.
Bodies are small and bounded. Anyone who can open the page may act as any listed person: it is a
demo and test channel, not an identity provider."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import logging
import mimetypes
import os
import re
import secrets
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aiohttp import WSMsgType, web
from sqlmodel import Session, col, select

from bot.channels.http_body import read_body
from bot.core import ChannelName, Inbound, MessageRef, Outbound, Reply
from bot.i18n import N_, Translator
from bot.roles import ROLE_TITLES, Role
from bot.text import parse_id, sanitize, sanitize_line
from storage.models import ChannelIdentity, Person, PersonStatus, School
from storage.people import link_identity

if TYPE_CHECKING:
    from bot.runtime import Runtime

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "webchat_static"
STATIC_FILES = {"app.js": "application/javascript", "style.css": "text/css", "icon.svg": "image/svg+xml"}
MAX_BODY = 16 * 1024  # bytes of one JSON request or WebSocket message
HISTORY_LIMIT = 200  # messages kept per chat
FILE_TOKENS_LIMIT = 2000
COOKIE = "webchat_auth"
COOKIE_TTL = 7 * 24 * 3600
LOGIN_WINDOW = 600.0  # seconds
LOGIN_MAX_FAILURES = 10
_EVENT_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
_COMMAND = re.compile(r"^/([A-Za-z0-9_]{1,32})(?:@\S+)?(?:\s+(.*))?$", re.DOTALL)

SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                                "img-src 'self'; media-src 'self'; form-action 'self'; base-uri 'none'; "
                                "frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

#: Labels of the page (msgid → key the script uses).
UI_STRINGS: dict[str, str] = {
    "title": N_("School assistant — web chat"),
    "pick": N_("Choose who you are to try the assistant:"),
    "search": N_("Search by name, role or unit"),
    "none": N_("No active staff yet. Run “python main.py demo” to create the demo school."),
    "back": N_("← Back"),
    "send": N_("Send"),
    "placeholder": N_("Type a message or a command such as /hoso"),
    "menu": N_("☰ Menu"),
    "login_title": N_("This web chat is protected by a password."),
    "password": N_("Password"),
    "login": N_("Sign in"),
    "logout": N_("Sign out"),
    "bad_password": N_("Wrong password. Please try again."),
    "too_many": N_("Too many attempts. Please wait a few minutes and try again."),
    "offline": N_("Connection lost. Reconnecting…"),
    "error": N_("Sorry, that could not be sent. Please try again."),
    "open_file": N_("Open the file"),
    "empty": N_("No messages yet."),
}


@dataclass(slots=True)
class _Entry:
    """One message of a chat's history, as the page renders it."""

    id: str
    rev: int
    sender: str  # "bot" | "me"
    text: str = ""
    buttons: list[list[dict[str, str]]] = field(default_factory=list)
    file: dict[str, str] | None = None
    deleted: bool = False

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "rev": self.rev, "from": self.sender, "text": self.text, "buttons": self.buttons,
                "file": self.file, "deleted": self.deleted}


class _History:
    """Bounded, revisioned message history of one chat."""

    def __init__(self, limit: int = HISTORY_LIMIT) -> None:
        self.entries: OrderedDict[str, _Entry] = OrderedDict()
        self.rev = 0
        self.limit = limit

    def put(self, entry: _Entry) -> _Entry:
        self.rev += 1
        entry.rev = self.rev
        self.entries[entry.id] = entry
        self.entries.move_to_end(entry.id)
        while len(self.entries) > self.limit:
            self.entries.popitem(last=False)
        return entry

    def touch(self, entry: _Entry) -> _Entry:
        """Give an edited entry a new revision (it keeps its place in the conversation)."""
        self.rev += 1
        entry.rev = self.rev
        return entry

    def since(self, rev: int) -> list[dict[str, Any]]:
        changed = [e for e in self.entries.values() if e.rev > rev]
        if rev <= 0:
            changed = [e for e in changed if not e.deleted]
        return [e.as_json() for e in changed]


@dataclass(frozen=True, slots=True)
class _FileGrant:
    path: str
    kind: str
    mime: str
    file_name: str


class WebChat:
    """The ``web`` channel: an aiohttp page + JSON API + WebSockets, and the channel adapter."""

    name = ChannelName.WEB.value

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self._histories: dict[str, _History] = {}
        self._sockets: dict[str, set[web.WebSocketResponse]] = {}
        self._files: OrderedDict[str, _FileGrant] = OrderedDict()
        self._login_failures: dict[str, deque[float]] = {}
        self._boot = secrets.token_hex(3)
        self._counter = 0
        self._static: dict[str, bytes] = {}

    # -- Channel protocol -------------------------------------------------------------------------
    def setup_routes(self, app: web.Application) -> None:
        app.router.add_get("/", self._index)
        app.router.add_get("/web/static/{name}", self._static_file)
        app.router.add_get("/web/api/strings", self._strings)
        app.router.add_post("/web/api/login", self._login)
        app.router.add_post("/web/api/logout", self._logout)
        app.router.add_get("/web/api/people", self._people)
        app.router.add_post("/web/api/open", self._open)
        app.router.add_post("/web/api/send", self._send)
        app.router.add_get("/web/api/ws", self._ws)
        app.router.add_get("/web/files/{token}", self._file)

    async def start(self) -> None:
        for name in ("index.html", *STATIC_FILES):
            self._static[name] = await asyncio.to_thread((STATIC_DIR / name).read_bytes)
        log.info("web chat ready%s", " (password protected)" if self.settings.web_chat_password else "")

    async def stop(self) -> None:
        sockets = [ws for group in self._sockets.values() for ws in group]
        self._sockets.clear()
        for ws in sockets:
            try:
                await ws.close(code=1001, message=b"server stopping")
            except Exception:  # closing is best effort
                log.debug("closing a web chat socket failed", exc_info=True)

    # -- ChannelAdapter protocol ------------------------------------------------------------------
    async def send(self, out: Outbound) -> str | None:
        self._counter += 1
        entry = _Entry(id=f"b{self._boot}-{self._counter}", rev=0, sender="bot")
        self._fill(entry, out.reply)
        self._history(out.chat_id).put(entry)
        await self._push(out.chat_id, [entry.as_json()])
        return entry.id

    async def edit(self, ref: MessageRef, reply: Reply) -> bool:
        hist = self._histories.get(ref.chat_id)
        entry = hist.entries.get(ref.message_id) if hist else None
        if hist is None or entry is None or entry.deleted:
            return False
        self._fill(entry, reply, keep_file=reply.file is None)
        hist.touch(entry)
        await self._push(ref.chat_id, [entry.as_json()])
        return True

    async def delete(self, ref: MessageRef) -> bool:
        hist = self._histories.get(ref.chat_id)
        entry = hist.entries.get(ref.message_id) if hist else None
        if hist is None or entry is None or entry.deleted:
            return False
        entry.deleted, entry.text, entry.buttons, entry.file = True, "", [], None
        hist.touch(entry)
        await self._push(ref.chat_id, [entry.as_json()])
        return True

    # -- rendering --------------------------------------------------------------------------------
    def _fill(self, entry: _Entry, reply: Reply, *, keep_file: bool = False) -> None:
        """Copy what the page shows: safe-HTML text, buttons, a file. ``ask_contact`` is not shown:
        web people are linked already."""
        entry.text = reply.text
        entry.buttons = [[{"label": b.label, "payload": b.payload} for b in row] for row in reply.buttons]
        if reply.file is not None:
            entry.file = self._grant(reply.file.path, reply.file.kind, reply.file.mime, reply.file.file_name)
        elif not keep_file:
            entry.file = None

    def _grant(self, path: str, kind: str, mime: str, file_name: str) -> dict[str, str]:
        token = secrets.token_urlsafe(24)
        name = file_name or Path(path).name
        mime = mime or mimetypes.guess_type(name)[0] or "application/octet-stream"
        self._files[token] = _FileGrant(path=path, kind=kind, mime=mime, file_name=name)
        while len(self._files) > FILE_TOKENS_LIMIT:
            self._files.popitem(last=False)
        shown = kind if kind in ("photo", "video") else "document"
        return {"kind": shown, "url": f"/web/files/{token}", "name": name, "mime": mime}

    def _history(self, chat_id: str) -> _History:
        hist = self._histories.get(chat_id)
        if hist is None:
            hist = self._histories[chat_id] = _History()
        return hist

    async def _push(self, chat_id: str, changes: list[dict[str, Any]]) -> None:
        sockets = self._sockets.get(chat_id)
        if not sockets:
            return
        rev = self._history(chat_id).rev
        for ws in list(sockets):
            if ws.closed:
                sockets.discard(ws)
                continue
            try:
                await ws.send_json({"type": "changes", "boot": self._boot, "rev": rev, "changes": changes})
            except Exception:  # a broken socket must not stop the others
                sockets.discard(ws)

    # -- request guards ---------------------------------------------------------------------------
    def _tr(self) -> Translator:
        return Translator(self.settings.default_locale, self.settings.tz)

    def _error(self, status: int, msgid: str, **values: Any) -> web.Response:
        return web.json_response({"ok": False, "error": self._tr().t(msgid, **values)}, status=status,
                                 headers=SECURITY_HEADERS)

    def _host_allowed(self, request: web.Request) -> bool:
        """Without a password only loopback host names are served (no DNS rebinding)."""
        if self.settings.web_chat_password:
            return True
        try:
            host = (urlsplit("//" + (request.host or "")).hostname or "").lower()
        except ValueError:
            return False
        if host in ("localhost", self.settings.web_host.lower()):
            return True
        if self.settings.public_base_url and host == (urlsplit(self.settings.public_base_url).hostname or ""):
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    def _origin_allowed(self, request: web.Request) -> bool:
        """The request must come from this page (``Origin`` = our own host), against CSRF."""
        origin = request.headers.get("Origin")
        if not origin:
            return False
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return False
        if parts.netloc.lower() == (request.host or "").lower():
            return True
        base = self.settings.public_base_url
        if base:
            b = urlsplit(base)
            return (parts.scheme, parts.netloc.lower()) == (b.scheme, b.netloc.lower())
        return False

    def _cookie_key(self) -> bytes:
        return hashlib.sha256(b"school-assistant/webchat\0" + self.settings.web_chat_password.encode()).digest()

    def _make_cookie(self) -> str:
        expires = int(time.time()) + COOKIE_TTL
        sig = hmac.new(self._cookie_key(), str(expires).encode(), hashlib.sha256).hexdigest()
        return f"{expires}.{sig}"

    def _authenticated(self, request: web.Request) -> bool:
        if not self.settings.web_chat_password:
            return True
        value = request.cookies.get(COOKIE, "")
        expires, _, sig = value.partition(".")
        if not (expires.isascii() and expires.isdigit()) or int(expires) < time.time():
            return False
        good = hmac.new(self._cookie_key(), expires.encode(), hashlib.sha256).hexdigest()
        return hmac.compare_digest(good, sig)

    def _guard(self, request: web.Request, *, write: bool, auth: bool = True) -> web.Response | None:
        """None if the request may go on, else the refusal to return."""
        if not self.settings.web_chat_enabled:
            raise web.HTTPNotFound()
        if not self._host_allowed(request):
            return self._error(403, N_("This address is not allowed for the web chat."))
        if write and not self._origin_allowed(request):
            return self._error(403, N_("Request refused: it did not come from the web chat page."))
        if auth and not self._authenticated(request):
            return self._error(401, N_("Please sign in first."))
        return None

    async def _json_body(self, request: web.Request) -> dict[str, Any] | web.Response:
        if request.content_length is not None and request.content_length > MAX_BODY:
            return self._error(413, N_("That request is too large."))
        if request.content_type != "application/json":
            return self._error(415, N_("Request refused: it did not come from the web chat page."))
        raw = await read_body(request, MAX_BODY + 1)
        if len(raw) > MAX_BODY:
            return self._error(413, N_("That request is too large."))
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: absurdly nested JSON
            data = None
        if not isinstance(data, dict):
            return self._error(400, N_("The request could not be read."))
        return data

    # -- pages ------------------------------------------------------------------------------------
    async def _asset(self, name: str) -> bytes:
        body = self._static.get(name)
        if body is None:  # served before start(): read it now
            body = self._static[name] = await asyncio.to_thread((STATIC_DIR / name).read_bytes)
        return body

    async def _index(self, request: web.Request) -> web.StreamResponse:
        refused = self._guard(request, write=False, auth=False)
        if refused is not None:
            return refused
        body = await self._asset("index.html")
        return web.Response(body=body, content_type="text/html", charset="utf-8", headers=SECURITY_HEADERS)

    async def _static_file(self, request: web.Request) -> web.StreamResponse:
        refused = self._guard(request, write=False, auth=False)
        if refused is not None:
            return refused
        name = request.match_info["name"]
        if name not in STATIC_FILES:
            raise web.HTTPNotFound()
        body = await self._asset(name)
        return web.Response(body=body, content_type=STATIC_FILES[name], charset="utf-8",
                            headers=SECURITY_HEADERS)

    async def _strings(self, request: web.Request) -> web.StreamResponse:
        refused = self._guard(request, write=False, auth=False)
        if refused is not None:
            return refused
        tr = self._tr()
        strings = {key: tr.t(msgid) for key, msgid in UI_STRINGS.items()}
        return web.json_response({"ok": True, "locale": tr.locale, "strings": strings,
                                  "password": bool(self.settings.web_chat_password),
                                  "authenticated": self._authenticated(request)}, headers=SECURITY_HEADERS)

    # -- login ------------------------------------------------------------------------------------
    async def _login(self, request: web.Request) -> web.StreamResponse:
        refused = self._guard(request, write=True, auth=False)
        if refused is not None:
            return refused
        body = await self._json_body(request)
        if isinstance(body, web.Response):
            return body
        if not self.settings.web_chat_password:
            return web.json_response({"ok": True}, headers=SECURITY_HEADERS)
        ip = request.remote or "?"
        now = time.monotonic()
        fails = self._login_failures.setdefault(ip, deque())
        while fails and fails[0] < now - LOGIN_WINDOW:
            fails.popleft()
        if len(fails) >= LOGIN_MAX_FAILURES:
            return self._error(429, UI_STRINGS["too_many"])
        given = str(body.get("password", ""))
        if not hmac.compare_digest(given.encode(), self.settings.web_chat_password.encode()):
            fails.append(now)
            if len(self._login_failures) > 10_000:  # bounded memory
                self._login_failures.clear()
            log.warning("web chat: wrong password from %s", ip)
            return self._error(401, UI_STRINGS["bad_password"])
        fails.clear()
        resp = web.json_response({"ok": True}, headers=SECURITY_HEADERS)
        secure = request.secure or self.settings.public_base_url.startswith("https://")
        resp.set_cookie(COOKIE, self._make_cookie(), max_age=COOKIE_TTL, path="/", httponly=True,
                        samesite="Strict", secure=secure)
        return resp

    async def _logout(self, request: web.Request) -> web.StreamResponse:
        refused = self._guard(request, write=True, auth=False)
        if refused is not None:
            return refused
        resp = web.json_response({"ok": True}, headers=SECURITY_HEADERS)
        resp.del_cookie(COOKIE, path="/")
        return resp

    # -- people and chats -------------------------------------------------------------------------
    async def _people(self, request: web.Request) -> web.StreamResponse:
        refused = self._guard(request, write=False)
        if refused is not None:
            return refused
        tr = self._tr()

        def load(s: Session) -> list[dict[str, Any]]:
            schools = s.exec(select(School).order_by(col(School.name))).all()
            out = []
            for school in schools:
                people = s.exec(select(Person).where(Person.school_id == school.id,
                                                     Person.status == PersonStatus.ACTIVE)
                                .order_by(col(Person.id))).all()
                if people:
                    out.append({"id": school.id, "name": school.name,
                                "people": [self._person_json(p, tr) for p in people]})
            return out

        schools = await self.runtime.db.run(load)
        return web.json_response({"ok": True, "schools": schools}, headers=SECURITY_HEADERS)

    @staticmethod
    def _person_json(p: Person, tr: Translator) -> dict[str, Any]:
        titles = []
        for r in p.roles:
            try:
                titles.append(tr.t(ROLE_TITLES[Role(r)]))
            except (ValueError, KeyError):
                continue
        return {"id": p.id, "name": p.full_name, "roles": titles, "unit": p.unit}

    def _person_id(self, value: Any) -> int | None:
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            return value if value > 0 else None
        if isinstance(value, str) and parse_id(value) is not None:
            return int(value)
        return None

    async def _ensure_linked(self, person_id: int) -> tuple[dict[str, Any] | None, bool]:
        """Link the person on the web channel; (person json or None if not active, newly linked)."""
        chat = f"p{person_id}"
        tr = self._tr()
        now = self.runtime.services.clock.now()

        def go(s: Session) -> tuple[dict[str, Any] | None, bool]:
            person = s.get(Person, person_id)
            if person is None or person.status != PersonStatus.ACTIVE:
                return None, False
            ident = s.exec(select(ChannelIdentity).where(ChannelIdentity.channel == self.name,
                                                         ChannelIdentity.external_id == chat)).first()
            fresh = ident is None or not ident.active or ident.person_id != person.id
            if fresh:
                link_identity(s, person=person, channel=self.name, external_id=chat, chat_id=chat,
                              display_name=person.full_name, now=now)
            return self._person_json(person, tr), fresh

        return await self.runtime.db.run(go)

    async def _open(self, request: web.Request) -> web.StreamResponse:
        refused = self._guard(request, write=True)
        if refused is not None:
            return refused
        body = await self._json_body(request)
        if isinstance(body, web.Response):
            return body
        person_id = self._person_id(body.get("person_id"))
        if person_id is None:
            return self._error(400, N_("The request could not be read."))
        person, fresh = await self._ensure_linked(person_id)
        if person is None:
            return self._error(404, N_("This person is not (or no longer) active at the school."))
        chat = f"p{person_id}"
        hist = self._history(chat)
        event_id = body.get("event_id")
        if not hist.entries and isinstance(event_id, str) and _EVENT_ID.match(event_id):
            # A first visit greets (and shows the menu); later ones just show the menu.
            await self._dispatch(chat, person, event_id, {"text": "/start" if fresh else "/menu"}, echo=False)
        return web.json_response({"ok": True, "person": person, "boot": self._boot, "rev": hist.rev,
                                  "changes": hist.since(0)},
                                 headers=SECURITY_HEADERS)

    def _inbound(self, chat: str, person: dict[str, Any], event_id: str, body: dict[str, Any]) -> Inbound | None:
        common: dict[str, Any] = {"channel": self.name, "user_id": chat, "chat_id": chat,
                                  "update_key": f"{chat}:{event_id}", "display_name": person["name"],
                                  "at": self.runtime.services.clock.now()}
        payload = body.get("payload")
        if isinstance(payload, str) and payload:
            payload = sanitize_line(payload)  # before measuring: a lone surrogate cannot be encoded
            if not payload or len(payload.encode()) > 64:
                return None
            return Inbound(payload=payload, **common)
        text = body.get("text")
        if not isinstance(text, str):
            return None
        text = sanitize(text).strip()  # before reading a command: "/lich\x00" is /lich
        if not text:
            return None
        m = _COMMAND.match(text)
        if m:
            return Inbound(command=m.group(1).lower(), args=(m.group(2) or "").strip(), **common)
        return Inbound(text=text, **common)

    async def _dispatch(self, chat: str, person: dict[str, Any], event_id: str, body: dict[str, Any], *,
                        echo: bool = True) -> str | None:
        """Hand one browser event to the core; None if done, else the error msgid."""
        if not _EVENT_ID.match(event_id):
            return N_("The request could not be read.")
        msg = self._inbound(chat, person, event_id, body)
        if msg is None:
            return N_("The request could not be read.")
        hist = self._history(chat)
        echo_id = f"u-{event_id}"
        if echo and echo_id not in hist.entries:
            label = body.get("label") if msg.payload else str(body.get("text", ""))
            label = sanitize(label).strip() if isinstance(label, str) else None
            if label:
                entry = hist.put(_Entry(id=echo_id, rev=0, sender="me", text=label[:4000]))
                await self._push(chat, [entry.as_json()])
        try:
            await self.runtime.dispatcher.handle(msg)
        except Exception:  # the core answers its own failures; this is the last guard
            log.exception("web chat event failed")
            return UI_STRINGS["error"]
        return None

    async def _send(self, request: web.Request) -> web.StreamResponse:
        refused = self._guard(request, write=True)
        if refused is not None:
            return refused
        body = await self._json_body(request)
        if isinstance(body, web.Response):
            return body
        person_id = self._person_id(body.get("person_id"))
        event_id = body.get("event_id")
        if person_id is None or not isinstance(event_id, str) or not _EVENT_ID.match(event_id):
            return self._error(400, N_("The request could not be read."))  # refused before anything is written
        person, _fresh = await self._ensure_linked(person_id)
        if person is None:
            return self._error(404, N_("This person is not (or no longer) active at the school."))
        chat = f"p{person_id}"
        problem = await self._dispatch(chat, person, event_id, body)
        if problem is not None:
            return self._error(400, problem)
        since = body.get("since")
        hist = self._history(chat)
        changes = hist.since(since if isinstance(since, int) and not isinstance(since, bool) else 0)
        return web.json_response({"ok": True, "boot": self._boot, "rev": hist.rev, "changes": changes}, headers=SECURITY_HEADERS)

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        refused = self._guard(request, write=True)
        if refused is not None:
            return refused
        person_id = self._person_id(request.query.get("person_id"))
        if person_id is None:
            return self._error(400, N_("The request could not be read."))
        person, _fresh = await self._ensure_linked(person_id)
        if person is None:
            return self._error(404, N_("This person is not (or no longer) active at the school."))
        chat = f"p{person_id}"
        ws = web.WebSocketResponse(heartbeat=30, max_msg_size=MAX_BODY)
        await ws.prepare(request)
        self._sockets.setdefault(chat, set()).add(ws)
        tr = self._tr()
        try:
            async for frame in ws:
                if frame.type != WSMsgType.TEXT:
                    if frame.type == WSMsgType.ERROR:
                        break
                    continue
                try:
                    data = json.loads(frame.data)
                except ValueError:
                    data = None
                if not isinstance(data, dict):
                    await ws.send_json({"type": "error", "error": tr.t(N_("The request could not be read."))})
                    continue
                if data.get("type") == "sync":
                    since = data.get("since")
                    hist = self._history(chat)
                    await ws.send_json({"type": "changes", "boot": self._boot, "rev": hist.rev, "changes": hist.since(
                        since if isinstance(since, int) and not isinstance(since, bool) else 0)})
                elif data.get("type") == "event" and isinstance(data.get("event_id"), str):
                    problem = await self._dispatch(chat, person, data["event_id"], data)
                    if problem is not None:
                        await ws.send_json({"type": "error", "error": tr.t(problem)})
                else:
                    await ws.send_json({"type": "error", "error": tr.t(N_("The request could not be read."))})
        finally:
            group = self._sockets.get(chat)
            if group is not None:
                group.discard(ws)
                if not group:
                    self._sockets.pop(chat, None)
        return ws

    async def _file(self, request: web.Request) -> web.StreamResponse:
        refused = self._guard(request, write=False)
        if refused is not None:
            return refused
        grant = self._files.get(request.match_info["token"])
        if grant is None or not await asyncio.to_thread(os.path.isfile, grant.path):
            raise web.HTTPNotFound()
        headers = dict(SECURITY_HEADERS)
        headers["Content-Type"] = grant.mime
        disposition = "inline" if grant.kind in ("photo", "video") else "attachment"
        safe_name = re.sub(r"[^A-Za-z0-9._-]", "_", grant.file_name) or "file"
        headers["Content-Disposition"] = f'{disposition}; filename="{safe_name}"'
        return web.FileResponse(grant.path, headers=headers)


__all__ = ["WebChat", "UI_STRINGS", "MAX_BODY", "HISTORY_LIMIT"]
