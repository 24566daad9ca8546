"""Zalo Bot Platform channel: Telegram-shaped API, no buttons — every choice is a numbered menu.

Calls go to ``{api_base}/bot<TOKEN>/<method>`` (the token is part of the URL, so URLs are never
logged). Updates arrive by long polling (``deleteWebhook`` first; an empty poll answers ``ok:false``
with ``error_code`` 408, which just means "poll again") or, when ``ZALO_BOT_WEBHOOK_URL`` is set, by
webhook (``setWebhook`` with a secret; the ``X-Bot-Api-Secret-Token`` header is compared in constant
time, 403 otherwise; wrapped ``{"ok": true, "result": {...}}`` and bare bodies are both accepted).

Buttons become a numbered list appended to the text; the person answers ``1``, ``2`` … or the label
(case and diacritics forgiven) and the answer is resolved here, on the server, into the payload.
Photos go out by URL (``sendPhoto`` with an expiring link served by the bot); other files as a link.

Private chats only: a message from a group chat (``message.chat.chat_type`` other than ``PRIVATE``,
or a chat id other than the sender's) is never handed to the core — it gets one short reply asking
to write to the bot privately, so no account is linked to a group. Nothing else is ever sent to a
group: a chat seen as a group, or an account whose chat id is not its own user id (linked from a
group by an earlier version), is refused at send time (approval cards, clip links, passwords)."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections import OrderedDict
from typing import Any
from urllib.parse import urlparse

import aiohttp
from aiohttp import web
from sqlmodel import Session, col, select

from bot.channels.http_body import read_body
from bot.channels.zalo_common import (
    MediaLinks,
    MenuStore,
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
    translator_for,
)
from bot.core import ChannelName, Inbound, MessageRef, Outbound, Reply
from bot.i18n import Translator
from bot.text import sanitize
from storage.models import ChannelIdentity, KeyValue, utcnow

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024
MAX_DOWNLOAD = 25 * 1024 * 1024
POLL_TIMEOUT = 30
DEFAULT_WEBHOOK_PATH = "/zalo/bot/webhook"


class ZaloBotError(Exception):
    """A Zalo Bot API call failed (``code`` is ``error_code`` or the HTTP status)."""

    def __init__(self, method: str, code: int, description: str = "") -> None:
        super().__init__(f"Zalo Bot {method} failed: {code} {description}")
        self.method = method
        self.code = code


class ZaloBotChannel:
    """The Zalo Bot adapter (implements the Channel and ChannelAdapter protocols)."""

    name = ChannelName.ZALO_BOT.value

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.db = runtime.db
        self.menus = MenuStore(self.db, self.name)
        self.links = MediaLinks.of(runtime)
        self._base = f"{self.settings.zalo_bot_api_base.rstrip('/')}/bot{self.settings.zalo_bot_token}"
        self.webhook_mode = bool(self.settings.zalo_bot_webhook_url)
        self.webhook_path = (urlparse(self.settings.zalo_bot_webhook_url).path or DEFAULT_WEBHOOK_PATH
                             if self.webhook_mode else DEFAULT_WEBHOOK_PATH)
        self.poll_timeout = POLL_TIMEOUT
        self.backoff_max = 30.0
        self._http: aiohttp.ClientSession | None = None
        self._poller: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._stopping = False
        self._groups: set[str] = set()  # chat ids known to be groups: nothing is sent there
        self._private: set[str] = set()  # chat ids checked to be a person's own chat
        self.refused_group_sends = 0

    # -- lifecycle -----------------------------------------------------------------------------
    def setup_routes(self, app: web.Application) -> None:
        if self.webhook_mode:
            app.router.add_post(self.webhook_path, self._webhook)

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.poll_timeout + 30))
        return self._http

    async def start(self) -> None:
        self._stopping = False
        if self.webhook_mode:
            await self.call("setWebhook", url=self.settings.zalo_bot_webhook_url,
                            secret_token=self.settings.zalo_bot_webhook_secret)
            log.info("Zalo Bot: webhook set")
            return
        await self.call("deleteWebhook")  # polling and webhook exclude each other
        self._poller = asyncio.get_running_loop().create_task(self._poll_loop())
        log.info("Zalo Bot: polling for updates")

    async def stop(self) -> None:
        self._stopping = True
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
            self._poller = None
        await finish_tasks(self._tasks)  # events already answered 200 finish, as Telegram's do
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def idle(self) -> None:
        """Wait until every update received so far is processed (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- API -----------------------------------------------------------------------------------
    async def call(self, method: str, **params: Any) -> Any:
        """Call ``method``; return ``result`` or raise :class:`ZaloBotError` (408 for an empty poll).

        Errors never carry the URL (it contains the bot token)."""
        try:
            async with self.http.post(f"{self._base}/{method}", json=params) as resp:
                status = resp.status
                try:
                    body = await resp.json(content_type=None)
                except (ValueError, aiohttp.ContentTypeError):
                    body = None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ZaloBotError(method, -1, type(exc).__name__) from None
        if not isinstance(body, dict):
            raise ZaloBotError(method, status, "unreadable answer")
        if not body.get("ok"):
            try:
                code = int(body.get("error_code") or status)
            except (TypeError, ValueError):
                code = status
            raise ZaloBotError(method, code, str(body.get("description", ""))[:200])
        return body.get("result")

    # -- inbound: polling ----------------------------------------------------------------------
    async def _poll_loop(self) -> None:
        delay = 1.0
        while not self._stopping:
            try:
                result = await self.call("getUpdates", timeout=str(self.poll_timeout))
            except asyncio.CancelledError:
                raise
            except ZaloBotError as exc:
                if exc.code == 408:  # nothing new: poll again at once
                    delay = 1.0
                    continue
                log.warning("Zalo Bot: getUpdates failed (%s); retrying in %.0f s", exc.code, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.backoff_max)
                continue
            except Exception:
                log.exception("Zalo Bot: polling error; retrying in %.0f s", delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.backoff_max)
                continue
            delay = 1.0
            for update in result if isinstance(result, list) else [result]:
                if isinstance(update, dict):
                    self._accept(update)

    # -- inbound: webhook ----------------------------------------------------------------------
    async def _webhook(self, request: web.Request) -> web.Response:
        given = request.headers.get("X-Bot-Api-Secret-Token", "")
        expected = self.settings.zalo_bot_webhook_secret
        if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
            log.warning("Zalo Bot webhook with a wrong secret refused")
            return web.Response(status=403)
        if request.content_length is not None and request.content_length > MAX_BODY:
            return web.Response(status=413)
        raw = await read_body(request, MAX_BODY + 1)
        if len(raw) > MAX_BODY:
            return web.Response(status=413)
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):  # RecursionError: absurdly nested JSON
            return web.Response(status=400, text="malformed JSON")
        if isinstance(body, dict) and "result" in body and isinstance(body["result"], dict):
            body = body["result"]
        if not isinstance(body, dict):
            return web.Response(status=400, text="unexpected body")
        self._accept(body)
        return web.json_response({"ok": True})

    def _accept(self, update: dict[str, Any]) -> None:
        key = self._update_key(update)
        if key in self._seen:
            return
        self._seen[key] = None
        while len(self._seen) > 5000:
            self._seen.popitem(last=False)
        task = asyncio.get_running_loop().create_task(self._process(update, key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    def _update_key(update: dict[str, Any]) -> str:
        return event_key(update, "message_id")

    async def _process(self, update: dict[str, Any], key: str) -> None:
        group = group_chat(update)
        if group is not None:
            await self._answer_group(group)
            return
        await dispatch_event(self.runtime, self._to_inbound, update, key, "Zalo Bot")

    # -- group chats ---------------------------------------------------------------------------
    @staticmethod
    def _group_key(chat_id: str) -> str:
        return f"zalo_bot.group.{chat_id}"[:120]

    async def _answer_group(self, chat_id: str) -> None:
        """A message in a group: remember the group (nothing else is ever sent there) and answer only
        that the bot works in private chats."""
        self._groups.add(chat_id)
        self._private.discard(chat_id)
        key = self._group_key(chat_id)

        def _save(s: Session) -> None:
            if s.get(KeyValue, key) is None:
                s.add(KeyValue(key=key, value="group", updated_at=utcnow()))
        try:
            await self.db.run(_save)
        except Exception:  # another process recorded it at the same moment
            log.info("Zalo Bot: group chat already recorded")
        tr = Translator(self.settings.default_locale, self.settings.tz)
        text = html_to_plain(tr.t("I only answer in private chats. Please write to me directly, not in a group: "
                                  "open my profile and tap “Message”."))
        log.info("Zalo Bot: a message in a group chat got the private-chat hint")
        try:
            await self._send_text(chat_id, text)
        except ZaloBotError as exc:
            log.warning("Zalo Bot: the private-chat hint to a group failed (%s)", exc.code)

    async def is_group(self, chat_id: str) -> bool:
        """Whether ``chat_id`` is a group: seen as one, or the chat of an account that is not the
        account's own (linked from inside a group). A person's private chat id is their user id."""
        if chat_id in self._groups:
            return True
        if chat_id in self._private:
            return False
        key = self._group_key(chat_id)

        def _check(s: Session) -> bool:
            if s.get(KeyValue, key) is not None:
                return True
            owners = s.exec(select(ChannelIdentity.external_id).where(
                ChannelIdentity.channel == self.name, col(ChannelIdentity.chat_id) == chat_id)).all()
            return any(owner != chat_id for owner in owners)
        group = await self.db.run(_check)
        (self._groups if group else self._private).add(chat_id)
        return group

    async def _to_inbound(self, update: dict[str, Any], key: str) -> Inbound | None:
        name = str(update.get("event_name", ""))
        msg = update.get("message")
        if not isinstance(msg, dict):
            return None
        sender = msg.get("from") if isinstance(msg.get("from"), dict) else {}
        chat = msg.get("chat") if isinstance(msg.get("chat"), dict) else {}
        user_id = str((sender or {}).get("id") or (chat or {}).get("id") or "")
        chat_id = str((chat or {}).get("id") or user_id)
        if not user_id:
            return None
        if (sender or {}).get("is_bot"):
            return None
        base: dict[str, Any] = {"channel": self.name, "user_id": user_id, "chat_id": chat_id, "update_key": key,
                                "message_id": str(msg["message_id"]) if msg.get("message_id") else None,
                                "display_name": str((sender or {}).get("display_name") or "")[:200]}
        if name == "message.text.received" or (not name and msg.get("text")):
            return await self._text_inbound(base, str(msg.get("text") or ""))
        if name == "message.image.received":
            url = str(msg.get("photo_url") or msg.get("photo") or "")
            ref = await download(self.http, url, media=self.runtime.media, kind="photo", max_bytes=MAX_DOWNLOAD)
            caption = str(msg.get("caption") or "") or None
            return Inbound(**base, text=caption, files=(ref,))
        return Inbound(**base)  # sticker, unsupported …: no content; the core answers

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
    async def _send_text(self, chat_id: str, text: str) -> str | None:
        result = await self.call("sendMessage", chat_id=chat_id, text=text)
        mid = result.get("message_id") if isinstance(result, dict) else None
        return str(mid) if mid is not None else None

    async def send(self, out: Outbound) -> str | None:
        if await self.is_group(out.chat_id):
            # an approval card, a clip link or a password must never reach a whole group
            self.refused_group_sends += 1
            log.warning("Zalo Bot: a message for person %s addressed to a group chat was not sent; they must "
                        "write to the bot privately once", out.person_id)
            return None
        reply = out.reply
        tr: Translator | None = None

        async def translator() -> Translator:
            nonlocal tr
            if tr is None:
                tr = await translator_for(self.db, out.person_id, self.settings.default_locale, self.settings.tz)
            return tr

        html_text = reply.text
        buttons = flat_buttons(reply.buttons)
        if reply.ask_contact and not buttons:
            html_text += "\n\n" + (await translator()).t(
                "On Zalo, link your account by sending the link code the school office gave you "
                "(for example K7QX-M2PD-9TRA).")
        if buttons:
            html_text += "\n\n" + numbered_list(await translator(), buttons)
        first_id: str | None = None
        if reply.file is not None:
            first_id = await self._send_file(out, await translator())
        last_id: str | None = None
        for part in split_text(html_to_plain(html_text)):
            last_id = await self._send_text(out.chat_id, part)
            first_id = first_id or last_id
        if buttons:
            await self.menus.remember(out.chat_id, buttons)
        else:
            await self.menus.plain_sent(out.chat_id)
        return last_id if buttons else (first_id or last_id)

    async def _send_file(self, out: Outbound, tr: Translator) -> str | None:
        file = out.reply.file
        assert file is not None
        if not await asyncio.to_thread(file_size, file.path):
            log.warning("Zalo Bot: outbound file missing; nothing sent")
            return None
        link = await self.links.create(file, channel=self.name, chat_id=out.chat_id, person_id=out.person_id)
        if file.kind == "photo":
            result = await self.call("sendPhoto", chat_id=out.chat_id, photo=link.url)
            mid = result.get("message_id") if isinstance(result, dict) else None
            return str(mid) if mid is not None else None
        return await self._send_text(out.chat_id, html_to_plain(link_text(tr, link)))

    async def edit(self, ref: MessageRef, reply: Reply) -> bool:
        """Zalo cannot edit a sent message: the updated text is sent as a new message."""
        mid = await self.send(Outbound(self.name, ref.chat_id, reply))
        return mid is not None

    async def delete(self, ref: MessageRef) -> bool:
        """The Zalo Bot API has no delete."""
        return False


def group_chat(update: dict[str, Any]) -> str | None:
    """The chat id of an update from a group chat: ``chat_type`` other than ``PRIVATE``, or a chat id
    other than the sender's (a private chat's id is the person's own; an account linked to any other
    chat would be refused at every send); None for a private chat."""
    msg = update.get("message")
    if not isinstance(msg, dict):
        return None
    chat = msg.get("chat") if isinstance(msg.get("chat"), dict) else {}
    sender = msg.get("from") if isinstance(msg.get("from"), dict) else {}
    chat_id = str((chat or {}).get("id") or "")
    user_id = str((sender or {}).get("id") or "")
    kind = str((chat or {}).get("chat_type") or "").strip().upper()
    if kind and kind != "PRIVATE":
        return chat_id or "?"
    return chat_id if chat_id and user_id and chat_id != user_id else None


__all__ = ["ZaloBotChannel", "ZaloBotError", "group_chat"]
