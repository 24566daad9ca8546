"""A fake Telegram Bot API server for end-to-end tests.

It speaks the HTTP surface python-telegram-bot v22 uses (``/bot<token>/<method>`` and file
downloads under ``/file/bot<token>/<path>``) on 127.0.0.1, on a random port:

* **updates**: tests queue updates with :meth:`FakeTelegram.push_update` (builders below make
  messages, commands, contacts, callback queries and media with unique ``update_id``\\ s);
  ``getUpdates`` honours ``offset`` (confirmation) and long-poll ``timeout``; when a webhook is set
  the update is POSTed to it instead, with the secret token header, like Telegram does.
* **what the bot did**: every call is recorded (:attr:`FakeTelegram.calls`); every chat keeps its
  history (user and bot messages share the chat's message-id counter); uploads keep their bytes
  (``msg.file.sha256``); HTML texts are checked like Telegram does (unsupported or unbalanced tags
  and over-long texts are refused with the real error descriptions), so escaping bugs fail tests.
* **faults**: :meth:`fail_next` / :meth:`rate_limit` (429 with ``retry_after``) / :meth:`block`.

Waiting is done on the recorded state (``await fake.wait_for(predicate, timeout)``), never by
sleeping."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import html
import itertools
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import ClientSession, ClientTimeout, web

DEFAULT_TOKEN = "123456789:TEST-fake-token_for-e2e-tests-only"
MAX_DOWNLOAD = 20 * 1024 * 1024

# Parameters that are plain strings in the Bot API: never JSON-decoded (PTB sends other values
# JSON-encoded, strings as they are).
_STRING_FIELDS = frozenset({
    "text", "caption", "parse_mode", "callback_query_id", "secret_token", "url", "file_id",
    "language_code", "ip_address", "file_name", "business_connection_id", "message_effect_id",
    "inline_message_id", "description", "short_description", "name", "title", "emoji",
})
_SUPPORTED_TAGS = frozenset({"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "a", "code", "pre",
                             "tg-spoiler", "span", "blockquote", "tg-emoji"})
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9-]*)((?:\s+[^<>]*)?)\s*>")
_ENTITY = re.compile(r"&(lt|gt|amp|quot|#\d{1,7}|#x[0-9A-Fa-f]{1,6});")
_COMMAND = re.compile(r"^[a-z0-9_]{1,32}$")
_SECRET = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_MEDIA_METHODS = {"sendphoto": "photo", "sendvideo": "video", "senddocument": "document",
                  "sendaudio": "audio", "sendvoice": "voice", "sendanimation": "animation",
                  "sendvideonote": "video_note"}


class BotApiError(Exception):
    """An error answer of the fake (``ok: false``) with the status code Telegram would use."""

    def __init__(self, code: int, description: str, parameters: dict[str, Any] | None = None) -> None:
        super().__init__(description)
        self.code, self.description, self.parameters = code, description, parameters


def utf16_len(text: str) -> int:
    """Length as Telegram counts it (UTF-16 code units)."""
    return len(text.encode("utf-16-le")) // 2


def parse_html(text: str) -> str:
    """Check Telegram-HTML like the Bot API does and return the plain text (tags removed).

    Raises :class:`BotApiError` with Telegram's wording for unsupported or unbalanced tags and
    unknown entities."""
    out: list[str] = []
    stack: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "<":
            m = _TAG.match(text, i)
            if not m:
                raise BotApiError(400, f"Bad Request: can't parse entities: Unclosed start tag at byte offset {i}")
            closing, name = m.group(1) == "/", m.group(2).lower()
            if name not in _SUPPORTED_TAGS:
                kind = "end" if closing else "start"
                raise BotApiError(400, f'Bad Request: can\'t parse entities: Unsupported {kind} tag "{name}" '
                                       f"at byte offset {i}")
            if closing:
                if not stack or stack[-1] != name:
                    raise BotApiError(400, f"Bad Request: can't parse entities: Unmatched end tag at byte offset "
                                           f"{i}, expected \"</{stack[-1] if stack else ''}>\", found \"</{name}>\"")
                stack.pop()
            else:
                stack.append(name)
            i = m.end()
            continue
        if ch == "&":
            m = _ENTITY.match(text, i)
            if m:
                out.append(html.unescape(m.group(0)))
                i = m.end()
                continue
            if re.match(r"&[A-Za-z]+;", text[i:]):
                raise BotApiError(400, f"Bad Request: can't parse entities: Unsupported HTML entity at byte "
                                       f"offset {i}")
        out.append(ch)
        i += 1
    if stack:
        raise BotApiError(400, f'Bad Request: can\'t parse entities: Can\'t find end tag corresponding to start '
                               f'tag "{stack[-1]}"')
    return "".join(out)


@dataclass
class StoredFile:
    """A file the fake knows: uploaded by the bot or registered by a test for a user message."""

    file_id: str
    file_unique_id: str
    file_path: str
    data: bytes | None
    file_size: int
    mime_type: str = ""
    file_name: str = ""

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data or b"").hexdigest()


@dataclass
class ApiCall:
    method: str  # as PTB spelled it (``sendMessage``)
    params: dict[str, Any]
    files: dict[str, StoredFile] = field(default_factory=dict)
    status: int = 200
    at: float = field(default_factory=time.monotonic)
    content_type: str = ""  # of the request body (JSON, form or multipart)


@dataclass
class ChatMessage:
    """One message of a chat's history (from the user or from the bot)."""

    chat_id: int
    message_id: int
    from_bot: bool
    method: str  # sendMessage, sendPhoto, ... or "update" for a user's message
    text: str  # plain text (HTML parsed) or caption
    html: str = ""  # the text/caption exactly as the bot sent it
    parse_mode: str | None = None
    reply_markup: dict[str, Any] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    media_kind: str | None = None
    file: StoredFile | None = None
    deleted: bool = False
    edits: list[dict[str, Any]] = field(default_factory=list)
    date: int = field(default_factory=lambda: int(time.time()))

    @property
    def inline_buttons(self) -> list[list[dict[str, Any]]]:
        if not self.reply_markup:
            return []
        return list(self.reply_markup.get("inline_keyboard") or [])

    @property
    def protected(self) -> bool:
        return bool(self.params.get("protect_content"))


