"""Reading a request body with a size limit, however the client splits it into chunks."""

from __future__ import annotations

from aiohttp import web


async def read_body(request: web.Request, limit: int) -> bytes:
    """Up to ``limit`` bytes of the body (a longer body returns ``limit`` bytes, so the caller can
    refuse it as too large). ``StreamReader.read(n)`` alone returns only what has arrived so far."""
    body = bytearray()
    async for chunk in request.content.iter_chunked(64 * 1024):
        body.extend(chunk)
        if len(body) >= limit:
            return bytes(body[:limit])
    return bytes(body)
