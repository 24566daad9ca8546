"""The Telegram channel, on python-telegram-bot's :class:`~telegram.ext.Application`.

Inbound: every update is turned into a channel-neutral :class:`~bot.core.Inbound` and handed to the
dispatcher. Updates are processed concurrently (``TELEGRAM_CONCURRENT_UPDATES``), but in order per
chat: the conversion is synchronous and the hand-over takes a per-chat FIFO lock before anything
is awaited, so attachments are downloaded (into the media store; platform file ids never reach the
core) inside that lock and a photo followed by a text reaches the workflow in that order.

Outbound: :class:`~bot.core.Reply` is rendered as Telegram HTML (texts are already safe HTML, see
``bot.i18n``) with an inline keyboard, a one-tap "share my phone number" keyboard, or a file; long
texts are split on line boundaries. Errors from Telegram (a user who blocked the bot, a refused
request) are logged, never raised, and never with the token.

Updates arrive by long polling (the default; the webhook is deleted first) or, when
``TELEGRAM_WEBHOOK_URL`` is set, on an aiohttp route of the runtime's web server guarded by the
secret token header."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import html
import json
import logging
import re
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aiohttp import web
from telegram import (
    BotCommand,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputFile,
    KeyboardButton,
    LinkPreviewOptions,
    Message,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
    Update,
)
from telegram.constants import ChatType, ParseMode
from telegram.error import (
    BadRequest,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
)
from telegram.ext import AIORateLimiter, Application

from bot.channels.telegram_http import AiohttpRequest
from bot.core import (
    ChannelName,
    Contact,
    FileRef,
    Inbound,
    KeyedLocks,
    MessageRef,
    Outbound,
    Reply,
    RetryLater,
)
from bot.i18n import Translator
from bot.text import sanitize

if TYPE_CHECKING:
    from bot.runtime import Runtime

log = logging.getLogger(__name__)

DEFAULT_MAX_DOWNLOAD = 20 * 1024 * 1024  # what the cloud Bot API lets bots download
MAX_WEBHOOK_BODY = 1024 * 1024
DEFAULT_WEBHOOK_PATH = "/telegram/webhook"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
TEXT_LIMIT = 4096
SPLIT_AT = 4000  # raw HTML, counted in UTF-16 units: always under the limit once tags are parsed
CAPTION_LIMIT = 1024
PHOTO_UPLOAD_LIMIT = 10 * 1024 * 1024  # larger pictures go as documents
POLL_TIMEOUT = 25
TIMEOUTS = {"connect": 10.0, "read": 20.0, "write": 30.0, "media_write": 180.0}  # seconds, Bot API calls
BATCH_WAIT = 0.5  # seconds a batch may keep the next getUpdates waiting
WEBHOOK_WAIT = 20.0  # seconds a webhook request waits for its update to be handled
ALLOWED_UPDATES = ["message", "callback_query"]

_COMMAND = re.compile(r"^/([A-Za-z0-9_]{1,64})(?:@([A-Za-z0-9_]{1,64}))?(?:\s+([\s\S]*))?$")
_BOT_COMMAND = re.compile(r"^[a-z0-9_]{1,32}$")
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9-]*)[^>]*>")
_NO_PREVIEW = LinkPreviewOptions(is_disabled=True)


# ---------------------------------------------------------------------------------------------
# Keeping the token out of the logs
# ---------------------------------------------------------------------------------------------
class _Redact(logging.Filter):
    """Replaces known secrets in a record's message and traceback (defence in depth)."""

    def __init__(self) -> None:
        super().__init__("telegram-redact")
        self.secrets: set[str] = set()

    def _clean(self, text: str) -> str:
        for s in self.secrets:
            if s and s in text:
                text = text.replace(s, "<token>")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: leave it to logging
            return True
        cleaned = self._clean(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = self._clean(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = self._clean(record.exc_text)
        return True


_REDACT = _Redact()


def _protect_logs(token: str) -> None:
    """Quiet httpx (it logs URLs, which carry the token) and redact the token in every logger that
    could see it."""
    _REDACT.secrets.add(token)
    for name in ("httpx", "httpcore"):
        lg = logging.getLogger(name)
        if lg.getEffectiveLevel() < logging.WARNING:
            lg.setLevel(logging.WARNING)
    # At DEBUG these print every request's parameters: message texts, which may hold a temporary
    # password, a phone number or an incident's details. Never below INFO.
    for name in ("telegram.Bot", "telegram.ext.ExtBot"):
        lg = logging.getLogger(name)
        if lg.level < logging.INFO:
            lg.setLevel(logging.INFO)
    names = [n for n in list(logging.Logger.manager.loggerDict)
             if n.split(".")[0] in ("telegram", "httpx", "httpcore", "aiohttp")]
    for name in [*names, "telegram", "httpx", "httpcore", __name__, "bot.core", "bot.runtime"]:
        lg = logging.getLogger(name)
        if _REDACT not in lg.filters:
            lg.addFilter(_REDACT)


# ---------------------------------------------------------------------------------------------
# Rendering helpers (pure)
# ---------------------------------------------------------------------------------------------
def utf16_len(text: str) -> int:
    """Length as Telegram counts it."""
    return len(text.encode("utf-16-le")) // 2


def html_to_plain(text: str) -> str:
    """Drop tags and unescape entities (fallback when Telegram refuses the markup)."""
    return html.unescape(_TAG.sub("", text))


def _open_tags(text: str, stack: list[tuple[str, str]]) -> list[tuple[str, str]]:
    stack = list(stack)
    for m in _TAG.finditer(text):
        name = m.group(2).lower()
        if m.group(1):
            for i in range(len(stack) - 1, -1, -1):
                if stack[i][0] == name:
                    del stack[i]
                    break
        else:
            stack.append((name, m.group(0)))
    return stack


def _hard_cut(line: str, limit: int) -> tuple[str, str]:
    """Cut an over-long line at a space (else anywhere) before ``limit``, never inside a tag or entity."""
    cut = 0
    width = 0
    for i, ch in enumerate(line):
        width += 2 if ord(ch) > 0xFFFF else 1
        if width > limit:
            break
        cut = i + 1
    head = line[:cut]
    space = head.rfind(" ")
    if space > limit // 2:
        cut = space + 1
    lt, gt = line.rfind("<", 0, cut), line.rfind(">", 0, cut)
    if lt > gt:
        cut = lt
    amp, semi = line.rfind("&", 0, cut), line.rfind(";", 0, cut)
    if amp > semi and cut - amp <= 10:
        cut = amp
    cut = max(cut, 1)
    return line[:cut], line[cut:]


def split_text(text: str, limit: int = SPLIT_AT) -> list[str]:
    """Split safe HTML into parts under ``limit`` (UTF-16 units), on line boundaries where possible.

    Tags left open at a cut are closed at the end of the part and re-opened at the start of the next,
    so every part is valid HTML on its own."""
    if utf16_len(text) <= limit:
        return [text]
    budget = limit - 200  # room for re-opened/closed tags
    pieces: list[str] = []
    for line in text.split("\n"):
        while utf16_len(line) > budget:
            head, line = _hard_cut(line, budget)
            pieces.append(head)
        pieces.append(line)
    parts: list[str] = []
    current: list[str] = []
    size = 0
    for piece in pieces:
        add = utf16_len(piece) + (1 if current else 0)
        if current and size + add > budget:
            parts.append("\n".join(current))
            current, size = [], 0
            add = utf16_len(piece)
        current.append(piece)
        size += add
    if current:
        parts.append("\n".join(current))
    out: list[str] = []
    stack: list[tuple[str, str]] = []
    for part in parts:
        prefix = "".join(tag for _, tag in stack)
        stack = _open_tags(part, stack)
        suffix = "".join(f"</{name}>" for name, _ in reversed(stack))
        chunk = prefix + part + suffix
        if html_to_plain(chunk).strip():
            out.append(chunk)
    return out or [text[:limit]]


def _truncate(text: str, limit: int) -> str:
    if utf16_len(text) <= limit:
        return text
    return split_text(text, limit - 10)[0] + "\n…"


def inline_markup(reply: Reply) -> InlineKeyboardMarkup | None:
    rows = [[InlineKeyboardButton(html.unescape(b.label), callback_data=b.payload) for b in row]
            for row in reply.buttons if row]
    return InlineKeyboardMarkup(rows) if rows else None


def reply_markup(reply: Reply) -> InlineKeyboardMarkup | ReplyKeyboardMarkup | ReplyKeyboardRemove | None:
    """Inline buttons win; else the one-tap contact keyboard; else removal of a previous keyboard."""
    markup = inline_markup(reply)
    if markup is not None:
        return markup
    if reply.ask_contact:
        return ReplyKeyboardMarkup([[KeyboardButton(html.unescape(reply.ask_contact), request_contact=True)]],
                                   one_time_keyboard=True, resize_keyboard=True)
    if reply.remove_keyboard:
        return ReplyKeyboardRemove()
    return None


def _message_for_chat(message_id: str | int) -> int:
    return int(message_id)


def _chat(chat_id: str) -> int | str:
    try:
        return int(chat_id)
    except ValueError:
        return chat_id


def _seconds(value: Any) -> float:
    return float(value.total_seconds()) if hasattr(value, "total_seconds") else float(value)


def _bad(exc: TelegramError, *needles: str) -> bool:
    text = exc.message.lower()
    return any(n in text for n in needles)


# ---------------------------------------------------------------------------------------------
# The channel
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Attachment:
    kind: str
    file_id: str
    size: int
    mime: str
    file_name: str


class TelegramChannel:
    """Telegram for the runtime (``Channel``) and the sender (``ChannelAdapter``)."""

    name = ChannelName.TELEGRAM.value

    def __init__(self, runtime: Runtime, *, max_download: int | None = None) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        token = self.settings.telegram_bot_token
        if not token:
            raise ValueError("TELEGRAM_BOT_TOKEN is not set")
        _protect_logs(token)
        # A local Bot API server allows bigger downloads: TELEGRAM_MAX_DOWNLOAD_MB, if the setting exists.
        configured_mb = getattr(self.settings, "telegram_max_download_mb", None)
        configured = int(configured_mb) * 1024 * 1024 if configured_mb else None
        self.max_download = int(max_download or configured or DEFAULT_MAX_DOWNLOAD)
        self.webhook_url = self.settings.telegram_webhook_url
        self.webhook_path = (urlsplit(self.webhook_url).path or DEFAULT_WEBHOOK_PATH) if self.webhook_url else None
        builder = (Application.builder().token(token)
                   .base_url(self.settings.telegram_base_url)
                   .base_file_url(self.settings.telegram_base_file_url)
                   .rate_limiter(AIORateLimiter(max_retries=0))
                   .updater(None))  # we poll ourselves: see _poll
        lim = TIMEOUTS  # not "t": the catalogue extractor would take t[…] for a message
        if self.settings.telegram_http_client == "httpx":  # python-telegram-bot's own
            builder = (builder.connect_timeout(lim["connect"]).read_timeout(lim["read"]).write_timeout(lim["write"])
                       .media_write_timeout(lim["media_write"]).get_updates_read_timeout(POLL_TIMEOUT + 10))
        else:  # the same timeouts over aiohttp: a request costs a fraction of the CPU (telegram_http.py)
            builder = (builder.request(AiohttpRequest(connect_timeout=lim["connect"], read_timeout=lim["read"],
                                                      write_timeout=lim["write"], media_write_timeout=lim["media_write"]))
                       .get_updates_request(AiohttpRequest(connection_pool_size=1, connect_timeout=lim["connect"],
                                                           read_timeout=POLL_TIMEOUT + 10)))
        self.app: Application = builder.build()  # type: ignore[type-arg]
        self.concurrency = self.settings.telegram_concurrent_updates
        self.username: str = ""
        self._poller: asyncio.Task[None] | None = None
        self._handling: set[asyncio.Task[None]] = set()  # updates in progress (polling and webhook)
        self.running = False
        self._order = KeyedLocks()
        self._background: set[asyncio.Task[Any]] = set()
        self.completed: deque[int] = deque(maxlen=4096)  # update ids fully handled (tests, health)

    # -- Channel protocol -------------------------------------------------------------------------
    def setup_routes(self, app: web.Application) -> None:
        if self.webhook_path:
            app.router.add_post(self.webhook_path, self._webhook)

    async def start(self) -> None:
        try:
            await self.app.initialize()
        except InvalidToken:
            raise RuntimeError("Telegram rejected TELEGRAM_BOT_TOKEN; check the token from @BotFather") from None
        self.username = self.app.bot.username or ""
        await self._set_commands()
        if self.webhook_url:
            await self.app.bot.set_webhook(self.webhook_url, secret_token=self.settings.telegram_webhook_secret,
                                           allowed_updates=ALLOWED_UPDATES, max_connections=40)
            log.info("telegram: webhook set (path %s)", self.webhook_path)
        else:
            await self._retry(lambda: self.app.bot.delete_webhook(drop_pending_updates=False), "deleteWebhook")
            self._poller = asyncio.get_running_loop().create_task(self._poll())
            log.info("telegram: polling for updates as @%s", self.username)
        self.running = True

    async def stop(self) -> None:
        self.running = False
        if self._poller is not None:
            self._poller.cancel()  # cancels the long poll; updates being handled finish (below)
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._poller
            self._poller = None
        pending = [*self._background, *self._handling]  # the updates being handled finish
        if pending:
            await asyncio.wait(pending, timeout=10)
        await self.app.shutdown()

    async def _retry(self, call: Callable[[], Awaitable[Any]], what: str, attempts: int = 3) -> Any:
        for i in range(attempts):
            try:
                return await call()
            except NetworkError as exc:  # TimedOut included
                if i == attempts - 1:
                    raise
                log.warning("telegram: %s failed (%s); retrying", what, type(exc).__name__)
                await asyncio.sleep(1 + i)
        return None

    # -- long polling -----------------------------------------------------------------------------
    async def _poll(self) -> None:
        """Fetch updates and hand them to the dispatcher, confirming to Telegram (the ``offset`` of
        the next ``getUpdates``) only the updates that were handled: the offset never passes the
        oldest update still in progress. A process killed in the middle is handed the unfinished
        updates again at its next start (those it had finished are recognised as duplicates).

        A batch is handled concurrently (at most ``TELEGRAM_CONCURRENT_UPDATES`` updates; one chat's
        updates in order, see ``_on_update``) and the next batch is fetched when it is done. An
        update still running after ``BATCH_WAIT`` (a large download) does not hold up the others:
        the next batches are fetched around it (Telegram hands it out again until it is confirmed;
        it is recognised and not started twice)."""
        await self.runtime.dispatcher.ready.wait()  # the outbox left by a crash goes out first
        bot = self.app.bot
        in_progress: dict[int, asyncio.Task[None]] = {}
        offset: int | None = None
        highest = -1
        failures = 0
        limit = max(1, min(100, self.concurrency))
        while True:
            if in_progress:
                await asyncio.wait(list(in_progress.values()), timeout=BATCH_WAIT)
                for uid in [u for u, t in in_progress.items() if t.done()]:
                    del in_progress[uid]
            if highest >= 0:  # confirm everything below the oldest update still in progress
                offset = min(in_progress) if in_progress else highest + 1
            try:
                updates = await bot.get_updates(offset=offset, limit=limit,
                                                timeout=0 if in_progress else POLL_TIMEOUT,
                                                allowed_updates=ALLOWED_UPDATES)
                failures = 0
            except InvalidToken:
                log.error("telegram: the token was refused while polling; polling stops")
                return
            except RetryAfter as exc:
                await asyncio.sleep(_seconds(exc.retry_after))
                continue
            except TelegramError as exc:  # network trouble, a conflict with another poller …
                failures += 1
                delay = min(30.0, 0.5 * 2 ** min(failures, 6))
                log.warning("telegram: getUpdates failed (%s); retrying in %.0f s", type(exc).__name__, delay)
                await asyncio.sleep(delay)
                continue
            if updates:
                log.debug("telegram: %s update(s) fetched, %s in progress, confirmed below %s",
                          len(updates), len(in_progress), offset)
            loop = asyncio.get_running_loop()
            for update in updates:
                uid = update.update_id
                if uid in in_progress:
                    continue
                # (An update at or below ``highest`` that is not in progress is one Telegram sends
                # again — a redelivery: the dispatcher recognises it as a duplicate.)
                highest = max(highest, uid)
                in_progress[uid] = self._track(loop.create_task(self._on_update(update)))

    async def _set_commands(self) -> None:
        tr = Translator(self.settings.default_locale, self.settings.tz)
        commands = [BotCommand(c, html_to_plain(tr.t(d))[:256])
                    for c, d in self.runtime.registry.commands_for(None) if _BOT_COMMAND.match(c)][:100]
        try:
            await self.app.bot.set_my_commands(commands)
        except TelegramError as exc:
            log.warning("telegram: setMyCommands refused: %s", exc.message)

    # -- inbound ----------------------------------------------------------------------------------
    async def _on_update(self, update: Update) -> None:
        try:
            try:
                msg, attachments = self.to_inbound(update)
            except Exception:
                log.exception("telegram: could not read update %s", update.update_id)
                return
            query = update.callback_query
            if query is not None:
                self._spawn(self._answer(query.id))
            if msg is None:
                if update.message is not None and update.message.chat.type != ChatType.PRIVATE:
                    await self._private_only(update.message)
                return
            # No await before the per-chat lock: the order of updates within a chat is kept.
            await self._order((msg.channel, msg.chat_id), lambda: self._hand_over(msg, attachments))
        except Exception:  # the dispatcher answers its own failures; this is a last resort
            log.exception("telegram: update %s could not be handled", update.update_id)
        finally:
            self.completed.append(update.update_id)

    async def _hand_over(self, msg: Inbound, attachments: list[_Attachment]) -> None:
        if attachments:
            files = tuple([await self._fetch(a) for a in attachments])
            msg = replace(msg, files=files)
        await self.runtime.dispatcher.handle(msg)

    def to_inbound(self, update: Update) -> tuple[Inbound | None, list[_Attachment]]:
        """Convert an update (synchronously; files are listed, fetched later)."""
        key = str(update.update_id)
        query = update.callback_query
        if query is not None:
            user = query.from_user
            qmsg = query.message
            if query.data is None or (qmsg is not None and qmsg.chat.type != ChatType.PRIVATE):
                return None, []
            chat_id = qmsg.chat.id if qmsg is not None else user.id
            return Inbound(channel=self.name, user_id=str(user.id), chat_id=str(chat_id), update_key=key,
                           payload=query.data, message_id=str(qmsg.message_id) if qmsg is not None else None,
                           display_name=user.full_name, language=user.language_code), []
        m = update.message
        if m is None or m.from_user is None or m.chat.type != ChatType.PRIVATE:
            return None, []
        user = m.from_user
        text = m.text if m.text is not None else m.caption
        command: str | None = None
        args = ""
        if m.text:
            cm = _COMMAND.match(sanitize(m.text).strip())  # "/camera\x00" is /camera (Inbound cleans the rest)
            if cm:
                command, args = cm.group(1).lower(), (cm.group(3) or "").strip()
                text = None
        contact = None
        if m.contact is not None:
            c = m.contact
            contact = Contact(phone=c.phone_number, user_id=str(c.user_id) if c.user_id else None,
                              first_name=c.first_name or "", last_name=c.last_name or "")
        location = (m.location.latitude, m.location.longitude) if m.location is not None else None
        return Inbound(channel=self.name, user_id=str(user.id), chat_id=str(m.chat.id), update_key=key,
                       text=text, command=command, args=args, contact=contact, location=location,
                       message_id=str(m.message_id), display_name=user.full_name, language=user.language_code,
                       forwarded=m.forward_origin is not None, at=m.date), self._attachments(m)

    @staticmethod
    def _attachments(m: Message) -> list[_Attachment]:
        out: list[_Attachment] = []
        if m.photo:
            best = max(m.photo, key=lambda p: (p.file_size or 0, p.width * p.height))
            out.append(_Attachment("photo", best.file_id, best.file_size or 0, "image/jpeg", ""))
        if m.animation is not None:
            a = m.animation
            out.append(_Attachment("video", a.file_id, a.file_size or 0, a.mime_type or "video/mp4",
                                   a.file_name or ""))
        elif m.document is not None:
            d = m.document
            out.append(_Attachment("document", d.file_id, d.file_size or 0, d.mime_type or "", d.file_name or ""))
        if m.video is not None:
            v = m.video
            out.append(_Attachment("video", v.file_id, v.file_size or 0, v.mime_type or "video/mp4",
                                   v.file_name or ""))
        if m.video_note is not None:
            out.append(_Attachment("video_note", m.video_note.file_id, m.video_note.file_size or 0, "video/mp4", ""))
        if m.voice is not None:
            out.append(_Attachment("voice", m.voice.file_id, m.voice.file_size or 0, m.voice.mime_type or "audio/ogg",
                                   ""))
        if m.audio is not None:
            a2 = m.audio
            out.append(_Attachment("audio", a2.file_id, a2.file_size or 0, a2.mime_type or "audio/mpeg",
                                   a2.file_name or ""))
        return out

    async def _fetch(self, a: _Attachment) -> FileRef:
        media = self.runtime.media
        if a.size > self.max_download:
            return media.failed(kind=a.kind, error="too_big", size=a.size, file_name=a.file_name, mime=a.mime)
        try:
            tg_file = await self.app.bot.get_file(a.file_id)
            if (tg_file.file_size or 0) > self.max_download:
                return media.failed(kind=a.kind, error="too_big", size=tg_file.file_size or 0,
                                    file_name=a.file_name, mime=a.mime)
            data = await tg_file.download_as_bytearray()
        except BadRequest as exc:
            error = "too_big" if _bad(exc, "too big") else "failed"
            log.warning("telegram: getFile refused (%s): %s", a.kind, exc.message)
            return media.failed(kind=a.kind, error=error, size=a.size, file_name=a.file_name, mime=a.mime)
        except TelegramError as exc:
            log.warning("telegram: downloading a %s failed: %s", a.kind, type(exc).__name__)
            return media.failed(kind=a.kind, error="failed", size=a.size, file_name=a.file_name, mime=a.mime)
        if len(data) > self.max_download:
            return media.failed(kind=a.kind, error="too_big", size=len(data), file_name=a.file_name, mime=a.mime)
        return await asyncio.to_thread(media.store_bytes, bytes(data), kind=a.kind, mime=a.mime,
                                       file_name=a.file_name)

    async def _answer(self, query_id: str) -> None:
        try:
            await self.app.bot.answer_callback_query(query_id)
        except TelegramError as exc:  # too old after a restart: harmless
            log.info("telegram: answerCallbackQuery refused: %s", exc.message)

    async def _private_only(self, m: Message) -> None:
        if not (m.text or "").startswith("/"):
            return
        tr = Translator(self.settings.default_locale, self.settings.tz)
        try:
            await m.reply_text(tr.t("I only work in private chats. Please message me directly."))
        except TelegramError as exc:
            log.info("telegram: group notice not sent: %s", exc.message)

    def _track(self, task: asyncio.Task[None]) -> asyncio.Task[None]:
        self._handling.add(task)
        task.add_done_callback(self._handling.discard)
        return task

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- webhook ----------------------------------------------------------------------------------
    async def _webhook(self, request: web.Request) -> web.Response:
        expected = self.settings.telegram_webhook_secret.encode()
        given = request.headers.get(SECRET_HEADER, "").encode()
        if not expected or not hmac.compare_digest(given, expected):
            return web.Response(status=403)
        if request.content_length is not None and request.content_length > MAX_WEBHOOK_BODY:
            return web.Response(status=413)
        body = bytearray()
        async for chunk in request.content.iter_chunked(64 * 1024):
            body.extend(chunk)
            if len(body) > MAX_WEBHOOK_BODY:
                return web.Response(status=413)
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):  # RecursionError: absurdly nested JSON
            return web.Response(status=400)
        if not isinstance(data, dict) or not isinstance(data.get("update_id"), int):
            return web.Response(status=400)
        if not self.running:
            return web.Response(status=503)  # Telegram retries later
        try:
            update = Update.de_json(data, self.app.bot)
        except Exception:
            return web.Response(status=400)
        # Answer only once the update is handled (committed): if the process dies first, Telegram
        # delivers it again. A slow update is answered after WEBHOOK_WAIT and finishes on its own.
        task = self._track(asyncio.get_running_loop().create_task(self._on_update(update)))
        await asyncio.wait([task], timeout=WEBHOOK_WAIT)
        return web.Response(status=200)

    # -- outbound (ChannelAdapter) ------------------------------------------------------------------
    async def send(self, out: Outbound) -> str | None:
        chat = _chat(out.chat_id)
        try:
            if out.reply.file is not None:
                return await self._send_file(chat, out.reply)
            return await self._send_text(chat, out.reply)
        except RetryAfter as exc:
            # Flood control for this chat: the caller decides (the fan-out postpones only this chat).
            raise RetryLater(_seconds(exc.retry_after)) from exc
        except Forbidden as exc:
            log.warning("telegram: chat %s cannot be reached (%s)", out.chat_id, exc.message)
        except BadRequest as exc:
            log.warning("telegram: message to chat %s refused: %s", out.chat_id, exc.message)
        except TelegramError as exc:
            log.warning("telegram: sending to chat %s failed: %s", out.chat_id, type(exc).__name__)
        except OSError as exc:
            log.error("telegram: file for chat %s unreadable: %s", out.chat_id, type(exc).__name__)
        return None

    async def _send_message(self, chat: int | str, text: str, reply: Reply, markup: Any) -> Message:
        try:
            return await self.app.bot.send_message(chat, text, parse_mode=ParseMode.HTML, reply_markup=markup,
                                                   protect_content=reply.protect,
                                                   link_preview_options=_NO_PREVIEW)
        except BadRequest as exc:
            if not _bad(exc, "can't parse entities"):
                raise
            log.warning("telegram: HTML refused (%s); sending as plain text", exc.message)
            return await self.app.bot.send_message(chat, html_to_plain(text), reply_markup=markup,
                                                   protect_content=reply.protect,
                                                   link_preview_options=_NO_PREVIEW)

    async def _send_text(self, chat: int | str, reply: Reply) -> str | None:
        if not html_to_plain(reply.text).strip():
            log.warning("telegram: empty message to chat %s not sent", chat)
            return None
        parts = split_text(reply.text)
        last: Message | None = None
        for i, part in enumerate(parts):
            markup = reply_markup(reply) if i == len(parts) - 1 else None
            last = await self._send_message(chat, part, reply, markup)
        return str(last.message_id) if last is not None else None

    async def _send_file(self, chat: int | str, reply: Reply) -> str | None:
        f = reply.file
        assert f is not None
        path = Path(f.path)
        data = await asyncio.to_thread(path.read_bytes)
        upload = InputFile(data, filename=f.file_name or path.name)
        caption_fits = utf16_len(reply.text) <= CAPTION_LIMIT
        caption = reply.text if caption_fits and reply.text.strip() else None
        markup = reply_markup(reply) if caption_fits else None
        common: dict[str, Any] = {"caption": caption, "parse_mode": ParseMode.HTML if caption else None,
                                  "reply_markup": markup, "protect_content": reply.protect}
        bot = self.app.bot
        if f.kind == "photo" and len(data) <= PHOTO_UPLOAD_LIMIT:
            sent = await bot.send_photo(chat, upload, **common)
        elif f.kind == "video":
            sent = await bot.send_video(chat, upload, supports_streaming=True, **common)
        else:
            sent = await bot.send_document(chat, upload, **common)
        if not caption_fits:
            return await self._send_text(chat, reply)
        return str(sent.message_id)

    async def edit(self, ref: MessageRef, reply: Reply) -> bool:
        chat, mid = _chat(ref.chat_id), _message_for_chat(ref.message_id)
        markup = inline_markup(reply)
        bot = self.app.bot
        text = _truncate(reply.text, TEXT_LIMIT - 96)
        try:
            try:
                await bot.edit_message_text(text, chat_id=chat, message_id=mid, parse_mode=ParseMode.HTML,
                                            reply_markup=markup, link_preview_options=_NO_PREVIEW)
            except BadRequest as exc:
                if _bad(exc, "no text in the message"):
                    await bot.edit_message_caption(chat_id=chat, message_id=mid,
                                                   caption=_truncate(reply.text, CAPTION_LIMIT - 24),
                                                   parse_mode=ParseMode.HTML, reply_markup=markup)
                elif _bad(exc, "can't parse entities"):
                    await bot.edit_message_text(html_to_plain(text), chat_id=chat, message_id=mid,
                                                reply_markup=markup, link_preview_options=_NO_PREVIEW)
                else:
                    raise
            return True
        except BadRequest as exc:
            if _bad(exc, "not modified"):
                return True
            log.info("telegram: edit of a message in chat %s refused: %s", ref.chat_id, exc.message)
        except TelegramError as exc:
            log.warning("telegram: edit in chat %s failed: %s", ref.chat_id, type(exc).__name__)
        return False

    async def delete(self, ref: MessageRef) -> bool:
        try:
            return bool(await self.app.bot.delete_message(_chat(ref.chat_id), _message_for_chat(ref.message_id)))
        except TelegramError as exc:
            log.info("telegram: delete in chat %s refused: %s", ref.chat_id, exc.message)
            return False

    async def drain(self) -> None:
        """Wait for background work (callback answers) to finish."""
        with contextlib.suppress(Exception):
            if self._background:
                await asyncio.wait(list(self._background), timeout=5)


__all__ = ["TelegramChannel", "html_to_plain", "inline_markup", "reply_markup", "split_text", "utf16_len"]
