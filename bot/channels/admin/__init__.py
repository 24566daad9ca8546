"""The school's web console under ``/admin`` on the bot's own web server (log in through the chat
with ``/dangnhap``; no passwords)."""

from __future__ import annotations

from typing import Any

from aiohttp.web import Application, HTTPFound, Request, Response


def setup(runtime: Any, app: Application) -> None:
    """Add the console's routes under ``/admin`` (refusing pages when it may not be served)."""
    from bot.channels.admin.web import (
        build_app,  # (the submodule's name shadows nothing here: no ``web`` global)
    )

    async def to_slash(_request: Request) -> Response:
        raise HTTPFound("/admin/")

    app.router.add_get("/admin", to_slash)
    app.add_subapp("/admin/", build_app(runtime))
