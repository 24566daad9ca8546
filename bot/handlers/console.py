"""``/dangnhap``: a single-use link (10 minutes) that logs this person in to the web console."""

from __future__ import annotations

from bot.channels.admin import auth
from bot.channels.admin.access import CONSOLE_ROLES
from bot.core import Ctx, Handler, Registry, Reply, Step
from bot.i18n import N_

PREFIX = "adm"


def login_link(ctx: Ctx) -> Step:
    person = ctx.person
    assert person is not None
    settings = ctx.settings
    if not auth.console_served(settings):
        return Step.stay(Reply(ctx.t("The web console is not enabled on this server. Ask the operator to serve "
                                     "it over https.")))
    token = auth.issue_link(ctx.session, person, ctx.now)
    port = getattr(ctx.services.host, "web_port", None)
    url = f"{auth.base_url(settings, port)}/admin/login/{token}"
    ctx.audit("admin.link", f"person:{person.id}")
    return Step.stay(Reply(
        ctx.t("Your login link to the school console (valid for 10 minutes, usable once, for you only — "
              "do not forward it):\n{url}", url=url),
        delete_after=int(auth.LINK_TTL.total_seconds())))


def register(reg: Registry) -> None:
    reg.add_handler(Handler(login_link, commands=("dangnhap",), prefix=PREFIX, roles=CONSOLE_ROLES,
                            description=N_("Log in to the school console on the web"), order=90))
