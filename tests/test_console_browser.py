"""The web console in Debian's Chromium (Playwright for Python, the system ``chromium``; no browser
download): the link comes from the web chat (/dangnhap), the browser logs in with it and sees the
overview at desktop and phone sizes. Screenshots go to /tmp/work/shots/ (a failing test saves one
under its tmp dir)."""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlmodel import select

from bot.demo import DEMO_SCHOOL_NAME, create_demo_school
from bot.i18n import Translator
from bot.runtime import Runtime
from storage.models import Approval, ApprovalStage, Person, School, StageStatus

try:
    from playwright.async_api import async_playwright
except ImportError:  # pragma: no cover - depends on the machine
    async_playwright = None  # type: ignore[assignment]

CHROMIUM = shutil.which("chromium")
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SHOTS = Path("/tmp/work/shots")
LINK = re.compile(r"https?://[^\s<\"]+/admin/login/[A-Za-z0-9_\-]+")

pytestmark = pytest.mark.skipif(
    async_playwright is None or CHROMIUM is None,
    reason="needs Playwright for Python (pip install playwright) and a system chromium on PATH (apt install chromium)")


@pytest.fixture
async def rt(runtime: Runtime) -> Runtime:
    runtime.db.run_sync(lambda s: create_demo_school(s))
    await runtime.start(scheduler=False)
    return runtime


def _principal_and_teachers(rt: Runtime) -> tuple[int, int, list[int]]:
    def go(s: Any) -> tuple[int, int, list[int]]:
        school = s.exec(select(School).where(School.name == DEMO_SCHOOL_NAME)).one()
        people = list(s.exec(select(Person).where(Person.school_id == school.id)))
        principal = next(p for p in people if "principal" in p.roles)
        return school.id, principal.id, [p.id for p in people if "teacher" in p.roles]
    return rt.db.run_sync(go)


def _waiting(rt: Runtime, school_id: int, requesters: list[int]) -> None:
    """Three requests waiting for the principal, from 20 minutes to 4 days old."""
    def go(s: Any) -> None:
        now = rt.services.clock.now()
        for n, (title, age) in enumerate((("Đơn xin nghỉ phép 2 ngày (việc gia đình)", timedelta(days=4)),
                                          ("Đề xuất sửa máy chiếu phòng 204", timedelta(hours=5)),
                                          ("Bài viết: Hội thi “Giai điệu tuổi hồng”", timedelta(minutes=20)))):
            ap = Approval(school_id=school_id, kind="test", subject=f"t{n}", requester_id=requesters[n % len(requesters)],
                          title=title, created_at=now - age)
            s.add(ap)
            s.flush()
            s.add(ApprovalStage(approval_id=ap.id, idx=0, role="principal", status=StageStatus.PENDING,
                                started_at=now - age))
    rt.db.run_sync(go)


async def _link_from_web_chat(rt: Runtime, person_id: int, n: int) -> str:
    base = f"http://127.0.0.1:{rt.web_port}"
    origin = {"Origin": base}
    async with aiohttp.ClientSession() as http:
        r = await http.post(base + "/web/api/open", json={"person_id": person_id, "event_id": f"open-{n:04d}"},
                            headers=origin)
        opened = await r.json()
        r = await http.post(base + "/web/api/send", headers=origin, json={
            "person_id": person_id, "event_id": f"login-{n:04d}", "text": "/dangnhap", "since": opened["rev"]})
        sent = await r.json()
    links = [m for c in sent["changes"] if c["from"] == "bot" for m in LINK.findall(c["text"])]
    assert len(links) == 1, sent["changes"]
    return links[0]


@asynccontextmanager
async def _page(viewport: dict[str, int], failure_shot: Path) -> AsyncIterator[Any]:
    assert async_playwright is not None
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(viewport=viewport, locale="vi-VN")
            context.set_default_timeout(10_000)
            page = await context.new_page()
            try:
                yield page
            except BaseException:
                await page.screenshot(path=str(failure_shot), full_page=True)
                raise
        finally:
            await browser.close()


@pytest.mark.parametrize("size", ["desktop", "phone"])
async def test_log_in_by_link_and_see_the_overview(rt: Runtime, size: str, tmp_path: Path) -> None:
    viewport = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}[size]
    school_id, principal, teachers = _principal_and_teachers(rt)
    _waiting(rt, school_id, teachers)
    tr = Translator("vi", rt.settings.tz)
    link = await _link_from_web_chat(rt, principal, 1)
    SHOTS.mkdir(parents=True, exist_ok=True)
    async with _page(viewport, tmp_path / "failure.png") as page:
        await page.goto(link)
        await page.locator("#login").wait_for()
        await page.screenshot(path=str(SHOTS / f"console-login-{size}.png"))
        await page.locator("#login").click()
        await page.locator("h1", has_text=tr.t("Overview")).wait_for()
        assert page.url.endswith("/admin/")
        count = await page.locator("#approval-count").inner_text()
        rows = page.locator("table.list tbody tr")
        assert int(count) == await rows.count() >= 3
        body = await page.locator("main").inner_text()
        assert "Đề xuất sửa máy chiếu phòng 204" in body and "4 ngày" in body and "20 phút" in body
        # nothing overflows sideways on a phone
        assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        await page.screenshot(path=str(SHOTS / f"console-overview-{size}.png"), full_page=True)

        # the same link a second time is refused with a clear page
        await page.goto(link)
        assert tr.t("This login link was already used") in await page.locator("h1").inner_text()

        # log out (the form carries the CSRF token), then the overview asks to log in again
        await page.goto(link.split("/admin/")[0] + "/admin/")
        await page.get_by_role("button", name=tr.t("Log out")).click()
        await page.locator("h1", has_text=tr.t("You have logged out")).wait_for()
        await page.goto(link.split("/admin/")[0] + "/admin/")
        assert tr.t("Please log in") in await page.locator("h1").inner_text()