@dataclass
class _Fault:
    method: str
    code: int
    description: str
    parameters: dict[str, Any] | None
    times: int
    chat_id: int | None = None


@dataclass
class _Queued:
    update: dict[str, Any]
    redeliver: bool = False


class FakeTelegram:
    """The fake Bot API. ``async with FakeTelegram() as fake:`` or ``await fake.start()``."""

    def __init__(self, token: str = DEFAULT_TOKEN, *, bot_username: str = "truong_hoc_test_bot",
                 max_download: int = MAX_DOWNLOAD) -> None:
        self.token = token
        self.bot_id = int(token.split(":", 1)[0])
        self.bot_username = bot_username
        self.max_download = max_download
        self.calls: list[ApiCall] = []
        self.chats: dict[int, list[ChatMessage]] = {}
        self.files: dict[str, StoredFile] = {}
        self.commands: dict[tuple[str, str], list[dict[str, str]]] = {}
        self.webhook: dict[str, Any] = {}
        self.webhook_statuses: list[tuple[int, int]] = []  # (update_id, HTTP status)
        self.delivered: list[int] = []  # update ids handed out by getUpdates or the webhook
        self.blocked: set[int] = set()
        self.users: dict[int, dict[str, Any]] = {}
        self.callback_ids: set[str] = set()
        self._queue: list[_Queued] = []
        self._faults: list[_Fault] = []
        self._msg_ids: dict[int, itertools.count[int]] = {}
        self._update_ids = itertools.count(10_001)
        self._file_ids = itertools.count(1)
        self._cb_ids = itertools.count(1)
        self._allowed: list[str] = []
        self._changed = asyncio.Event()
        self._closing = False
        self._runner: web.AppRunner | None = None
        self._client: ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> FakeTelegram:
        app = web.Application(client_max_size=120 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._download)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = getattr(site, "_server", None)
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._client = ClientSession(timeout=ClientTimeout(total=30))
        return self

    async def stop(self) -> None:
        self._closing = True
        self._bump()
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self._client is not None:
            await self._client.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> FakeTelegram:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        """For ``TELEGRAM_BASE_URL`` (PTB appends the token)."""
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def base_file_url(self) -> str:
        """For ``TELEGRAM_BASE_FILE_URL``."""
        return f"http://127.0.0.1:{self.port}/file/bot"

    # -- waiting --------------------------------------------------------------------------------
    def _bump(self) -> None:
        ev, self._changed = self._changed, asyncio.Event()
        ev.set()

    async def wait_until(self, check: Callable[[], Any], timeout: float = 5.0,  # noqa: ASYNC109
                         what: str = "condition") -> Any:
        """Wait until ``check()`` returns something truthy (re-checked on every change); return it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            result = check()
            if result:
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"fake Telegram: timed out after {timeout}s waiting for {what}")
            ev = self._changed
            with contextlib.suppress(TimeoutError):
                # a short cap also re-checks state changed by others (e.g. the bot's own database)
                await asyncio.wait_for(ev.wait(), min(remaining, 0.05))

    async def wait_for(self, predicate: Callable[[ChatMessage], bool], timeout: float = 5.0, *,  # noqa: ASYNC109
                       chat_id: int | str | None = None, after: int = 0) -> ChatMessage:
        """The first bot message (optionally in ``chat_id``, with id > ``after``) matching ``predicate``."""
        def check() -> ChatMessage | None:
            chats = [int(chat_id)] if chat_id is not None else list(self.chats)
            for cid in chats:
                for m in self.chats.get(cid, []):
                    if m.from_bot and m.message_id > after and predicate(m):
                        return m
            return None
        return await self.wait_until(check, timeout, "a matching bot message")  # type: ignore[no-any-return]

    async def wait_for_call(self, method: str, predicate: Callable[[ApiCall], bool] | None = None,
                            timeout: float = 5.0, *, since: int = 0) -> ApiCall:  # noqa: ASYNC109
        """The first recorded call of ``method`` (index ≥ ``since``) matching ``predicate``."""
        low = method.lower()

        def check() -> ApiCall | None:
            for c in self.calls[since:]:
                if c.method.lower() == low and (predicate is None or predicate(c)):
                    return c
            return None
        return await self.wait_until(check, timeout, f"a call to {method}")  # type: ignore[no-any-return]

    # -- inspection -----------------------------------------------------------------------------
    def calls_to(self, method: str) -> list[ApiCall]:
        low = method.lower()
        return [c for c in self.calls if c.method.lower() == low]

    def history(self, chat_id: int | str) -> list[ChatMessage]:
        return list(self.chats.get(int(chat_id), []))

    def bot_messages(self, chat_id: int | str, *, include_deleted: bool = False) -> list[ChatMessage]:
        return [m for m in self.chats.get(int(chat_id), [])
                if m.from_bot and (include_deleted or not m.deleted)]

    def last(self, chat_id: int | str) -> ChatMessage | None:
        msgs = self.bot_messages(chat_id)
        return msgs[-1] if msgs else None

    def message(self, chat_id: int | str, message_id: int | str) -> ChatMessage | None:
        for m in self.chats.get(int(chat_id), []):
            if m.message_id == int(message_id):
                return m
        return None

    def last_message_id(self, chat_id: int | str) -> int:
        h = self.chats.get(int(chat_id), [])
        return h[-1].message_id if h else 0

    @property
    def pending_updates(self) -> int:
        return len(self._queue)

    # -- faults ---------------------------------------------------------------------------------
    def fail_next(self, method: str, *, error_code: int = 400, description: str = "Bad Request: injected",
                  parameters: dict[str, Any] | None = None, times: int = 1, chat_id: int | str | None = None) -> None:
        """The next ``times`` calls of ``method`` (optionally only to ``chat_id``) fail like this."""
        self._faults.append(_Fault(method.lower(), error_code, description, parameters, times,
                                   int(chat_id) if chat_id is not None else None))

    def rate_limit(self, method: str, *, retry_after: int = 1, times: int = 1) -> None:
        """Answer the next ``times`` calls of ``method`` with 429 Too Many Requests."""
        self.fail_next(method, error_code=429, description=f"Too Many Requests: retry after {retry_after}",
                       parameters={"retry_after": retry_after}, times=times)

    def block(self, chat_id: int | str) -> None:
        """The user blocked the bot: sending to them fails with 403 Forbidden."""
        self.blocked.add(int(chat_id))

    # -- building and queueing updates ----------------------------------------------------------
    def user(self, user_id: int | str, *, first_name: str | None = None, last_name: str = "",
             username: str | None = None, language_code: str = "vi") -> dict[str, Any]:
        uid = int(user_id)
        if uid not in self.users or first_name is not None:
            u: dict[str, Any] = {"id": uid, "is_bot": False, "first_name": first_name or f"Người dùng {uid}",
                                 "language_code": language_code}
            if last_name:
                u["last_name"] = last_name
            if username:
                u["username"] = username
            self.users[uid] = u
        return dict(self.users[uid])

    def _next_msg_id(self, chat_id: int) -> int:
        return next(self._msg_ids.setdefault(chat_id, itertools.count(1)))

    def _chat(self, chat_id: int) -> dict[str, Any]:
        u = self.users.get(chat_id) or self.user(chat_id)
        return {"id": chat_id, "type": "private", "first_name": u["first_name"]}

    def message_update(self, user_id: int | str, *, chat_id: int | str | None = None, record: bool = True,
                       chat_type: str = "private", **fields: Any) -> dict[str, Any]:
        """A ``message`` update from ``user_id`` with the given Message fields (text, contact, photo, ...).

        ``chat_type="group"`` (with a negative ``chat_id``) makes it a message in a group."""
        uid = int(user_id)
        cid = int(chat_id) if chat_id is not None else uid
        frm = self.user(uid)
        mid = self._next_msg_id(cid)
        chat = self._chat(cid) if chat_type == "private" else {"id": cid, "type": chat_type, "title": "Nhóm"}
        msg: dict[str, Any] = {"message_id": mid, "date": int(time.time()), "chat": chat, "from": frm}
        msg.update(fields)
        if record:
            text = msg.get("text") or msg.get("caption") or ""
            self.chats.setdefault(cid, []).append(ChatMessage(cid, mid, False, "update", text, params=msg))
        return {"update_id": next(self._update_ids), "message": msg}

    def text_update(self, user_id: int | str, text: str, **kw: Any) -> dict[str, Any]:
        return self.message_update(user_id, text=text, **kw)

    def command_update(self, user_id: int | str, command: str, args: str = "", *, mention: bool = False,
                       **kw: Any) -> dict[str, Any]:
        """``/command args`` with the ``bot_command`` entity Telegram adds (``@botname`` if ``mention``)."""
        head = f"/{command}" + (f"@{self.bot_username}" if mention else "")
        text = head + (f" {args}" if args else "")
        return self.message_update(user_id, text=text,
                                   entities=[{"type": "bot_command", "offset": 0, "length": utf16_len(head)}],
                                   **kw)

    def contact_update(self, user_id: int | str, phone: str, *, owner_id: int | str | None | bool = True,
                       first_name: str = "Liên hệ", forwarded_from: int | str | None = None,
                       **kw: Any) -> dict[str, Any]:
        """A shared contact. ``owner_id=True``: the sender's own (one-tap button); ``None``: a contact
        without a Telegram account; ``forwarded_from``: the message is a forward from that user."""
        contact: dict[str, Any] = {"phone_number": phone, "first_name": first_name}
        if owner_id is True:
            contact["user_id"] = int(user_id)
        elif owner_id not in (None, False):
            contact["user_id"] = int(owner_id)  # type: ignore[arg-type]
        fields: dict[str, Any] = {"contact": contact}
        if forwarded_from is not None:
            fields["forward_origin"] = {"type": "user", "date": int(time.time()) - 60,
                                        "sender_user": self.user(forwarded_from)}
        return self.message_update(user_id, **fields, **kw)

    def location_update(self, user_id: int | str, latitude: float, longitude: float, **kw: Any) -> dict[str, Any]:
        return self.message_update(user_id, location={"latitude": latitude, "longitude": longitude}, **kw)

    def callback_update(self, user_id: int | str, data: str, *, message_id: int | str | None = None,
                        chat_id: int | str | None = None) -> dict[str, Any]:
        """A tap on an inline button of bot message ``message_id`` (default: the chat's last bot message)."""
        uid = int(user_id)
        cid = int(chat_id) if chat_id is not None else uid
        if message_id is None:
            last = self.last(cid)
            if last is None:
                raise ValueError(f"no bot message in chat {cid} to tap on")
            message_id = last.message_id
        target = self.message(cid, message_id)
        msg: dict[str, Any] = {"message_id": int(message_id), "date": target.date if target else int(time.time()),
                               "chat": self._chat(cid), "from": self._bot_user()}
        if target is not None:
            if target.media_kind:
                msg["caption"] = target.text
            else:
                msg["text"] = target.text
            if target.reply_markup and "inline_keyboard" in target.reply_markup:
                msg["reply_markup"] = target.reply_markup
        else:
            msg["text"] = ""
        qid = f"cbq{next(self._cb_ids)}"
        self.callback_ids.add(qid)
        return {"update_id": next(self._update_ids),
                "callback_query": {"id": qid, "from": self.user(uid), "chat_instance": f"ci{cid}",
                                   "message": msg, "data": data}}

    def register_file(self, data: bytes | None, *, file_size: int | None = None, mime_type: str = "",
                      file_name: str = "", ext: str = ".bin") -> StoredFile:
        """A file users can send: downloadable bytes, or only a claimed ``file_size`` (e.g. 25 MB)."""
        n = next(self._file_ids)
        fid = f"FILE{n:06d}-{hashlib.sha1(str(n).encode()).hexdigest()[:12]}"
        size = file_size if file_size is not None else len(data or b"")
        f = StoredFile(fid, f"U{n:06d}", f"documents/file_{n}{ext}", data, size, mime_type, file_name)
        self.files[fid] = f
        return f

    def media_update(self, user_id: int | str, kind: str, data: bytes | None = None, *,
                     file_size: int | None = None, caption: str | None = None, mime_type: str = "",
                     file_name: str = "", **kw: Any) -> dict[str, Any]:
        """A photo / video / voice / audio / document / video_note message backed by a registered file."""
        ext = {"photo": ".jpg", "video": ".mp4", "voice": ".ogg", "audio": ".mp3", "video_note": ".mp4"}.get(
            kind, "." + file_name.rsplit(".", 1)[-1] if "." in file_name else ".bin")
        default_mime = {"video": "video/mp4", "voice": "audio/ogg", "audio": "audio/mpeg",
                        "video_note": "video/mp4"}.get(kind, "")
        f = self.register_file(data, file_size=file_size, mime_type=mime_type or default_mime,
                               file_name=file_name, ext=ext)
        base = {"file_id": f.file_id, "file_unique_id": f.file_unique_id, "file_size": f.file_size}
        fields: dict[str, Any] = {}
        if kind == "photo":
            thumb = self.register_file(b"thumb", ext=".jpg")
            fields["photo"] = [
                {"file_id": thumb.file_id, "file_unique_id": thumb.file_unique_id, "file_size": 5,
                 "width": 90, "height": 67},
                {**base, "width": 1280, "height": 960},
            ]
        elif kind in ("video", "video_note"):
            extra = {"length": 240, "duration": 5} if kind == "video_note" else {
                "width": 1280, "height": 720, "duration": 5, "mime_type": f.mime_type}
            fields[kind] = {**base, **extra}
        elif kind in ("voice", "audio"):
            fields[kind] = {**base, "duration": 3, "mime_type": f.mime_type}
        else:
            fields[kind] = {**base, "file_name": file_name or "tep.bin", "mime_type": mime_type or
                            "application/octet-stream"}
        if caption is not None:
            fields["caption"] = caption
        return self.message_update(user_id, **fields, **kw)

    def push_update(self, update: dict[str, Any], *, redeliver: bool = False) -> dict[str, Any]:
        """Queue an update for the bot (or POST it to the webhook when one is set).

        ``redeliver=True`` hands it out even if its id was already confirmed, like Telegram does when
        the bot died before confirming an offset."""
        if self.webhook.get("url"):
            task = asyncio.get_running_loop().create_task(self._deliver_webhook(update))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            self._queue.append(_Queued(update, redeliver))
        self._bump()
        return update

    async def _deliver_webhook(self, update: dict[str, Any]) -> None:
        assert self._client is not None
        headers = {"Content-Type": "application/json"}
        if self.webhook.get("secret_token"):
            headers["X-Telegram-Bot-Api-Secret-Token"] = self.webhook["secret_token"]
        try:
            async with self._client.post(self.webhook["url"], data=json.dumps(update), headers=headers) as resp:
                status = resp.status
        except Exception:  # connection refused etc.: Telegram would retry later
            status = 0
        self.webhook_statuses.append((update["update_id"], status))
        if status == 200:
            self.delivered.append(update["update_id"])
        self._bump()

    # -- HTTP: the API ----------------------------------------------------------------------------
    def _bot_user(self) -> dict[str, Any]:
        return {"id": self.bot_id, "is_bot": True, "first_name": "Trợ lý nhà trường", "username": self.bot_username}

    async def _params(self, request: web.Request) -> tuple[dict[str, Any], dict[str, StoredFile]]:
        params: dict[str, Any] = {}
        files: dict[str, StoredFile] = {}
        raw: dict[str, Any] = dict(request.query)
        ctype = request.content_type
        if ctype == "application/json":
            body = await request.json()
            params.update(body if isinstance(body, dict) else {})
        elif request.method == "POST":
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, web.FileField):
                    data = value.file.read()
                    n = next(self._file_ids)
                    f = StoredFile(f"UP{n:06d}-{hashlib.sha1(data).hexdigest()[:12]}", f"UU{n:06d}",
                                   f"uploads/{n}_{value.filename or key}", data, len(data),
                                   value.content_type or "", value.filename or "")
                    files[key] = f
                else:
                    raw[key] = value
        for key, value in raw.items():
            if key in _STRING_FIELDS or not isinstance(value, str):
                params[key] = value
                continue
            try:
                params[key] = json.loads(value)
            except ValueError:
                params[key] = value
        return params, files

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if request.match_info["token"] != self.token:
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        try:
            params, files = await self._params(request)
        except Exception:
            return web.json_response({"ok": False, "error_code": 400, "description": "Bad Request: bad body"},
                                     status=400)
        call = ApiCall(method, params, files, content_type=request.content_type if request.body_exists else "")
        self.calls.append(call)
        self._bump()
        try:
            self._inject(method.lower(), params)
            handler = getattr(self, f"_m_{method.lower()}", None)
            if handler is None:
                raise BotApiError(404, "Not Found: method not found")
            result = handler(params, files)
            if asyncio.iscoroutine(result):
                result = await result
        except BotApiError as exc:
            call.status = exc.code
            body: dict[str, Any] = {"ok": False, "error_code": exc.code, "description": exc.description}
            if exc.parameters:
                body["parameters"] = exc.parameters
            self._bump()
            return web.json_response(body, status=exc.code)
        self._bump()
        return web.json_response({"ok": True, "result": result})

    def _inject(self, method: str, params: dict[str, Any]) -> None:
        chat = params.get("chat_id")
        for f in self._faults:
            if f.times > 0 and f.method == method and (f.chat_id is None or f.chat_id == _int(chat)):
                f.times -= 1
                raise BotApiError(f.code, f.description, f.parameters)
        if method.startswith(("send", "edit", "copy", "forward")) and _int(chat) in self.blocked:
            raise BotApiError(403, "Forbidden: bot was blocked by the user")

    async def _download(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return web.Response(status=401)
        path = request.match_info["path"]
        for f in self.files.values():
            if f.file_path == path and f.data is not None:
                return web.Response(body=f.data, content_type=f.mime_type or "application/octet-stream")
        return web.Response(status=404)

    # -- methods ------------------------------------------------------------------------------------
    def _m_getme(self, _p: dict[str, Any], _f: dict[str, StoredFile]) -> dict[str, Any]:
        return {**self._bot_user(), "can_join_groups": False, "can_read_all_group_messages": False,
                "supports_inline_queries": False, "can_connect_to_business": False, "has_main_web_app": False}

    def _m_logout(self, _p: dict[str, Any], _f: dict[str, StoredFile]) -> bool:
        return True

    _m_close = _m_logout

    async def _m_getupdates(self, p: dict[str, Any], _f: dict[str, StoredFile]) -> list[dict[str, Any]]:
        if self.webhook.get("url"):
            raise BotApiError(409, "Conflict: can't use getUpdates method while webhook is active; use "
                                   "deleteWebhook to delete the webhook first")
        offset = _int(p.get("offset")) or 0
        limit = min(max(_int(p.get("limit")) or 100, 1), 100)
        timeout = float(p.get("timeout") or 0)
        if p.get("allowed_updates") is not None:
            self._allowed = list(p["allowed_updates"])
        if offset:
            self._queue = [q for q in self._queue if q.redeliver or q.update["update_id"] >= offset]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._queue and not self._closing:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            ev = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ev.wait(), remaining)
        out = []
        for q in list(self._queue):
            if self._allowed and not any(k in self._allowed for k in q.update if k != "update_id"):
                self._queue.remove(q)
                continue
            out.append(q.update)
            q.redeliver = False
            if len(out) >= limit:
                break
        self.delivered.extend(u["update_id"] for u in out)
        return out

    def _m_setwebhook(self, p: dict[str, Any], _f: dict[str, StoredFile]) -> bool:
        url = str(p.get("url") or "")
        secret = p.get("secret_token")
        if secret is not None and not _SECRET.match(str(secret)):
            raise BotApiError(400, "Bad Request: secret token contains unallowed characters")
        if p.get("drop_pending_updates"):
            self._queue.clear()
        self.webhook = {"url": url, "secret_token": secret, "allowed_updates": p.get("allowed_updates")} if url else {}
        return True

    def _m_deletewebhook(self, p: dict[str, Any], _f: dict[str, StoredFile]) -> bool:
        if p.get("drop_pending_updates"):
            self._queue.clear()
        self.webhook = {}
        return True

    def _m_getwebhookinfo(self, _p: dict[str, Any], _f: dict[str, StoredFile]) -> dict[str, Any]:
        return {"url": self.webhook.get("url", ""), "has_custom_certificate": False,
                "pending_update_count": len(self._queue), "max_connections": 40}

    def _m_setmycommands(self, p: dict[str, Any], _f: dict[str, StoredFile]) -> bool:
        cmds = p.get("commands")
        if not isinstance(cmds, list) or len(cmds) > 100:
            raise BotApiError(400, "Bad Request: commands must be a list of at most 100 commands")
        for c in cmds:
            if not _COMMAND.match(str(c.get("command", ""))):
                raise BotApiError(400, "Bad Request: BOT_COMMAND_INVALID")
            if not 1 <= len(str(c.get("description", ""))) <= 256:
                raise BotApiError(400, "Bad Request: BOT_COMMAND_DESCRIPTION_INVALID")
        self.commands[(json.dumps(p.get("scope") or {"type": "default"}), p.get("language_code") or "")] = cmds
        return True

    def _m_getmycommands(self, p: dict[str, Any], _f: dict[str, StoredFile]) -> list[dict[str, str]]:
        return self.commands.get((json.dumps(p.get("scope") or {"type": "default"}), p.get("language_code") or ""),
                                 [])

    def _m_deletemycommands(self, p: dict[str, Any], _f: dict[str, StoredFile]) -> bool:
        self.commands.pop((json.dumps(p.get("scope") or {"type": "default"}), p.get("language_code") or ""), None)
        return True

    def _m_sendchataction(self, _p: dict[str, Any], _f: dict[str, StoredFile]) -> bool:
        return True

    def _m_answercallbackquery(self, p: dict[str, Any], _f: dict[str, StoredFile]) -> bool:
        if str(p.get("callback_query_id")) not in self.callback_ids:
            raise BotApiError(400, "Bad Request: query is too old and response timeout expired or query ID is "
                                   "invalid")
        if len(str(p.get("text") or "")) > 200:
            raise BotApiError(400, "Bad Request: MESSAGE_TOO_LONG")
        return True

    def _check_markup(self, markup: Any) -> dict[str, Any] | None:
        if markup is None:
            return None
        if not isinstance(markup, dict):
            raise BotApiError(400, "Bad Request: can't parse reply keyboard markup JSON object")
        for row in markup.get("inline_keyboard") or []:
            for b in row:
                if not str(b.get("text", "")).strip():
                    raise BotApiError(400, "Bad Request: text buttons are unallowed in the inline keyboard")
                data = b.get("callback_data")
                if data is not None and not 1 <= len(str(data).encode()) <= 64:
                    raise BotApiError(400, "Bad Request: BUTTON_DATA_INVALID")
        return markup

    def _render(self, raw: str, parse_mode: str | None, limit: int, what: str) -> str:
        plain = parse_html(raw) if (parse_mode or "").upper() == "HTML" else raw
        if utf16_len(plain) > limit:
            raise BotApiError(400, f"Bad Request: {what} is too long")
        return plain

    def _target_chat(self, p: dict[str, Any]) -> int:
        chat = _int(p.get("chat_id"))
        if chat is None:
            raise BotApiError(400, "Bad Request: chat not found")
        return chat

    def _record(self, chat: int, method: str, text: str, raw: str, p: dict[str, Any], markup: dict[str, Any] | None,
                kind: str | None = None, file: StoredFile | None = None) -> ChatMessage:
        m = ChatMessage(chat, self._next_msg_id(chat), True, method, text, raw, p.get("parse_mode"), markup,
                        p, kind, file)
        self.chats.setdefault(chat, []).append(m)
        return m

    def _as_api(self, m: ChatMessage) -> dict[str, Any]:
        d: dict[str, Any] = {"message_id": m.message_id, "date": m.date, "chat": self._chat(m.chat_id),
                             "from": self._bot_user()}
        if m.media_kind and m.file is not None:
            base = {"file_id": m.file.file_id, "file_unique_id": m.file.file_unique_id, "file_size": m.file.file_size}
            if m.media_kind == "photo":
                d["photo"] = [{**base, "width": 800, "height": 600}]
            elif m.media_kind in ("video", "animation"):
                d[m.media_kind] = {**base, "width": 640, "height": 360, "duration": 1}
            elif m.media_kind == "video_note":
                d[m.media_kind] = {**base, "length": 240, "duration": 1}
            elif m.media_kind in ("audio", "voice"):
                d[m.media_kind] = {**base, "duration": 1}
            else:
                d[m.media_kind] = {**base, "file_name": m.file.file_name or "file"}
            if m.text:
                d["caption"] = m.text
        elif m.media_kind:
            d["text"] = m.text
        else:
            d["text"] = m.text
        if m.reply_markup and "inline_keyboard" in m.reply_markup:
            d["reply_markup"] = m.reply_markup
        return d

    def _m_sendmessage(self, p: dict[str, Any], _f: dict[str, StoredFile]) -> dict[str, Any]:
        chat = self._target_chat(p)
        raw = str(p.get("text") or "")
        if not raw.strip():
            raise BotApiError(400, "Bad Request: message text is empty")
        plain = self._render(raw, p.get("parse_mode"), 4096, "message")
        markup = self._check_markup(p.get("reply_markup"))
        return self._as_api(self._record(chat, "sendMessage", plain, raw, p, markup))

    def _send_media(self, method: str, p: dict[str, Any], files: dict[str, StoredFile]) -> dict[str, Any]:
        kind = _MEDIA_METHODS[method.lower()]
        chat = self._target_chat(p)
        f = files.get(kind)
        if f is None:
            ref = p.get(kind)
            if isinstance(ref, str) and ref.startswith("attach://"):
                f = files.get(ref[len("attach://"):])
            elif isinstance(ref, str) and ref in self.files:
                f = self.files[ref]
            elif isinstance(ref, str) and ref:
                f = StoredFile(f"URL{next(self._file_ids)}", "URL", ref, None, 0)
        if f is None:
            raise BotApiError(400, "Bad Request: there is no " + kind + " in the request")
        self.files[f.file_id] = f
        raw = str(p.get("caption") or "")
        plain = self._render(raw, p.get("parse_mode"), 1024, "message caption") if raw else ""
        markup = self._check_markup(p.get("reply_markup"))
        m = self._record(chat, method, plain, raw, p, markup, kind, f)
        return self._as_api(m)

    def _m_sendphoto(self, p: dict[str, Any], f: dict[str, StoredFile]) -> dict[str, Any]:
        return self._send_media("sendPhoto", p, f)

    def _m_sendvideo(self, p: dict[str, Any], f: dict[str, StoredFile]) -> dict[str, Any]:
        return self._send_media("sendVideo", p, f)

    def _m_senddocument(self, p: dict[str, Any], f: dict[str, StoredFile]) -> dict[str, Any]:
        return self._send_media("sendDocument", p, f)

    def _m_sendaudio(self, p: dict[str, Any], f: dict[str, StoredFile]) -> dict[str, Any]:
        return self._send_media("sendAudio", p, f)

    def _m_sendvoice(self, p: dict[str, Any], f: dict[str, StoredFile]) -> dict[str, Any]:
        return self._send_media("sendVoice", p, f)

    def _m_sendanimation(self, p: dict[str, Any], f: dict[str, StoredFile]) -> dict[str, Any]:
        return self._send_media("sendAnimation", p, f)

    def _find(self, p: dict[str, Any], verb: str) -> ChatMessage:
        chat = self._target_chat(p)
        m = self.message(chat, _int(p.get("message_id")) or 0)
        if m is None or not m.from_bot or m.deleted:
            raise BotApiError(400, f"Bad Request: message to {verb} not found")
        return m

    def _edited(self, m: ChatMessage, p: dict[str, Any]) -> dict[str, Any]:
        m.edits.append(dict(p))
        return self._as_api(m)

    def _m_editmessagetext(self, p: dict[str, Any], _f: dict[str, StoredFile]) -> dict[str, Any]:
        m = self._find(p, "edit")
        if m.media_kind:
            raise BotApiError(400, "Bad Request: there is no text in the message to edit")
        raw = str(p.get("text") or "")
        if not raw.strip():
            raise BotApiError(400, "Bad Request: message text is empty")
        plain = self._render(raw, p.get("parse_mode"), 4096, "message")
        markup = self._check_markup(p.get("reply_markup"))
        if plain == m.text and markup == m.reply_markup:
            raise BotApiError(400, "Bad Request: message is not modified: specified new message content and "
                                   "reply markup are exactly the same as a current content and reply markup of "
                                   "the message")
        m.text, m.html, m.parse_mode, m.reply_markup = plain, raw, p.get("parse_mode"), markup
        return self._edited(m, p)

    def _m_editmessagecaption(self, p: dict[str, Any], _f: dict[str, StoredFile]) -> dict[str, Any]:
        m = self._find(p, "edit")
        if not m.media_kind:
            raise BotApiError(400, "Bad Request: there is no caption in the message to edit")
        raw = str(p.get("caption") or "")
        plain = self._render(raw, p.get("parse_mode"), 1024, "message caption") if raw else ""
        markup = self._check_markup(p.get("reply_markup"))
        if plain == m.text and markup == m.reply_markup:
            raise BotApiError(400, "Bad Request: message is not modified: specified new message content and "
                                   "reply markup are exactly the same as a current content and reply markup of "
                                   "the message")
        m.text, m.html, m.reply_markup = plain, raw, markup
        return self._edited(m, p)

    def _m_editmessagereplymarkup(self, p: dict[str, Any], _f: dict[str, StoredFile]) -> dict[str, Any]:
        m = self._find(p, "edit")
        markup = self._check_markup(p.get("reply_markup"))
        if markup == m.reply_markup:
            raise BotApiError(400, "Bad Request: message is not modified: specified new message content and "
                                   "reply markup are exactly the same as a current content and reply markup of "
                                   "the message")
        m.reply_markup = markup
        return self._edited(m, p)

    def _m_deletemessage(self, p: dict[str, Any], _f: dict[str, StoredFile]) -> bool:
        m = self._find(p, "delete")
        m.deleted = True
        return True

    def _m_getfile(self, p: dict[str, Any], _f: dict[str, StoredFile]) -> dict[str, Any]:
        f = self.files.get(str(p.get("file_id")))
        if f is None:
            raise BotApiError(400, "Bad Request: invalid file_id")
        if f.file_size > self.max_download:
            raise BotApiError(400, "Bad Request: file is too big")
        return {"file_id": f.file_id, "file_unique_id": f.file_unique_id, "file_size": f.file_size,
                "file_path": f.file_path}


def _int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


__all__ = ["DEFAULT_TOKEN", "ApiCall", "BotApiError", "ChatMessage", "FakeTelegram", "StoredFile", "parse_html",
           "utf16_len"]
