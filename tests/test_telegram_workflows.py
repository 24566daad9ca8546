"""Approvals and footage end to end through the real python-telegram-bot and the fake Bot API."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime

import pytest
from sqlmodel import select

from bot.engine import approvals
from bot.flows.footage.models import Camera, FootageRequest
from media.synth import make_archive
from storage import audit
from storage.models import Approval
from tests.fakes.tg_harness import TgHarness, payloads
from tests.helpers import make_person, make_school

REC_START = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)  # 08:00 in Hà Nội; the clock says 09:00
T, P, V1, V2 = 1001, 1002, 1003, 1004


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("frigate")
    make_archive(root, "cong", REC_START, 180, segment_seconds=60, fps=2)
    return root


@pytest.fixture
def tg(telegram, archive):
    h = telegram

    def seed(s):
        school = make_school(s)
        s.add(Camera(school_id=school.id, code="cong", name="Cổng chính", source=f"frigate:{archive}"))
        return {"teacher": make_person(s, school, "Nguyễn Thị Vân", ["teacher"]).id,
                "principal": make_person(s, school, "Trần Văn Đức", ["principal"]).id,
                "vp1": make_person(s, school, "Lê Thị Hoa", ["vice_principal"]).id,
                "vp2": make_person(s, school, "Phạm Văn Nam", ["vice_principal"]).id}

    ids = h.seed(seed)
    for key, uid in (("teacher", T), ("principal", P), ("vp1", V1), ("vp2", V2)):
        h.link(ids[key], uid)
    h.ids = ids  # type: ignore[attr-defined]
    return h


async def _request(tg: TgHarness, stages: list[approvals.StageSpec]) -> int:
    out: dict[str, int] = {}

    def fn(ctx):
        out["id"] = approvals.request(ctx, kind="test", subject="t", title="Footage request",
                                      fields=[("Purpose", "kiểm tra <script>")], stages=stages).id

    await tg.rt.dispatcher.run_unit(fn, person_id=tg.ids["teacher"])  # type: ignore[attr-defined]
    return out["id"]


def _status(tg: TgHarness, ap: int) -> str:
    return tg.seed(lambda s: s.get(Approval, ap).status)


async def test_approve_card_edited_and_requester_told(tg):
    ap = await _request(tg, [approvals.StageSpec(role="principal")])
    card = await tg.wait_for_message(P, contains=f"#{ap}")
    assert f"ap:{ap}:ok" in payloads(card)
    assert "kiểm tra <script>" in card.text  # escaped in HTML, shown as text
    await tg.tap(P, f"ap:{ap}:ok")
    assert _status(tg, ap) == "approved"
    await tg.fake.wait_until(lambda: card.edits, 5, "the card to be edited")
    assert "Trần Văn Đức" in tg.fake.last(P).text or any("Trần Văn Đức" in str(e) for e in card.edits)
    assert not payloads(tg.fake.bot_messages(P)[0]) or card.edits[-1].get("reply_markup") in (None, "", {})
    await tg.wait_for_message(T, contains="Trần Văn Đức")


async def test_reject_with_reason(tg):
    ap = await _request(tg, [approvals.StageSpec(role="principal")])
    await tg.wait_for_message(P, contains=f"#{ap}")
    await tg.tap(P, f"ap:{ap}:no")
    await tg.send(P, "Không đúng quy định")
    assert _status(tg, ap) == "rejected"
    await tg.wait_for_message(T, contains="Không đúng quy định")


async def test_double_tap_and_replay_one_decision(tg):
    ap = await _request(tg, [approvals.StageSpec(role="principal")])
    await tg.wait_for_message(P, contains=f"#{ap}")
    await tg.tap(P, f"ap:{ap}:ok")
    replies = await tg.tap(P, f"ap:{ap}:ok")
    assert any("Trần Văn Đức" in m.text for m in replies)
    decided = tg.seed(lambda s: list(audit.events(s, action="approval.decided")))
    assert len(decided) == 1


async def test_two_approvers_in_parallel_one_decision(tg):
    ap = await _request(tg, [approvals.StageSpec(role="vice_principal")])
    await tg.wait_for_message(V1, contains=f"#{ap}")
    await tg.wait_for_message(V2, contains=f"#{ap}")
    await asyncio.gather(tg.tap(V1, f"ap:{ap}:ok"), tg.tap(V2, f"ap:{ap}:ok"))
    decided = tg.seed(lambda s: list(audit.events(s, action="approval.decided")))
    assert len(decided) == 1 and _status(tg, ap) == "approved"


async def test_forged_payload_from_teacher_refused(tg):
    ap = await _request(tg, [approvals.StageSpec(role="principal")])
    await tg.wait_for_message(P, contains=f"#{ap}")
    # The teacher's client sends a callback with the principal's payload on one of her own messages.
    await tg.command(T, "menu")
    replies = await tg.tap(T, f"ap:{ap}:ok")  # no such button in her chat: a forged callback
    assert replies and _status(tg, ap) == "pending"
    assert tg.seed(lambda s: list(audit.events(s, action="approval.refused")))


async def test_delegation_inside_range_then_back(tg, clock):
    await tg.command(P, "uyquyen")
    await tg.tap(P, f"c:p{tg.ids['vp1']}")
    await tg.send(P, "hôm nay")
    await tg.tap(P, "c:yes")
    ap1 = await _request(tg, [approvals.StageSpec(role="principal")])
    await tg.wait_for_message(V1, contains=f"#{ap1}")
    await tg.tap(V1, f"ap:{ap1}:ok")
    assert _status(tg, ap1) == "approved"
    clock.advance(days=1)
    ap2 = await _request(tg, [approvals.StageSpec(role="principal")])
    await tg.wait_for_message(P, contains=f"#{ap2}")


async def test_escalation_fires_once_across_restart(tg, clock):
    ap = await _request(tg, [approvals.StageSpec(person_id=tg.ids["vp2"])])
    clock.advance(minutes=tg.settings.approval_escalate_after_minutes + 1)
    await tg.rt.dispatcher.run_unit(approvals.tick)
    await tg.restart()
    await tg.rt.dispatcher.run_unit(approvals.tick)
    assert len(tg.seed(lambda s: list(audit.events(s, action="approval.escalated")))) == 1
    cards = [m for m in tg.fake.bot_messages(P) if f"#{ap}" in m.text]
    assert len(cards) == 1


async def test_footage_request_approved_video_delivered_with_matching_hash(tg):
    await tg.command(T, "camera")
    await tg.send(T, "cổng")
    await tg.tap(T, "c:today")
    await tg.send(T, "8 giờ 00")
    await tg.tap(T, "c:1")
    await tg.tap(T, "c:work")
    await tg.tap(T, "c:send")
    ap = tg.seed(lambda s: s.exec(select(Approval)).one().id)
    await tg.wait_for_message(P, contains=f"#{ap}")
    await tg.tap(P, f"ap:{ap}:ok")
    video = await tg.wait_for_message(T, predicate=lambda m: m.media_kind == "video", timeout=60)
    assert video.protected
    digest = hashlib.sha256(video.file.data).hexdigest()
    ev = tg.seed(lambda s: list(audit.events(s, action="footage.extracted")))
    assert ev[0].details["sha256"] == digest and digest[:16] in video.text
    req = tg.seed(lambda s: s.exec(select(FootageRequest)).one())
    assert req.status == "delivered" and abs(req.clip_duration - 60) <= 1.5
