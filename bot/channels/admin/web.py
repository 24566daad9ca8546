"""The console's pages under ``/admin`` (an aiohttp sub-application). Every handler reads the
session on the server, scopes by the session person's ``school_id`` and audits logins/logouts."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web
from markupsafe import Markup
from sqlmodel import Session, col, select

from bot.channels.admin import access, auth
from bot.engine import approvals
from bot.i18n import Translator
from storage import audit
from storage.models import Approval, ApprovalStatus, Person, School

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
COOKIE_KEY: web.RequestKey[str] = web.RequestKey("console_cookie", str)
CSP = ("default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")


# -- i18n: template strings go through our catalogue ---------------------------------------------
@jinja2.pass_context
def _gettext(context: Any, msgid: str, **values: Any) -> Markup:
    tr: Translator = context["tr"]
    return Markup(tr.t(msgid, **values))  # the msgid is catalogue text; tr.t escapes the values


@jinja2.pass_context
def _ngettext(context: Any, singular: str, plural: str, n: int, **values: Any) -> Markup:
    tr: Translator = context["tr"]
    return Markup(tr.tn(singular, plural, n, **values))


def make_env(app: web.Application) -> jinja2.Environment:
    env = aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(HERE / "templates"),
                               autoescape=jinja2.select_autoescape(["html"]), extensions=["jinja2.ext.i18n"],
                               undefined=jinja2.StrictUndefined)
    env.install_gettext_callables(gettext=_gettext, ngettext=_ngettext, newstyle=False)  # type: ignore[attr-defined]
    return env


@dataclass
class Console:
    runtime: Any
    failures: auth.FailureWindow

    # -- helpers ------------------------------------------------------------------------------
    @property
    def settings(self) -> Any:
        return self.runtime.settings

    def now(self) -> datetime:
        now: datetime = self.runtime.services.clock.now()
        return now

    def tr(self, person: Person | None = None) -> Translator:
        locale = person.locale if person is not None and person.locale else self.settings.default_locale
        return Translator(locale, self.settings.timezone)

    @staticmethod
    def ip(request: web.Request) -> str:
        return (request.remote or "")[:64]

    def page(self, request: web.Request, name: str, context: dict[str, Any], *, status: int = 200,
             person: Person | None = None) -> web.Response:
        ctx = {"tr": self.tr(person), "person": person, "csrf": "", "school": None, "nav": True,
               "active": "", **context}
        cookie = request.get(COOKIE_KEY)
        if cookie:
            ctx["csrf"] = auth.csrf_token(cookie)
        return aiohttp_jinja2.render_template(name, request, ctx, status=status)

    def refusal(self, request: web.Request, status: int, title: str, body: str) -> web.Response:
        return self.page(request, "message.html", {"title": title, "body": body, "nav": False}, status=status)

    async def current(self, request: web.Request) -> tuple[Person, School] | None:
        cookie = request.cookies.get(auth.COOKIE, "")
        if not cookie:
            return None
        now = self.now()

        def find(s: Session) -> tuple[Person, School] | None:
            person = auth.session_person(s, cookie, now)
            if person is None:
                return None
            school = s.get(School, person.school_id)
            return (person, school) if school is not None else None

        found = await self.runtime.db.run(find)
        if found is not None:
            request[COOKIE_KEY] = cookie
        return found

    def need_login(self, request: web.Request) -> web.Response:
        tr = self.tr()
        return self.refusal(request, 401, tr.t("Please log in"),
                            tr.t("Your session has ended or you have not logged in. Send /dangnhap to the bot "
                                 "in the chat to get a new login link."))

    # -- login by link ------------------------------------------------------------------------
    def _refused(self, request: web.Request, reason: str) -> web.Response:
        tr = self.tr()
        texts = {
            "invalid": (404, tr.t("This login link is not valid"),
                        tr.t("Check that you opened the whole link, or send /dangnhap to the bot for a new one.")),
            "used": (410, tr.t("This login link was already used"),
                     tr.t("Each link logs in only once. Send /dangnhap to the bot for a new one.")),
            "expired": (410, tr.t("This login link has expired"),
                        tr.t("A login link is valid for 10 minutes. Send /dangnhap to the bot for a new one.")),
            "revoked": (403, tr.t("You can no longer use the console"),
                        tr.t("Your account is no longer active or your role does not give access to the "
                             "console. Ask the school's IT staff if this is a mistake.")),
            "throttled": (429, tr.t("Too many attempts"),
                          tr.t("Too many wrong login links came from your address. Wait 15 minutes, then "
                               "send /dangnhap to the bot for a new link.")),
        }
        status, title, body = texts[reason]
        return self.refusal(request, status, title, body)

    async def login_page(self, request: web.Request) -> web.Response:
        """GET shows a button only: link previews (Telegram, Zalo) fetch the link without using it."""
        ip, now = self.ip(request), self.now()
        if self.failures.blocked(ip, now):
            return self._refused(request, "throttled")
        token = request.match_info.get("token", "")

        def check(s: Session) -> str:
            row = s.exec(select(auth.ConsoleLogin).where(auth.ConsoleLogin.token_hash == auth.digest(token))).first()
            if row is None:
                return "invalid"
            if row.used_at is not None:
                return "used"
            return "expired" if row.expires_at <= now else ""

        reason = await self.runtime.db.run(check) if 0 < len(token) <= 128 else "invalid"
        if reason:
            self.failures.fail(ip, now)
            return self._refused(request, reason)
        tr = self.tr()
        return self.page(request, "login.html", {"title": tr.t("Log in to the school console"), "nav": False,
                                                 "action": f"/admin/login/{token}"})

    async def login(self, request: web.Request) -> web.Response:
        ip, now = self.ip(request), self.now()
        if self.failures.blocked(ip, now):
            return self._refused(request, "throttled")
        token = request.match_info.get("token", "")

        def use(s: Session) -> auth.LoginResult:
            result = auth.consume_link(s, token, now, ip)
            p = result.person
            if p is not None:
                audit.record(s, action="admin.login" if not result.refusal else "admin.login_refused",
                             school_id=p.school_id, actor_id=p.id, channel="web", subject=f"person:{p.id}",
                             details={"ip": ip, **({"reason": result.refusal} if result.refusal else {})}, at=now)
            return result

        result = await self.runtime.db.run(use)
        if result.refusal:
            self.failures.fail(ip, now)
            return self._refused(request, result.refusal)
        resp = web.HTTPSeeOther("/admin/")
        resp.set_cookie(auth.COOKIE, result.cookie, max_age=int(auth.SESSION_TTL.total_seconds()), path="/admin",
                        httponly=True, samesite="Strict", secure=auth.is_https(self.settings))
        raise resp

    async def logout(self, request: web.Request) -> web.Response:
        found = await self.current(request)
        if found is None:
            return self.need_login(request)
        person, _school = found
        cookie = request[COOKIE_KEY]
        form = await request.post()
        if not auth.csrf_ok(cookie, str(form.get("csrf", ""))):
            tr = self.tr(person)
            return self.refusal(request, 403, tr.t("The form has expired"),
                                tr.t("Reload the page and try again."))
        now, ip = self.now(), self.ip(request)

        def end(s: Session) -> None:
            if auth.end_session(s, cookie, now):
                audit.record(s, action="admin.logout", school_id=person.school_id, actor_id=person.id,
                             channel="web", subject=f"person:{person.id}", details={"ip": ip}, at=now)

        await self.runtime.db.run(end)
        tr = self.tr(person)
        resp = self.refusal(request, 200, tr.t("You have logged out"),
                            tr.t("Send /dangnhap to the bot when you want to open the console again."))
        resp.del_cookie(auth.COOKIE, path="/admin")
        return resp

    # -- pages --------------------------------------------------------------------------------
    async def overview(self, request: web.Request) -> web.Response:
        found = await self.current(request)
        if found is None:
            return self.need_login(request)
        person, school = found
        tr = self.tr(person)
        now = self.now()
        today = tr.local(now).date()
        whole_school = access.sees(person, access.SCHOOL)

        def load(s: Session) -> list[dict[str, Any]]:
            if whole_school:
                aps = list(s.exec(select(Approval).where(Approval.school_id == school.id,
                                                         Approval.status == ApprovalStatus.PENDING)
                                  .order_by(col(Approval.created_at), col(Approval.id))))
            else:
                aps = approvals.pending_for(s, person, today)
            rows = []
            for ap in aps:
                if ap.school_id != school.id:  # never another school's
                    continue
                stage = approvals.current_stage(s, ap)
                waiting_on = approvals.stage_approvers(s, ap, stage) if stage is not None else []
                requester = s.get(Person, ap.requester_id) if ap.requester_id else None
                rows.append({"id": ap.id, "title": tr.t(ap.title), "created": tr.datetime(ap.created_at),
                             "age": _age(tr, now - ap.created_at), "old": (now - ap.created_at).days >= 2,
                             "requester": requester.full_name if requester else "",
                             "waiting_on": ", ".join(p.full_name for p in waiting_on)})
            return rows

        rows = await self.runtime.db.run(load)
        return self.page(request, "overview.html", {"title": tr.t("Overview"), "school": school, "active": "overview",
                                                    "approvals": rows, "whole_school": whole_school},
                         person=person)


def _age(tr: Translator, delta: Any) -> str:
    minutes = max(0, int(delta.total_seconds() // 60))
    if minutes < 60:
        return tr.tn("{n} minute", "{n} minutes", minutes)
    hours = minutes // 60
    if hours < 48:
        return tr.tn("{n} hour", "{n} hours", hours)
    return tr.tn("{n} day", "{n} days", hours // 24)


@web.middleware
async def _headers(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        resp = await handler(request)
    except web.HTTPException as exc:
        resp = exc
    resp.headers.setdefault("Content-Security-Policy", CSP)
    resp.headers.setdefault("X-Frame-Options", "DENY")
    resp.headers.setdefault("Referrer-Policy", "no-referrer")  # the login link never leaks
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    if not request.path.startswith("/admin/static/"):
        resp.headers.setdefault("Cache-Control", "no-store")
    if isinstance(resp, web.HTTPException):
        raise resp
    return resp


def build_app(runtime: Any) -> web.Application:
    sub = web.Application(middlewares=[_headers])
    make_env(sub)
    console = Console(runtime, auth.FailureWindow())
    if auth.console_served(runtime.settings):
        sub.router.add_get("/", console.overview)
        sub.router.add_get("/login/{token}", console.login_page)
        sub.router.add_post("/login/{token}", console.login)
        sub.router.add_post("/logout", console.logout)
        sub.router.add_static("/static/", HERE / "static")
    else:
        log.warning("web console disabled: WEB_HOST is not a loopback address and PUBLIC_BASE_URL is not "
                    "https (set CONSOLE_ALLOW_HTTP=true to serve it over plain http anyway)")

        async def disabled(request: web.Request) -> web.Response:
            tr = console.tr()
            return console.refusal(request, 403, tr.t("The console is not available over plain http"),
                                   tr.t("Ask the operator to serve the bot over https (PUBLIC_BASE_URL) "
                                        "to use the console from another computer."))

        sub.router.add_route("*", "/{tail:.*}", disabled)
    return sub
