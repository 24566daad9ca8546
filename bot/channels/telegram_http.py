"""python-telegram-bot's networking over aiohttp (``TELEGRAM_HTTP_CLIENT=aiohttp``, the default).

python-telegram-bot talks to the Bot API through a :class:`~telegram.request.BaseRequest`; its own
one uses httpx. Measured on the benchmark machine (``bench/README.md``), an httpx request costs the
bot about 1 ms of CPU against 0.1–0.2 ms for aiohttp, which the bot already runs for the web chat,
the Zalo clients and the webhooks. With two or three Bot API calls per update that was the largest
single cost of an update, the same for a bare echo bot as for ours.

What stays as with python-telegram-bot's httpx request:

* the answers and the errors: :meth:`BaseRequest.post` / ``retrieve`` (not ours) turn the HTTP status
  and body into results and :class:`~telegram.error.TelegramError`\\ s (``RetryAfter`` on 429 …);
  transport failures become ``TimedOut`` / ``NetworkError``;
* the timeouts: connect, read, pool (waiting for a free connection), and for uploads the write
  timeout ``media_write_timeout`` (aiohttp has no separate write timeout: an upload is bounded by
  the sum of its timeouts instead);
* proxies from the environment (``HTTPS_PROXY``, ``NO_PROXY`` …), as httpx honours them — looked up
  once per host, not per request as aiohttp's ``trust_env`` does (it reads ``~/.netrc`` and the
  environment in a worker thread for every request);
* files are uploaded as ``multipart/form-data`` and downloads are read whole.

What differs: a request without files is sent as ``application/json`` (the Bot API accepts JSON
for every method but uploads) instead of a URL-encoded form; the Bot API reads both the same way.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from aiohttp.helpers import get_env_proxy_for_url
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData
from yarl import URL

_JSON = {"Content-Type": "application/json"}


class AiohttpRequest(BaseRequest):
    """A :class:`~telegram.request.BaseRequest` on one :class:`aiohttp.ClientSession`.

    Timeouts are in seconds (``None``: no limit); a timeout passed to a single call wins."""

    def __init__(self, *, connection_pool_size: int = 256, connect_timeout: float | None = 10.0,
                 read_timeout: float | None = 20.0, write_timeout: float | None = 30.0,
                 media_write_timeout: float | None = 180.0, pool_timeout: float | None = 10.0) -> None:
        if connection_pool_size < 1:
            raise ValueError("connection_pool_size must be at least 1")
        self._pool_size = connection_pool_size
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._write_timeout = write_timeout
        self._media_write_timeout = media_write_timeout
        self._pool_timeout = pool_timeout
        self._session: aiohttp.ClientSession | None = None
        self._proxies: dict[tuple[str, str, int | None], tuple[URL | None, aiohttp.BasicAuth | None]] = {}

    @property
    def read_timeout(self) -> float | None:
        return self._read_timeout

    async def initialize(self) -> None:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._pool_size),
                headers={"User-Agent": self.USER_AGENT},
                raise_for_status=False)
            self._proxies.clear()  # the environment is read again after a restart

    async def shutdown(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

    def _proxy(self, url: str) -> tuple[URL | None, aiohttp.BasicAuth | None]:
        """The proxy the environment names for ``url`` (``HTTPS_PROXY`` …, ``NO_PROXY``), per host."""
        u = URL(url)
        key = (u.scheme, u.host or "", u.port)
        found = self._proxies.get(key)
        if found is None:
            try:
                found = get_env_proxy_for_url(u)
            except LookupError:
                found = (None, None)
            self._proxies[key] = found
        return found

    def _timeout(self, files: bool, read: Any, write: Any, connect: Any, pool: Any) -> aiohttp.ClientTimeout:
        default = BaseRequest.DEFAULT_NONE
        read = self._read_timeout if read is default else read
        connect = self._connect_timeout if connect is default else connect
        pool = self._pool_timeout if pool is default else pool
        if write is default:
            write = self._media_write_timeout if files else self._write_timeout
        # aiohttp's ``connect`` covers waiting for a pooled connection *and* opening one.
        acquire = None if connect is None or pool is None else connect + pool
        total = None
        if files and None not in (acquire, write, read):
            total = acquire + write + read  # an upload stuck while writing ends too
        return aiohttp.ClientTimeout(total=total, connect=acquire, sock_connect=connect, sock_read=read)

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: Any = BaseRequest.DEFAULT_NONE,
        write_timeout: Any = BaseRequest.DEFAULT_NONE,
        connect_timeout: Any = BaseRequest.DEFAULT_NONE,
        pool_timeout: Any = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        session = self._session
        if session is None or session.closed:
            raise RuntimeError("This AiohttpRequest is not initialized!")
        files = bool(request_data is not None and request_data.contains_files)
        data: Any = None
        headers: dict[str, str] | None = None
        if request_data is not None:
            if files:
                form = aiohttp.FormData(quote_fields=False)
                for name, value in request_data.json_parameters.items():
                    form.add_field(name, value)
                for name, (file_name, content, mime) in request_data.multipart_data.items():
                    form.add_field(name, content, filename=file_name, content_type=mime)
                data = form
            else:
                params = request_data.parameters
                if params:
                    data = json.dumps(params, ensure_ascii=False, separators=(",", ":")).encode()
                    headers = _JSON
        timeout = self._timeout(files, read_timeout, write_timeout, connect_timeout, pool_timeout)
        proxy, proxy_auth = self._proxy(url)
        try:
            async with session.request(method, url, data=data, headers=headers, timeout=timeout, proxy=proxy,
                                       proxy_auth=proxy_auth) as res:
                return res.status, await res.read()
        except TimeoutError as err:  # aiohttp's timeouts (connect, pool, read) included
            raise TimedOut from err
        except aiohttp.ClientError as err:
            # Never the URL in a message: it holds the bot's token.
            detail = str(err).replace(url, "<Bot API URL>")
            raise NetworkError(f"aiohttp.{type(err).__name__}: {detail}") from err
