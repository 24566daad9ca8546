"""Zalo Official Account (API v3) channel: webhook in, customer-service messages out.

In: ``POST settings.zalo_oa_webhook_path``; the ``X-ZEvent-Signature`` header must equal the hex
SHA-256 of ``app_id + raw body + timestamp + OA secret key`` (403 otherwise). Events become
:class:`~bot.core.Inbound` (text, image, file, audio, video, location; ``follow`` acts as ``/start``);
the OA's own echoes (``oa_send_*``) are ignored and ``msg_id`` de-duplicates redeliveries.

Out: plain text (the catalogue's safe HTML is stripped) split under 2000 characters; at most five
``oa.query.hide`` buttons per message — with more choices the text also carries a numbered list that
a typed ``1``, ``2`` … resolves; images re-compressed under 1 MB and uploaded; PDF/DOC/DOCX under
5 MB uploaded as files; everything else (video, spreadsheets …) as an expiring link served by the bot.

Tokens: the access token goes in the ``access_token`` header; it is refreshed under a lock and the
new pair is stored in the ``KeyValue`` table *before* use (a refresh token works only once); HTTP 401
or error -216 refreshes once and retries once. Messaging windows: a person can be written to for
48 hours (free replies) and up to 7 days (consultation) after they last wrote; beyond, Zalo answers
-230 and :func:`reach_window` / :meth:`ZaloOAChannel.can_reach` tell the reminder engine so."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import json
import logging
import time
from collections import OrderedDict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from sqlmodel import Session

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
    translator_for,
)
from bot.core import Button, ChannelName, Contact, Inbound, MessageRef, Outbound, OutFile, Reply
from bot.core.windows import MESSAGING_WINDOWS
from bot.i18n import Translator
from storage.models import ChannelIdentity, KeyValue, utcnow

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
ERR_TOKEN = -216
ERR_WINDOW = -230


class ZaloOAError(Exception):
    """A Zalo OA API call failed (``code`` is Zalo's error number or the HTTP status)."""

    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(f"Zalo OA error {code}: {message}")
        self.code = code


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
        self.refresh_count = 0
        self._token_lock = asyncio.Lock()
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
    async def _load_tokens(self) -> None:
        """Prefer the persisted pair (it replaced the environment's after the first refresh)."""
        def _get(s: Session) -> dict[str, str]:
            out = {}
            for key in (KV_ACCESS, KV_REFRESH, KV_EXPIRES):
                row = s.get(KeyValue, key)
                if row is not None and row.value:
                    out[key] = row.value
            return out
        stored = await self.db.run(_get)
        if stored.get(KV_ACCESS) and stored.get(KV_REFRESH):
            self.access_token, self.refresh_token = stored[KV_ACCESS], stored[KV_REFRESH]
            try:
                self.expires_at = float(stored.get(KV_EXPIRES, "")) or None
            except ValueError:
                self.expires_at = None

    async def _persist_tokens(self, access: str, refresh: str, expires_at: float) -> None:
        def _save(s: Session) -> None:
            for key, value in ((KV_ACCESS, access), (KV_REFRESH, refresh), (KV_EXPIRES, str(expires_at))):
                row = s.get(KeyValue, key) or KeyValue(key=key)
                row.value, row.updated_at = value, utcnow()
                s.add(row)
        await self.db.run(_save)

    async def refresh(self, stale: str | None = None) -> None:
        """Exchange the refresh token for a new pair, once even when several sends ask at once.

        ``stale`` is the access token the caller saw refused: if another task replaced it meanwhile,
        nothing is done. The new pair is stored before it is used."""
        async with self._token_lock:
            if stale is not None and self.access_token != stale:
                return
            if not self.refresh_token:
                raise ZaloOAError(ERR_TOKEN, "access token expired and no refresh token is configured")
            self.refresh_count += 1
            async with self.http.post(
                    f"{self.oauth_base}/v4/oa/access_token",
                    data={"refresh_token": self.refresh_token, "app_id": self.settings.zalo_oa_app_id,
                          "grant_type": "refresh_token"},
                    headers={"secret_key": self.settings.zalo_oa_app_secret}) as resp:
                try:
                    body = await resp.json(content_type=None)
                except (ValueError, aiohttp.ContentTypeError):
                    body = {}
            access = str(body.get("access_token") or "") if isinstance(body, dict) else ""
            refresh = str(body.get("refresh_token") or "") if isinstance(body, dict) else ""
            if resp.status != 200 or not access or not refresh:
                code = int(body.get("error", resp.status)) if isinstance(body, dict) else resp.status
                log.error("Zalo OA token refresh failed (error %s); check ZALO_OA_REFRESH_TOKEN", code)
                raise ZaloOAError(code, "token refresh failed")
            try:
                expires_in = float(body.get("expires_in") or 3600)
            except (TypeError, ValueError):
                expires_in = 3600.0
            expires_at = time.time() + expires_in
            await self._persist_tokens(access, refresh, expires_at)  # before use: the old refresh token is spent
            self.access_token, self.refresh_token, self.expires_at = access, refresh, expires_at
            log.info("Zalo OA access token refreshed (valid %d s)", int(expires_in))

    async def _call(self, path: str, *, json_body: dict[str, Any] | None = None,
                    form: aiohttp.FormData | None = None, build_form: Any = None) -> dict[str, Any]:
        """POST to the OA API; refresh-and-retry once on HTTP 401 / error -216; raise on any error."""
        if self.expires_at is not None and self.expires_at - time.time() < 60:
            await self.refresh(self.access_token)
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
                    await self.refresh(token)
                    continue
                raise ZaloOAError(ERR_TOKEN, "access token refused after refresh")
            if status != 200:
                raise ZaloOAError(status, "HTTP error")
            if code != 0:
                if code == ERR_WINDOW:
                    raise WindowClosed(str(body.get("message", "")))
                raise ZaloOAError(code, str(body.get("message", "")))
            return body
        raise ZaloOAError(ERR_TOKEN, "unreachable")  # pragma: no cover

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
