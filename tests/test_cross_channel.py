"""One runtime serving Telegram and Zalo OA at once: footage requested on Zalo, approved with one tap
on Telegram, cut by real ffmpeg and delivered on Zalo as an expiring link whose bytes match the
SHA-256 in the audit log; the download itself is audited."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import aiohttp
import pytest
from sqlmodel import select

from bot.channels.zalo_oa import ZaloOAChannel
from bot.flows.footage.models import Camera, FootageRequest
from media.synth import make_archive
from storage import audit
from storage.models import Approval
from tests.fakes.tg_harness import payloads
from tests.fakes.zalo_servers import FakeZaloOA
from tests.helpers import make_person, make_school

REC_START = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)  # 08:00 in Hà Nội; the test clock says 09:00


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("frigate")
    make_archive(root, "cong", REC_START, 120, segment_seconds=60, fps=2)
    return root


@pytest.fixture
async def zalo():
    server = await FakeZaloOA().start()
    yield server
    await server.stop()


async def test_footage_asked_on_zalo_approved_on_telegram_delivered_as_link(zalo, start_telegram, archive):
    over = {"zalo_oa_app_id": zalo.app_id, "zalo_oa_secret_key": zalo.oa_secret_key,
            "zalo_oa_app_secret": zalo.app_secret, "zalo_oa_access_token": zalo.access_token,
            "zalo_oa_refresh_token": zalo.refresh_token, "zalo_oa_api_base": zalo.base_url,
            "zalo_oa_oauth_base": zalo.base_url}
    tg = await start_telegram(settings=over)
    (oa,) = [c for c in tg.rt.channels if isinstance(c, ZaloOAChannel)]
    url = f"http://127.0.0.1:{tg.rt.web_port}{tg.settings.zalo_oa_webhook_path}"

    def seed(s):
        school = make_school(s)
        cam = Camera(school_id=school.id, code="cong", name="Cổng chính", unit="Tổ bảo vệ",
                     source=f"frigate:{archive}")
        s.add(cam)
        s.flush()
        teacher = make_person(s, school, "Nguyễn Thị Vân", ["teacher"], link="zv", channel="zalo_oa")
        principal = make_person(s, school, "Trần Văn Đức", ["principal"])
        return teacher.id, principal.id, cam.id
    teacher, principal, cam_id = tg.seed(seed)
    tg.link(principal, 777)

    async def say(text: str) -> None:
        assert await zalo.post_event(url, zalo.event("user_send_text", "zv", text=text)) == 200
        await oa.idle()

    await say("/camera")
    assert f"c:cam{cam_id}" in [b["payload"] for m in zalo.messages for b in m.buttons]
    await say(f"c:cam{cam_id}")      # a tap comes back as its payload
    await say("Hôm nay")             # typing the button's label works too
    await say("8h00")
    await say("1")                   # the number of a numbered choice or the minutes
    await say("c:evidence")
    await say("c:send")
    ap = tg.seed(lambda s: s.exec(select(Approval)).one())
    card = await tg.wait_for_message(777, contains="Cổng chính")
    assert f"ap:{ap.id}:ok" in payloads(card)
    await tg.tap(777, f"ap:{ap.id}:ok")
    await tg.rt.dispatcher.drain()
    await oa.idle()
    req = tg.seed(lambda s: s.exec(select(FootageRequest)).one())
    assert req.status == "delivered" and req.duration_s == 60
    link_msg = next(m for m in reversed(zalo.messages) if m.user_id == "zv" and "/zalo/dl/" in m.text)
    link = next(w for w in link_msg.text.split() if "/zalo/dl/" in w)
    async with aiohttp.ClientSession() as http, http.get(link) as resp:
        assert resp.status == 200
        body = await resp.read()
    extracted = tg.seed(lambda s: list(audit.events(s, action="footage.extracted")))
    assert hashlib.sha256(body).hexdigest() == extracted[0].details["sha256"] == req.clip_sha256
    downloads = tg.seed(lambda s: list(audit.events(s, action="media.download")))
    assert len(downloads) == 1 and downloads[0].actor_id == teacher
    decided = tg.seed(lambda s: list(audit.events(s, action="approval.decided")))
    assert decided[0].actor_id == principal and decided[0].channel == "telegram"
    assert tg.seed(lambda s: audit.verify(s)).ok
