"""Web chat end to end: a real Runtime serving the page, driven by headless Chromium (Playwright)
and by a plain aiohttp client for the protocol and security checks."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlmodel import select

from bot.channels.webchat import MAX_BODY, WebChat
from bot.core import Button, Ctx, Flow, MessageRef, Outbound, OutFile, Registry, Reply, Step, keyboard
from bot.demo import DEMO_SCHOOL_NAME, create_demo_school
from bot.flows import profile
from bot.handlers import menu as menu_handlers
from bot.handlers import onboarding
from bot.i18n import Translator
from bot.runtime import Runtime
from storage.models import ChannelIdentity, Person, School
from storage.people import people_with_role

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
try:
    from playwright.async_api import async_playwright
except ImportError:  # pragma: no cover - depends on the machine
    async_playwright = None  # type: ignore[assignment]

needs_browser = pytest.mark.skipif(
    async_playwright is None or not CHROMIUM.exists(),
    reason="needs Playwright for Python and /usr/bin/chromium (pip install playwright; apt install chromium)")

PASSWORD = "mật-khẩu-thử-42"


# -- a test-only flow: tell the principal something (Ctx.send_to to another person) --------------
def _ping_start(ctx: Ctx) -> Step:
    assert ctx.person is not None and ctx.school is not None and ctx.school.id is not None
    for principal in people_with_role(ctx.session, school_id=ctx.school.id, role="principal"):
        ctx.send_to(principal, Reply(f"Tin nhắn thử từ <b>{html.escape(ctx.person.full_name)}</b>: "
                                     f"{html.escape(ctx.inbound.args)}",
                                     buttons=keyboard(Button("OK", "m:help"))))
    return Step.done(Reply("Đã gửi."))


PING = Flow(name="ping", title="Ping", command="ping", start=_ping_start, states={}, in_menu=False)


def _registry() -> Registry:
    reg = Registry()
    onboarding.register(reg)
    menu_handlers.register(reg)
    reg.add_flow(profile.FLOW)
    reg.add_flow(PING)
    return reg


@pytest.fixture
def runtime_options() -> dict[str, Any]:
    """The shared runtime with the onboarding and menu handlers, the profile and a test flow only."""
    return {"registry": _registry()}


async def _serve(rt: Runtime) -> Runtime:
    """The demo school in the database, then the bot started (the web chat served)."""
    rt.db.run_sync(lambda s: create_demo_school(s))
    await rt.start()
    return rt


@pytest.fixture
async def rt(runtime: Runtime) -> Runtime:
    return await _serve(runtime)


def _base(rt: Runtime) -> str:
    return f"http://127.0.0.1:{rt.web_port}"


def _person_id(rt: Runtime, role: str) -> int:
    def go(s: Any) -> int:
        school = s.exec(select(School).where(School.name == DEMO_SCHOOL_NAME)).one()
        people = [p for p in s.exec(select(Person).where(Person.school_id == school.id)) if role in p.roles]
        assert len(people) == 1
        assert people[0].id is not None
        return people[0].id
    return rt.db.run_sync(go)


def _web(rt: Runtime) -> WebChat:
    return next(c for c in rt.channels if isinstance(c, WebChat))


def _session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))  # cookies for 127.0.0.1


# ---------------------------------------------------------------------------------------------
# Browser
# ---------------------------------------------------------------------------------------------
@needs_browser
async def test_browser_profile_email_and_message_to_another_person(rt: Runtime) -> None:
    tr = Translator("vi", rt.settings.tz)
    base = _base(rt)
    teacher_id, principal_id = _person_id(rt, "teacher"), _person_id(rt, "principal")
    new_email = "van.nguyen@demo-ngocthuy.edu.vn"
    assert async_playwright is not None
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(viewport={"width": 390, "height": 800}, locale="vi-VN")
            context.set_default_timeout(10_000)
            errors: list[str] = []
            page = await context.new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))

            # The principal's page is open first (the card for them must arrive there).
            boss = await context.new_page()
            boss.on("pageerror", lambda exc: errors.append(str(exc)))
            await boss.goto(f"{base}/#p{principal_id}")
            await boss.locator(".msg.bot .btn").first.wait_for()

            # The teacher picks themself from the list (names and Vietnamese role titles).
            await page.bring_to_front()  # a background tab's animation frames are throttled
            await page.goto(base + "/")
            teacher_button = page.locator(f'.person[data-person-id="{teacher_id}"]')
            await teacher_button.wait_for()
            assert tr.t("Teacher") in await teacher_button.inner_text()
            await teacher_button.click()

            # Menu → "My profile" (its Vietnamese title) → change e-mail → type it.
            title = f"{profile.FLOW.icon} {tr.t(profile.FLOW.title)}".strip()
            await page.locator(".msg.bot .btn", has_text=title).last.click()
            await page.locator(".msg.bot .btn", has_text=tr.t("✏️ Change e-mail")).last.click()
            await page.locator(".msg.bot", has_text=tr.t("Send your e-mail address (for example "
                                                         "vannt@school.edu.vn):")).wait_for()
            await page.locator("#message").fill(new_email)
            await page.locator("#message").press("Enter")
            confirmation = tr.t("Your e-mail is now {email}.", email=new_email)
            await page.locator(".msg.bot", has_text=confirmation).wait_for()
            assert rt.db.run_sync(lambda s: s.get(Person, teacher_id).email) == new_email  # type: ignore[union-attr]
            # The profile card's bold title is real markup from the catalogue.
            assert await page.locator(".msg.bot b", has_text=tr.t("<b>Your profile</b>")[3:-4]).count() >= 1
            await page.screenshot(path="/tmp/webchat.png")
            await page.locator(".msg.bot .btn", has_text=tr.t("✅ Done")).last.click()
            await page.locator(".msg.bot", has_text=tr.t("Your profile is saved.")).wait_for()

            # User text with markup is shown as text, never run.
            evil = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2"><b>đậm</b>'
            await page.locator("#message").fill(evil)
            await page.locator("#send").click()
            mine = page.locator(".msg.me").last
            await mine.wait_for()
            await page.locator(".msg.bot", has_text=tr.t("Choose what you would like to do:")).last.wait_for()
            assert await mine.inner_text() == evil
            assert await page.locator(".messages img").count() == 0
            assert await mine.locator("b").count() == 0
            assert await page.evaluate("window.__pwned") is None

            # A message to ANOTHER person (the principal) arrives on their open page.
            await page.locator("#message").fill("/ping họp lúc 8h30")
            await page.locator("#message").press("Enter")
            card = boss.locator(".msg.bot", has_text="Tin nhắn thử từ")
            await card.wait_for()
            assert "họp lúc 8h30" in await card.inner_text()
            assert await card.locator("b", has_text="Nguyễn Thị Vân").count() == 1
            assert await card.locator(".btn", has_text="OK").count() == 1

            # Edits replace it in place; deletes remove it.
            count = await boss.locator(".msg").count()
            message_id = await card.get_attribute("data-id")
            assert message_id
            ref = MessageRef("web", f"p{principal_id}", message_id)
            edited = '✅ <i>Đã xem</i> &lt;img src=x onerror="alert(1)"&gt; <a href="/x">liên kết</a>\nhết'
            assert await _web(rt).edit(ref, Reply(edited))
            await boss.locator(f'.msg[data-id="{message_id}"] i', has_text="Đã xem").wait_for()
            shown = boss.locator(f'.msg[data-id="{message_id}"]')
            assert await shown.inner_text() == '✅ Đã xem <img src=x onerror="alert(1)"> <a href="/x">liên kết</a>\nhết'
            assert await shown.locator("img, a").count() == 0
            assert await shown.locator("br").count() == 1
            assert await boss.locator(".msg").count() == count
            assert await boss.locator(f'.msg[data-id="{message_id}"] .btn').count() == 0
            assert await _web(rt).delete(ref)
            await boss.locator(f'.msg[data-id="{message_id}"]').wait_for(state="detached")

            # A reload shows the recent history again.
            await page.reload()
            await page.locator(".msg.bot", has_text=confirmation).wait_for()
            assert errors == []
        finally:
            await browser.close()


# ---------------------------------------------------------------------------------------------
# Protocol and security (plain aiohttp client)
# ---------------------------------------------------------------------------------------------
async def test_open_links_person_and_duplicate_event_is_processed_once(rt: Runtime) -> None:
    base, teacher = _base(rt), _person_id(rt, "teacher")
    origin = {"Origin": base}
    async with _session() as http:
        r = await http.post(base + "/web/api/open", json={"person_id": teacher, "event_id": "open-0001"},
                            headers=origin)
        opened = await r.json()
        assert r.status == 200 and opened["person"]["id"] == teacher
        assert any(b["payload"] == "m:profile" for c in opened["changes"] for row in c["buttons"] for b in row)
        ident = rt.db.run_sync(lambda s: s.exec(select(ChannelIdentity).where(
            ChannelIdentity.channel == "web")).one())
        assert (ident.person_id, ident.external_id, ident.chat_id) == (teacher, f"p{teacher}", f"p{teacher}")

        before = rt.dispatcher.processed
        event = {"person_id": teacher, "event_id": "evt-dup-0001", "text": "/hoso", "since": opened["rev"]}
        first = await (await http.post(base + "/web/api/send", json=event, headers=origin)).json()
        second = await (await http.post(base + "/web/api/send", json=event, headers=origin)).json()
        assert first["ok"] and second["ok"]
        assert rt.dispatcher.processed == before + 1
        cards = [c for c in second["changes"] if c["from"] == "bot"]
        assert len(cards) == 1 and "Nguyễn Thị Vân" in cards[0]["text"]
        assert [c["text"] for c in second["changes"] if c["from"] == "me"] == ["/hoso"]

        # A button tap (payload) goes to the active step.
        tap = {"person_id": teacher, "event_id": "evt-tap-0001", "payload": "c:done", "label": "Xong",
               "since": second["rev"]}
        done = await (await http.post(base + "/web/api/send", json=tap, headers=origin)).json()
        tr = Translator("vi", rt.settings.tz)
        assert [c["text"] for c in done["changes"]] == ["Xong", tr.t("Your profile is saved.")]

        # The same over a WebSocket, with the answer pushed.
        async with http.ws_connect(f"{base}/web/api/ws?person_id={teacher}", headers=origin) as ws:
            await ws.send_json({"type": "event", "event_id": "evt-ws-00001", "text": "/menu"})
            seen: list[str] = []
            while not any(tr.t("What would you like to do?") in t for t in seen):
                msg = await ws.receive_json(timeout=10)
                assert msg["type"] == "changes"
                seen += [c["text"] for c in msg["changes"]]
            assert seen[0] == "/menu"


async def test_oversized_and_malformed_bodies_are_rejected(rt: Runtime) -> None:
    base, teacher = _base(rt), _person_id(rt, "teacher")
    origin = {"Origin": base}
    async with _session() as http:
        big = {"person_id": teacher, "event_id": "evt-big-0001", "text": "x" * (MAX_BODY + 10)}
        r = await http.post(base + "/web/api/send", json=big, headers=origin)
        assert r.status == 413
        r = await http.post(base + "/web/api/send", data=b"{not json", headers={
            **origin, "Content-Type": "application/json"})
        assert r.status == 400 and (await r.json())["error"]
        r = await http.post(base + "/web/api/send", json={"person_id": teacher, "event_id": "bad id!"},
                            headers=origin)
        assert r.status == 400
        r = await http.post(base + "/web/api/send", json={"person_id": 99999, "event_id": "evt-nobody-1",
                                                          "text": "hi"}, headers=origin)
        assert r.status == 404
        async with http.ws_connect(f"{base}/web/api/ws?person_id={teacher}", headers=origin) as ws:
            await ws.send_str(json.dumps({"type": "event", "event_id": "evt-big-0002", "text": "x" * MAX_BODY}))
            msg = await ws.receive(timeout=10)
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
    assert rt.db.run_sync(lambda s: s.exec(select(ChannelIdentity)).first()) is not None  # the socket linked the person
    assert rt.dispatcher.processed == 0


async def test_foreign_origin_and_host_are_refused(rt: Runtime) -> None:
    base, teacher = _base(rt), _person_id(rt, "teacher")
    event = {"person_id": teacher, "event_id": "evt-csrf-0001", "text": "/hoso"}
    async with _session() as http:
        r = await http.post(base + "/web/api/send", json=event, headers={"Origin": "http://evil.example"})
        assert r.status == 403
        r = await http.post(base + "/web/api/send", json=event)  # no Origin at all
        assert r.status == 403
        with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
            await http.ws_connect(f"{base}/web/api/ws?person_id={teacher}",
                                  headers={"Origin": "http://evil.example"})
        assert exc.value.status == 403
        # DNS rebinding: a foreign host name pointing at 127.0.0.1 is not served without a password.
        r = await http.get(base + "/web/api/people", headers={"Host": "evil.example"})
        assert r.status == 403
        r = await http.get(base + "/web/api/people")
        assert r.status == 200
    assert rt.dispatcher.processed == 0


async def test_password_mode(start_runtime: Any) -> None:
    rt = await _serve(await start_runtime(registry=_registry(), settings={"web_chat_password": PASSWORD}))
    base, teacher = _base(rt), _person_id(rt, "teacher")
    origin = {"Origin": base}
    async with _session() as http:
        page = await http.get(base + "/")
        assert page.status == 200 and "app.js" in await page.text()
        strings = await (await http.get(base + "/web/api/strings")).json()
        assert strings["password"] is True and strings["authenticated"] is False
        assert (await http.get(base + "/web/api/people")).status == 401
        r = await http.post(base + "/web/api/open", json={"person_id": teacher, "event_id": "open-0002"},
                            headers=origin)
        assert r.status == 401
        r = await http.post(base + "/web/api/login", json={"password": "sai"}, headers=origin)
        assert r.status == 401
        r = await http.post(base + "/web/api/login", json={"password": PASSWORD})  # no Origin: CSRF
        assert r.status == 403
        r = await http.post(base + "/web/api/login", json={"password": PASSWORD}, headers=origin)
        assert r.status == 200
        cookie = r.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and PASSWORD not in cookie
        people = await http.get(base + "/web/api/people")
        assert people.status == 200
        names = [p["name"] for s in (await people.json())["schools"] for p in s["people"]]
        assert "Nguyễn Thị Vân" in names
        r = await http.post(base + "/web/api/open", json={"person_id": teacher, "event_id": "open-0003"},
                            headers=origin)
        assert r.status == 200
        await http.post(base + "/web/api/logout", json={}, headers=origin)
        assert (await http.get(base + "/web/api/people")).status == 401
    async with _session() as other:  # a forged cookie is worth nothing
        other.cookie_jar.update_cookies({"webchat_auth": "9999999999.deadbeef"})
        assert (await other.get(base + "/web/api/people")).status == 401


async def test_files_are_served_by_unguessable_token(rt: Runtime, tmp_path: Path) -> None:
    base, teacher = _base(rt), _person_id(rt, "teacher")
    doc = tmp_path / "bien-ban.txt"
    doc.write_text("Biên bản họp", encoding="utf-8")
    web = _web(rt)
    mid = await web.send(Outbound("web", f"p{teacher}", Reply("Tệp đính kèm", file=OutFile(
        "document", str(doc), file_name="bien-ban.txt", mime="text/plain")), teacher))
    assert mid
    async with _session() as http:
        r = await http.post(base + "/web/api/open", json={"person_id": teacher}, headers={"Origin": base})
        entry = next(c for c in (await r.json())["changes"] if c["id"] == mid)
        url = entry["file"]["url"]
        assert entry["file"]["kind"] == "document" and len(url.rsplit("/", 1)[1]) >= 32
        r = await http.get(base + url)
        assert r.status == 200 and (await r.read()).decode() == "Biên bản họp"
        assert r.headers["Content-Disposition"].startswith("attachment")
        assert (await http.get(base + "/web/files/not-a-real-token")).status == 404


async def test_page_not_served_when_disabled(start_runtime: Any) -> None:
    rt = await _serve(await start_runtime(registry=_registry(), settings={"web_chat_enabled": False}))
    async with _session() as http:
        assert (await http.get(_base(rt) + "/")).status == 404
        assert (await http.get(_base(rt) + "/web/api/people")).status == 404
