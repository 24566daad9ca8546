"""The web console's login through the chat (/dangnhap), sessions, CSRF and school scoping, on a real
runtime serving 127.0.0.1 (SQLite and PostgreSQL), driven by a plain aiohttp client."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from sqlmodel import select

from bot.channels.admin import auth
from bot.runtime import Runtime
from storage.models import (
    Approval,
    ApprovalStage,
    AuditEvent,
    ConsoleLogin,
    ConsoleSession,
    Person,
    StageStatus,
)
from tests.helpers import inbound

LINK = re.compile(r"(https?://[^\s<]+/admin/login/([A-Za-z0-9_\-]+))")
STAFF = {"the principal": ("Trần Văn Đức", ["principal"]), "a teacher": ("Lê Thị Hoa", ["teacher"]),
         "the IT teacher": ("Phạm Minh Tú", ["teacher", "it"])}


async def _serve(rt: Runtime) -> Runtime:
    await rt.start(scheduler=False)
    return rt


def _client() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))  # cookies for 127.0.0.1


def _local(rt: Runtime, url: str) -> str:
    """The link as the runtime on 127.0.0.1 serves it (the link itself may name the public address)."""
    path = url[url.index("/admin"):]
    return f"http://127.0.0.1:{rt.web_port}{path}"


async def _link(rt: Runtime, chat: Any) -> str:
    sent = await rt.dispatcher.handle(inbound(str(chat), command="dangnhap", text="/dangnhap"))
    texts = [o.reply.text for o in sent]
    found = [m for t in texts for m in LINK.findall(t)]
    assert len(found) == 1, texts
    return found[0][0]


def _approval(rt: Runtime, school_id: int, requester_id: int | None, title: str, age: timedelta) -> int:
    def go(s: Any) -> int:
        now = rt.services.clock.now()
        ap = Approval(school_id=school_id, kind="test", subject="t", requester_id=requester_id, title=title,
                      created_at=now - age)
        s.add(ap)
        s.flush()
        s.add(ApprovalStage(approval_id=ap.id, idx=0, role="principal", status=StageStatus.PENDING,
                            started_at=now - age))
        return ap.id
    return rt.db.run_sync(go)


def _audits(rt: Runtime, action: str) -> list[AuditEvent]:
    return rt.db.run_sync(lambda s: list(s.exec(select(AuditEvent).where(AuditEvent.action == action))))


async def test_link_logs_in_once_and_shows_only_this_schools_approvals(runtime: Runtime) -> None:
    rt = await _serve(runtime)
    cast = rt.enrol(STAFF)  # type: ignore[attr-defined]
    other = rt.enrol({"another principal": ("Ngô Bảo Châu", ["principal"])},  # type: ignore[attr-defined]
                     school="Trường THCS Khác", first_user=10)
    mine = _approval(rt, cast.school_id, cast["a teacher"].id, "Đơn xin nghỉ phép của cô Hoa", timedelta(days=3))
    _approval(rt, other.school_id, other["another principal"].id, "Bí mật trường khác", timedelta(hours=1))

    url = await _link(rt, cast["the principal"].chat)
    assert url.startswith(f"http://127.0.0.1:{rt.web_port}/admin/login/")
    token = LINK.search(url).group(2)  # type: ignore[union-attr]
    stored = rt.db.run_sync(lambda s: s.exec(select(ConsoleLogin)).one())
    assert stored.token_hash == auth.digest(token) and token not in stored.token_hash  # only the hash is kept
    assert stored.expires_at - stored.created_at == timedelta(minutes=10)

    async with _client() as http:
        async with http.get(url) as r:  # a link preview fetching it does not use it
            assert r.status == 200 and "Đăng nhập" in await r.text()
            assert r.headers["Referrer-Policy"] == "no-referrer"
        async with http.post(url, allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == "/admin/"
            cookie = r.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/admin" in cookie
        assert "Max-Age=28800" in cookie and "Secure" not in cookie  # plain http on loopback
        async with http.get(_local(rt, "/admin/")) as r:
            page = await r.text()
            assert r.status == 200
        assert "Trần Văn Đức" in page and "Đơn xin nghỉ phép của cô Hoa" in page and "Lê Thị Hoa" in page
        assert "3 ngày" in page and f">{mine}<" in page
        assert "Bí mật trường khác" not in page and "Ngô Bảo Châu" not in page
        assert re.search(r'id="approval-count">1<', page)

    async with _client() as again:  # the same link a second time, from another browser
        async with again.post(url, allow_redirects=False) as r:
            assert r.status == 410 and "đã được dùng" in await r.text()
        async with again.get(url) as r:
            assert r.status == 410
        async with again.get(_local(rt, "/admin/")) as r:
            assert r.status == 401 and "/dangnhap" in await r.text()
    logins = _audits(rt, "admin.login")
    assert [(e.actor_id, e.school_id) for e in logins] == [(cast["the principal"].id, cast.school_id)]
    assert token not in str(logins[0].details)


async def test_expired_link_and_session_are_refused(runtime: Runtime, clock: Any) -> None:
    rt = await _serve(runtime)
    cast = rt.enrol(STAFF)  # type: ignore[attr-defined]
    late = await _link(rt, cast["the IT teacher"].chat)
    soon = await _link(rt, cast["the IT teacher"].chat)
    async with _client() as http:
        async with http.post(soon, allow_redirects=False) as r:
            assert r.status == 303
        clock.advance(minutes=10, seconds=1)
        async with http.post(late, allow_redirects=False) as r:
            assert r.status == 410 and "hết hạn" in await r.text()
        async with http.get(_local(rt, "/admin/")) as r:
            assert r.status == 200  # the session lasts 8 hours
        clock.advance(hours=8)
        async with http.get(_local(rt, "/admin/")) as r:
            assert r.status == 401


async def test_revoked_person_is_refused_and_loses_the_session(runtime: Runtime) -> None:
    rt = await _serve(runtime)
    cast = rt.enrol(STAFF)  # type: ignore[attr-defined]
    first = await _link(rt, cast["the principal"].chat)
    second = await _link(rt, cast["the principal"].chat)
    async with _client() as http:
        async with http.post(first, allow_redirects=False) as r:
            assert r.status == 303

        def leave(s: Any) -> None:
            p = s.get(Person, cast["the principal"].id)
            p.status = "transferred"
            s.add(p)
        rt.db.run_sync(leave)
        async with http.get(_local(rt, "/admin/")) as r:
            assert r.status == 401
        async with http.post(second, allow_redirects=False) as r:
            assert r.status == 403 and "không còn" in await r.text()
    assert _audits(rt, "admin.login_refused")[0].details["reason"] == "revoked"


async def test_staff_without_console_role_and_strangers_get_no_link(runtime: Runtime) -> None:
    rt = await _serve(runtime)
    cast = rt.enrol(STAFF)  # type: ignore[attr-defined]
    sent = await rt.dispatcher.handle(inbound(str(cast["a teacher"].chat), command="dangnhap", text="/dangnhap"))
    assert not LINK.search(" ".join(o.reply.text for o in sent))
    assert any("không dành cho vai trò" in o.reply.text for o in sent), [o.reply.text for o in sent]
    sent = await rt.dispatcher.handle(inbound("stranger", command="dangnhap", text="/dangnhap"))
    assert sent and not LINK.search(" ".join(o.reply.text for o in sent))
    assert rt.db.run_sync(lambda s: s.exec(select(ConsoleLogin)).all()) == []
    # the menu shows the console button to those allowed only
    menu = await rt.dispatcher.handle(inbound(str(cast["the principal"].chat), command="menu", text="/menu"))
    payloads = [b.payload for o in menu for row in o.reply.buttons for b in row]
    assert "adm:login" in payloads
    menu = await rt.dispatcher.handle(inbound(str(cast["a teacher"].chat), command="menu", text="/menu"))
    assert "adm:login" not in [b.payload for o in menu for row in o.reply.buttons for b in row]
    tapped = await rt.dispatcher.handle(inbound(str(cast["the principal"].chat), payload="adm:login"))
    assert LINK.search(" ".join(o.reply.text for o in tapped))


async def test_too_many_attempts_from_one_address(runtime: Runtime) -> None:
    rt = await _serve(runtime)
    cast = rt.enrol(STAFF)  # type: ignore[attr-defined]
    good = await _link(rt, cast["the principal"].chat)
    async with _client() as http:
        for n in range(auth.MAX_FAILURES):
            async with http.get(_local(rt, f"/admin/login/doan-mo-{n}")) as r:
                assert r.status == 404
        async with http.post(good, allow_redirects=False) as r:
            assert r.status == 429 and "Quá nhiều" in await r.text()
    # the link was not used up by the refusal
    assert rt.db.run_sync(lambda s: s.exec(select(ConsoleLogin)).one()).used_at is None


async def test_logout_needs_the_csrf_token(runtime: Runtime) -> None:
    rt = await _serve(runtime)
    cast = rt.enrol(STAFF)  # type: ignore[attr-defined]
    url = await _link(rt, cast["the principal"].chat)
    async with _client() as http:
        async with http.post(url) as r:  # follows the redirect to the overview
            page = await r.text()
            assert r.status == 200
        csrf = re.search(r'name="csrf" value="([0-9a-f]{64})"', page).group(1)  # type: ignore[union-attr]
        async with http.post(_local(rt, "/admin/logout"), data={"csrf": "x" * 64}) as r:
            assert r.status == 403
        async with http.post(_local(rt, "/admin/logout")) as r:
            assert r.status == 403
        async with http.get(_local(rt, "/admin/")) as r:
            assert r.status == 200  # still logged in
        async with http.post(_local(rt, "/admin/logout"), data={"csrf": csrf}) as r:
            assert r.status == 200 and "đã đăng xuất" in (await r.text()).lower()
        async with http.get(_local(rt, "/admin/")) as r:
            assert r.status == 401
    sessions = rt.db.run_sync(lambda s: s.exec(select(ConsoleSession)).all())
    assert len(sessions) == 1 and sessions[0].revoked_at is not None
    assert [e.actor_id for e in _audits(rt, "admin.logout")] == [cast["the principal"].id]


async def test_no_session_and_forged_cookie(runtime: Runtime) -> None:
    rt = await _serve(runtime)
    async with _client() as http:
        async with http.get(_local(rt, "/admin"), allow_redirects=False) as r:
            assert r.status == 302 and r.headers["Location"] == "/admin/"
        async with http.get(_local(rt, "/admin/")) as r:
            assert r.status == 401 and "Content-Security-Policy" in r.headers
        http.cookie_jar.update_cookies({auth.COOKIE: "gia-mao"})
        async with http.get(_local(rt, "/admin/")) as r:
            assert r.status == 401
        async with http.get(_local(rt, "/admin/static/console.css")) as r:
            assert r.status == 200


async def test_https_public_url_gives_secure_cookie(start_runtime: Any) -> None:
    rt = await _serve(await start_runtime(settings={"public_base_url": "https://truong.example.vn"}))
    cast = rt.enrol(STAFF)  # type: ignore[attr-defined]
    url = await _link(rt, cast["the principal"].chat)
    assert url.startswith("https://truong.example.vn/admin/login/")
    async with _client() as http:
        async with http.post(_local(rt, url), allow_redirects=False) as r:
            assert r.status == 303 and "Secure" in r.headers["Set-Cookie"]


@pytest.mark.parametrize("allow", [False, True])
async def test_non_loopback_host_needs_https_or_the_override(start_runtime: Any, allow: bool) -> None:
    rt = await _serve(await start_runtime(settings={"web_host": "0.0.0.0", "web_chat_enabled": False,
                                                    "console_allow_http": allow}))
    cast = rt.enrol(STAFF)  # type: ignore[attr-defined]
    sent = await rt.dispatcher.handle(inbound(str(cast["the principal"].chat), command="dangnhap",
                                              text="/dangnhap"))
    text = " ".join(o.reply.text for o in sent)
    async with _client() as http:
        async with http.get(_local(rt, "/admin/")) as r:
            status = r.status
    if allow:
        assert LINK.search(text) and status == 401
    else:
        assert not LINK.search(text) and "https" in text and status == 403


async def test_two_browsers_opening_one_link_at_once_log_in_once(runtime: Runtime) -> None:
    rt = await _serve(runtime)
    cast = rt.enrol(STAFF)  # type: ignore[attr-defined]
    url = await _link(rt, cast["the principal"].chat)

    async def open_it() -> int:
        async with _client() as http, http.post(url, allow_redirects=False) as r:
            return r.status

    statuses = sorted(await asyncio.gather(*(open_it() for _ in range(6))))
    assert statuses[0] == 303 and statuses[1:] == [410] * 5
    assert len(rt.db.run_sync(lambda s: s.exec(select(ConsoleSession)).all())) == 1


async def test_html_in_names_and_titles_is_shown_as_text(runtime: Runtime) -> None:
    rt = await _serve(runtime)
    cast = rt.enrol({"the principal": ("Trần Văn Đức", ["principal"]),  # type: ignore[attr-defined]
                     "a teacher": ("<script>alert(1)</script> Hoa", ["teacher"])})
    _approval(rt, cast.school_id, cast["a teacher"].id, "<b>Đơn</b> & <img src=x onerror=alert(2)>",
              timedelta(minutes=5))
    url = await _link(rt, cast["the principal"].chat)
    async with _client() as http, http.post(url) as r:
        page = await r.text()
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; Hoa" in page
    assert "<img src=x" not in page and "&lt;b&gt;Đơn&lt;/b&gt; &amp;" in page
