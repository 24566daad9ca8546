"""Fake Zalo Official Account and Zalo Bot Platform servers for end-to-end tests (127.0.0.1, random port).

:class:`FakeZaloOA` speaks the OA API v3 surface the adapter uses — ``/v3.0/oa/message/cs``,
``/v2.0/oa/upload/image`` and ``/v2.0/oa/upload/file`` (``access_token`` header; errors as HTTP 200
with ``error`` ≠ 0 like Zalo: -216 for a bad token, -230 outside the messaging window) and the OAuth
``/v4/oa/access_token`` refresh (single-use refresh tokens). It also serves attachment files under
``/files/<name>`` and signs webhook events the way Zalo does (:meth:`FakeZaloOA.post_event`).

:class:`FakeZaloBot` speaks ``/bot<TOKEN>/<method>``: ``getUpdates`` hands out one queued update per
call or ``ok:false, error_code 408`` when there is none; ``sendPhoto`` fetches the photo URL (as Zalo
does); ``deleteWebhook`` / ``setWebhook`` are recorded; :meth:`FakeZaloBot.post_webhook` delivers an
update to the bot's webhook with the secret header.

Waiting is done on recorded state (``await fake.wait_for(predicate)``), never by sleeping."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import ClientSession, ClientTimeout, web

TEXT_LIMIT = 2000


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


async def _wait_for(pred: Callable[[], Any], limit: float) -> Any:
    deadline = time.monotonic() + limit
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


# ---------------------------------------------------------------------------------------------
# Zalo Official Account
# ---------------------------------------------------------------------------------------------
@dataclass
class OAMessage:
    user_id: str
    message: dict[str, Any]
    message_id: str

    @property
    def text(self) -> str:
        return str(self.message.get("text", ""))

    @property
    def buttons(self) -> list[dict[str, Any]]:
        att = self.message.get("attachment") or {}
        if att.get("type") != "template":
            return []
        return list((att.get("payload") or {}).get("buttons") or [])


@dataclass
class FakeZaloOA:
    app_id: str = "1234567890"
    oa_secret_key: str = "oa-secret-key-for-tests"
    app_secret: str = "app-secret-for-tests"
    access_token: str = "ACCESS-1"
    refresh_token: str = "REFRESH-1"
    base_url: str = ""
    messages: list[OAMessage] = field(default_factory=list)
    uploads: list[dict[str, Any]] = field(default_factory=list)
    refresh_calls: int = 0
    send_calls: int = 0
    refused_tokens: list[str] = field(default_factory=list)
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    window_closed: set[str] = field(default_factory=set)
    # Hold requests made with a stale token until this many have arrived (makes races real).
    stale_barrier: int = 0
    # Answer -216 to this many sends even with the valid token.
    force_216: int = 0
    user_info_permission: bool = True
    refresh_delay: float = 0.0
    # What Zalo reports with each send: ``{"quota_type": "sub_quota", "remain": "150", "total": "2000", …}``
    quota: dict[str, Any] | None = None
    # The OA's message package is used up: sends answer -211 "Out of quota".
    quota_exhausted: bool = False
    # Token lifetimes against a clock (epoch seconds) when set: access tokens expire after
    # ``access_ttl``, refresh tokens after ``refresh_ttl`` (Zalo: about 25 hours and 3 months).
    clock: Callable[[], float] | None = None
    access_ttl: float = 90000.0
    refresh_ttl: float = 90 * 86400.0
    access_expires: float | None = None
    refresh_expires: float | None = None
    _runner: web.AppRunner | None = None
    _ids: Any = field(default_factory=lambda: itertools.count(1))
    _stale_waiting: int = 0
    _stale_event: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> FakeZaloOA:
        app = web.Application(client_max_size=20 * 1024 * 1024)
        app.router.add_post("/v3.0/oa/message/cs", self._send)
        app.router.add_post("/v2.0/oa/upload/image", self._upload_image)
        app.router.add_post("/v2.0/oa/upload/file", self._upload_file)
        app.router.add_post("/v4/oa/access_token", self._refresh)
        app.router.add_get("/files/{name}", self._file)
        self._runner, self.base_url = await _serve(app)
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # -- API ------------------------------------------------------------------------------------
    def _now(self) -> float | None:
        return self.clock() if self.clock is not None else None

    async def _check_token(self, request: web.Request) -> web.Response | None:
        token = request.headers.get("access_token", "")
        now = self._now()
        expired = now is not None and self.access_expires is not None and now >= self.access_expires
        if token == self.access_token and not expired:
            return None
        self.refused_tokens.append(token)
        if self.stale_barrier:
            self._stale_waiting += 1
            if self._stale_waiting >= self.stale_barrier:
                self._stale_event.set()
            try:
                await asyncio.wait_for(self._stale_event.wait(), 5)
            except TimeoutError:
                pass
        return web.json_response({"error": -216, "message": "Access token is invalid"})

    async def _send(self, request: web.Request) -> web.Response:
        refused = await self._check_token(request)
        if refused is not None:
            return refused
        self.send_calls += 1
        if self.force_216 > 0:
            self.force_216 -= 1
            return web.json_response({"error": -216, "message": "Access token is invalid"})
        body = await request.json()
        user_id = str((body.get("recipient") or {}).get("user_id", ""))
        message = body.get("message") or {}
        if self.quota_exhausted:
            return web.json_response({"error": -211, "message": "Out of quota"})
        if user_id in self.window_closed:
            return web.json_response({"error": -230, "message": "User has not interacted with the OA in 7 days"})
        text = message.get("text")
        if text is not None and (not isinstance(text, str) or len(text) > TEXT_LIMIT or not text.strip()):
            return web.json_response({"error": -201, "message": "text is invalid"})
        att_payload = (message.get("attachment") or {}).get("payload") or {}
        if att_payload.get("template_type") == "request_user_info":
            if not self.user_info_permission:
                return web.json_response({"error": -224, "message": "OA has no permission to request user info"})
            elements = att_payload.get("elements") or []
            if len(elements) != 1 or not elements[0].get("title") or len(elements[0]["title"]) > 100 \
                    or len(elements[0].get("subtitle", "")) > 500:
                return web.json_response({"error": -201, "message": "request_user_info element is invalid"})
        buttons = att_payload.get("buttons")
        if buttons is not None:
            if len(buttons) > 5:
                return web.json_response({"error": -201, "message": "too many buttons"})
            for b in buttons:
                if len(b.get("title", "")) > 100 or len(b.get("payload", "")) > 1000:
                    return web.json_response({"error": -201, "message": "button is invalid"})
        mid = f"oamsg{next(self._ids)}"
        self.messages.append(OAMessage(user_id, message, mid))
        data: dict[str, Any] = {"message_id": mid, "user_id": user_id}
        if self.quota is not None:
            data["quota"] = dict(self.quota)
        return web.json_response({"error": 0, "message": "Success", "data": data})

    async def _upload(self, request: web.Request, kind: str) -> dict[str, Any] | web.Response:
        refused = await self._check_token(request)
        if refused is not None:
            return refused
        reader = await request.multipart()
        part = await reader.next()
        if part is None:
            return web.json_response({"error": -201, "message": "no file"})
        data = await part.read()  # type: ignore[union-attr]
        entry = {"kind": kind, "size": len(data), "filename": part.filename,  # type: ignore[union-attr]
                 "content_type": part.headers.get("Content-Type", ""), "sha256": hashlib.sha256(data).hexdigest(),
                 "data": bytes(data)}
        self.uploads.append(entry)
        return entry

    async def _upload_image(self, request: web.Request) -> web.Response:
        entry = await self._upload(request, "image")
        if isinstance(entry, web.Response):
            return entry
        if entry["size"] > 1024 * 1024:
            return web.json_response({"error": -210, "message": "image is too large"})
        return web.json_response({"error": 0, "data": {"attachment_id": f"att{len(self.uploads)}"}})

    async def _upload_file(self, request: web.Request) -> web.Response:
        entry = await self._upload(request, "file")
        if isinstance(entry, web.Response):
            return entry
        if entry["size"] > 5 * 1024 * 1024:
            return web.json_response({"error": -210, "message": "file is too large"})
        return web.json_response({"error": 0, "data": {"token": f"ftok{len(self.uploads)}"}})

    async def _refresh(self, request: web.Request) -> web.Response:
        form = await request.post()
        self.refresh_calls += 1
        if self.refresh_delay:
            await asyncio.sleep(self.refresh_delay)
        if request.headers.get("secret_key") != self.app_secret or form.get("app_id") != self.app_id:
            return web.json_response({"error": -14014, "message": "Invalid secret key"})
        if form.get("grant_type") != "refresh_token" or form.get("refresh_token") != self.refresh_token:
            return web.json_response({"error": -14020, "message": "Invalid refresh token"})
        now = self._now()
        if now is not None and self.refresh_expires is not None and now >= self.refresh_expires:
            return web.json_response({"error": -14020, "message": "Refresh token has expired"})
        n = self.refresh_calls + 1
        self.access_token, self.refresh_token = f"ACCESS-{n}", f"REFRESH-{n}"
        if now is not None:
            self.access_expires, self.refresh_expires = now + self.access_ttl, now + self.refresh_ttl
        self._stale_waiting, self._stale_event = 0, asyncio.Event()
        return web.json_response({"access_token": self.access_token, "refresh_token": self.refresh_token,
                                  "expires_in": str(int(self.access_ttl))})

    async def _file(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self.files:
            raise web.HTTPNotFound()
        data, mime = self.files[name]
        return web.Response(body=data, content_type=mime)

    # -- helpers for tests ---------------------------------------------------------------------
    def issue(self, access: str, refresh: str) -> None:
        """A new pair made by hand on the Zalo developer page (the old ones stop working)."""
        self.access_token, self.refresh_token = access, refresh
        now = self._now()
        if now is not None:
            self.access_expires, self.refresh_expires = now + self.access_ttl, now + self.refresh_ttl

    def expire_token(self) -> None:
        """Make the current access token invalid (as if it expired); the refresh token still works."""
        self.access_token = self.access_token + "-expired-on-server"

    def file_url(self, name: str, data: bytes, mime: str) -> str:
        self.files[name] = (data, mime)
        return f"{self.base_url}/files/{name}"

    def event(self, name: str, user_id: str, *, msg_id: str | None = None, text: str | None = None,
              attachments: list[dict[str, Any]] | None = None, timestamp: str | None = None,
              info: dict[str, Any] | None = None) -> dict[str, Any]:
        ts = timestamp or str(int(time.time() * 1000))
        body: dict[str, Any] = {"app_id": self.app_id, "event_name": name, "timestamp": ts,
                                "sender": {"id": user_id}, "recipient": {"id": "oa-1"}}
        if name == "follow":
            body = {"app_id": self.app_id, "event_name": name, "timestamp": ts, "follower": {"id": user_id},
                    "oa_id": "oa-1", "source": "testing"}
        elif name == "user_submit_info":  # the answer to a request_user_info card: no message
            body["info"] = dict(info or {})
            body["user_id_by_app"] = f"app-{user_id}"
        else:
            message: dict[str, Any] = {"msg_id": msg_id or f"in{next(self._ids)}"}
            if text is not None:
                message["text"] = text
            if attachments is not None:
                message["attachments"] = attachments
            body["message"] = message
        return body

    def sign(self, raw: bytes, timestamp: str) -> str:
        return hashlib.sha256(self.app_id.encode() + raw + timestamp.encode() + self.oa_secret_key.encode()
                              ).hexdigest()

    async def post_event(self, webhook_url: str, event: dict[str, Any], *, signature: str | None = None,
                         raw: bytes | None = None, mac_prefix: bool = True) -> int:
        """POST an event like Zalo does (signed over the exact bytes sent); return the HTTP status."""
        body = raw if raw is not None else json.dumps(event, ensure_ascii=False).encode()
        sig = signature if signature is not None else self.sign(body, str(event.get("timestamp", "")))
        headers = {"Content-Type": "application/json",
                   "X-ZEvent-Signature": f"mac={sig}" if mac_prefix else sig}
        async with ClientSession(timeout=ClientTimeout(total=10)) as http, \
                http.post(webhook_url, data=body, headers=headers) as resp:
            return resp.status

    def texts(self, user_id: str | None = None) -> list[str]:
        return [m.text for m in self.messages if user_id is None or m.user_id == user_id]

    async def wait_for(self, pred: Callable[[], Any], limit: float = 10) -> Any:
        return await _wait_for(pred, limit)


# ---------------------------------------------------------------------------------------------
# Zalo Bot Platform
# ---------------------------------------------------------------------------------------------
@dataclass
class BotSent:
    method: str
    chat_id: str
    params: dict[str, Any]
    message_id: str
    fetched: bytes | None = None  # sendPhoto: what the photo URL answered

    @property
    def text(self) -> str:
        return str(self.params.get("text") or self.params.get("caption") or "")


@dataclass
class FakeZaloBot:
    token: str = "1234567890:zalo-bot-fake-token-SECRET"
    base_url: str = ""
    sent: list[BotSent] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    webhook: dict[str, Any] = field(default_factory=dict)
    poll_wait: float = 0.2  # how long an empty getUpdates is held before answering 408
    fail_next_polls: int = 0  # answer this many getUpdates with HTTP 500 (bot must back off and go on)
    send_delay: float = 0.0  # seconds each sendMessage / sendPhoto takes
    _queue: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    _runner: web.AppRunner | None = None
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    async def start(self) -> FakeZaloBot:
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._api)
        self._runner, self.base_url = await _serve(app)
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _api(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        method = request.match_info["method"]
        self.calls.append(method)
        try:
            params = await request.json() if request.can_read_body else {}
        except ValueError:
            return web.json_response({"ok": False, "error_code": 400, "description": "Bad request"}, status=400)
        if method == "getUpdates":
            if self.fail_next_polls > 0:
                self.fail_next_polls -= 1
                return web.json_response({"ok": False, "error_code": 500, "description": "Internal"}, status=500)
            if self.webhook.get("url"):
                return web.json_response({"ok": False, "error_code": 409, "description": "webhook is set"})
            try:
                update = await asyncio.wait_for(self._queue.get(), self.poll_wait)
            except TimeoutError:
                return web.json_response({"ok": False, "error_code": 408, "description": "Request timeout"})
            return web.json_response({"ok": True, "result": update})
        if method == "deleteWebhook":
            self.webhook = {}
            return web.json_response({"ok": True, "result": {"url": "", "updated_at": int(time.time() * 1000)}})
        if method == "setWebhook":
            secret = str(params.get("secret_token", ""))
            if not (8 <= len(secret) <= 256) or not str(params.get("url", "")).startswith("http"):
                return web.json_response({"ok": False, "error_code": 400, "description": "Bad request"})
            self.webhook = {"url": params["url"], "secret_token": secret}
            return web.json_response({"ok": True, "result": {"url": params["url"]}})
        if method in ("sendMessage", "sendPhoto"):
            if self.send_delay:
                await asyncio.sleep(self.send_delay)
            chat_id = str(params.get("chat_id", ""))
            text = params.get("text") if method == "sendMessage" else params.get("caption")
            if method == "sendMessage" and (not isinstance(text, str) or not (1 <= len(text) <= TEXT_LIMIT)):
                return web.json_response({"ok": False, "error_code": 400, "description": "text is invalid"})
            fetched = None
            if method == "sendPhoto":
                async with ClientSession(timeout=ClientTimeout(total=10)) as http, \
                        http.get(str(params.get("photo", ""))) as resp:
                    if resp.status != 200:
                        return web.json_response({"ok": False, "error_code": 400, "description": "bad photo"})
                    fetched = await resp.read()
            mid = f"zb{next(self._ids)}"
            self.sent.append(BotSent(method, chat_id, dict(params), mid, fetched))
            return web.json_response({"ok": True, "result": {"message_id": mid, "date": int(time.time() * 1000)}})
        if method == "getMe":
            return web.json_response({"ok": True, "result": {"id": "1", "account_name": "bot.test"}})
        return web.json_response({"ok": False, "error_code": 404, "description": "Not found"}, status=404)

    # -- helpers for tests ---------------------------------------------------------------------
    def message(self, user_id: str, *, text: str | None = None, photo_url: str | None = None,
                event: str | None = None, message_id: str | None = None, group: str | None = None,
                chat_type: str | None = None) -> dict[str, Any]:
        """An update as Zalo sends it: from a private chat (chat id = the user's id), or from the group
        chat ``group`` (``chat_type`` "GROUP"; ``chat_type=""`` leaves the type out)."""
        chat: dict[str, Any] = {"id": group or user_id,
                                "chat_type": chat_type if chat_type is not None else ("GROUP" if group else "PRIVATE")}
        if not chat["chat_type"]:
            del chat["chat_type"]
        msg: dict[str, Any] = {"from": {"id": user_id, "display_name": "Cô Vân", "is_bot": False},
                               "chat": chat, "date": int(time.time() * 1000)}
        if message_id != "":
            msg["message_id"] = message_id or f"umsg{next(self._ids)}"
        if text is not None:
            msg["text"] = text
        if photo_url is not None:
            msg["photo_url"] = photo_url
        name = event or ("message.image.received" if photo_url else "message.text.received")
        return {"event_name": name, "message": msg}

    def push(self, update: dict[str, Any]) -> None:
        self._queue.put_nowait(update)

    async def post_webhook(self, url: str, update: dict[str, Any], *, secret: str | None = None,
                           wrapped: bool = True) -> int:
        body = {"ok": True, "result": update} if wrapped else update
        headers = {"X-Bot-Api-Secret-Token": secret if secret is not None else self.webhook.get("secret_token", "")}
        async with ClientSession(timeout=ClientTimeout(total=10)) as http, \
                http.post(url, json=body, headers=headers) as resp:
            return resp.status

    def texts(self, chat_id: str | None = None) -> list[str]:
        return [s.text for s in self.sent if chat_id is None or s.chat_id == chat_id]

    async def wait_for(self, pred: Callable[[], Any], limit: float = 10) -> Any:
        return await _wait_for(pred, limit)
