"""The footage workflow through the dispatcher with real ffmpeg on a synthetic Frigate archive:
request → approve → the exact clip is delivered and its SHA-256 is in the audit log."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select

from bot.flows.footage import steps as footage
from bot.flows.footage.models import Camera, FootageRequest
from bot.runtime import Runtime
from media.synth import make_archive
from storage import audit
from storage.models import Approval, School
from tests.helpers import RecordingChannel, inbound, make_person, make_school

# 2026-11-23 09:00 in Hà Nội = 02:00 UTC (the FixedClock's start); recordings 08:00–08:03 local.
REC_START = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("frigate")
    make_archive(root, "cong", REC_START, 120, segment_seconds=60, fps=2)
    # a gap of one minute, then one more minute
    make_archive(root, "cong", REC_START + timedelta(minutes=3), 60, segment_seconds=60, fps=2)
    return root


@pytest.fixture
def env(runtime, clock, archive):
    rt = runtime

    def seed(s):
        school = make_school(s)
        s.add(Camera(school_id=school.id, code="cong", name="Cổng chính", unit="Tổ bảo vệ",
                     source=f"frigate:{archive}"))
        return {"teacher": make_person(s, school, "Nguyễn Thị Vân", ["teacher"], link="t1").id,
                "principal": make_person(s, school, "Trần Văn Đức", ["principal"], link="p1").id,
                "it": make_person(s, school, "Lê Văn Tin", ["it"], link="i1").id,
                "school": school.id}

    ids = rt.db.run_sync(seed)
    return rt, rt.test_channel, ids, clock


async def _ask(rt, when: str, minutes: str = "1", date: str = "c:today") -> None:
    h = rt.dispatcher.handle
    await h(inbound("t1", command="camera"))
    await h(inbound("t1", text="cong CHINH"))  # part of the name, no diacritics
    await h(inbound("t1", **({"payload": date} if date.startswith("c:") else {"text": date})))
    await h(inbound("t1", text=when))
    await h(inbound("t1", payload=f"c:{minutes}"))
    await h(inbound("t1", payload="c:evidence"))


async def test_request_approve_deliver_with_hash_in_audit(env):
    rt, ch, ids, _ = env
    await _ask(rt, "8h00")
    assert "Cổng chính" in ch.texts("t1")[-1]
    await rt.dispatcher.handle(inbound("t1", payload="c:send"))
    ap = rt.db.run_sync(lambda s: s.exec(select(Approval)).one())
    assert [o for o in ch.sent if o.chat_id == "p1" and o.reply.buttons]
    await rt.dispatcher.handle(inbound("p1", payload=f"ap:{ap.id}:ok"))
    await rt.dispatcher.drain()
    videos = [o for o in ch.sent if o.chat_id == "t1" and o.reply.file]
    assert len(videos) == 1 and videos[0].reply.protect
    data = open(videos[0].reply.file.path, "rb").read()
    digest = hashlib.sha256(data).hexdigest()
    ev = rt.db.run_sync(lambda s: list(audit.events(s, action="footage.extracted")))
    assert ev[0].details["sha256"] == digest
    assert 58 <= ev[0].details["seconds"] <= 62
    assert rt.db.run_sync(lambda s: list(audit.events(s, action="footage.delivered")))
    assert rt.db.run_sync(lambda s: audit.verify(s)).ok
    # IT is told, with "keep as evidence"
    assert [o for o in ch.sent if o.chat_id == "i1" and o.reply.buttons]


async def test_window_across_two_segments(env):
    rt, ch, ids, _ = env
    await _ask(rt, "8:00", minutes="1")
    await rt.dispatcher.handle(inbound("t1", payload="c:retime"))
    await rt.dispatcher.handle(inbound("t1", text="08.00"))
    await rt.dispatcher.handle(inbound("t1", text="2 phút"))
    await rt.dispatcher.handle(inbound("t1", payload="c:security"))
    await rt.dispatcher.handle(inbound("t1", payload="c:send"))
    ap = rt.db.run_sync(lambda s: s.exec(select(Approval)).one())
    await rt.dispatcher.handle(inbound("p1", payload=f"ap:{ap.id}:ok"))
    await rt.dispatcher.drain()
    req = rt.db.run_sync(lambda s: s.exec(select(FootageRequest)).one())
    assert req.status == "delivered" and len(req.segments) == 2


async def test_gap_is_reported_before_asking(env):
    rt, ch, ids, _ = env
    await _ask(rt, "8h01", minutes="5")  # 08:01–08:06: 08:02–08:03 missing, 08:04–08:06 missing
    assert "⚠️" in ch.texts("t1")[-1]


async def test_no_recordings_says_so_plainly(env):
    rt, ch, ids, _ = env
    await _ask(rt, "7h00", minutes="5")
    assert "Cổng chính" in ch.texts("t1")[-1]
    assert not rt.db.run_sync(lambda s: s.exec(select(Approval)).all())
    last = ch.sent[-1].reply
    assert {b.payload for row in last.buttons for b in row} == {"c:retime", "c:cancel"}


async def test_rejection_extracts_nothing(env):
    rt, ch, ids, _ = env
    await _ask(rt, "8h00")
    await rt.dispatcher.handle(inbound("t1", payload="c:send"))
    ap = rt.db.run_sync(lambda s: s.exec(select(Approval)).one())
    await rt.dispatcher.handle(inbound("p1", payload=f"ap:{ap.id}:no"))
    await rt.dispatcher.handle(inbound("p1", payload="c:skip"))
    await rt.dispatcher.drain()
    req = rt.db.run_sync(lambda s: s.exec(select(FootageRequest)).one())
    assert req.status == "rejected" and req.clip_path is None


async def test_forged_approval_payload_extracts_nothing(env):
    rt, ch, ids, _ = env
    await _ask(rt, "8h00")
    await rt.dispatcher.handle(inbound("t1", payload="c:send"))
    ap = rt.db.run_sync(lambda s: s.exec(select(Approval)).one())
    await rt.dispatcher.handle(inbound("t1", payload=f"ap:{ap.id}:ok"))
    await rt.dispatcher.handle(inbound("t1", payload="fx:1:retry"))
    await rt.dispatcher.drain()
    req = rt.db.run_sync(lambda s: s.exec(select(FootageRequest)).one())
    assert req.status == "pending" and req.clip_path is None


async def test_bad_inputs_get_clear_replies(env):
    rt, ch, ids, _ = env
    h = rt.dispatcher.handle
    await h(inbound("t1", command="camera"))
    await h(inbound("t1", text="nhà xe không tồn tại"))
    assert "camera" in ch.texts("t1")[-1].lower()
    await h(inbound("t1", payload="c:cam999"))
    await h(inbound("t1", text="Cổng"))
    await h(inbound("t1", text="31/02"))
    assert "21/11" in ch.texts("t1")[-1]
    await h(inbound("t1", text="30/11/2026"))  # future
    await h(inbound("t1", payload="c:today"))
    await h(inbound("t1", text="25h99"))
    await h(inbound("t1", text="23h30"))  # later today: future
    await h(inbound("t1", text="8h"))
    await h(inbound("t1", text="999"))
    last = ch.texts("t1")[-1]
    assert "30" in last
    conv_state = rt.db.run_sync(lambda s: s.exec(select(footage.FootageRequest)).all())
    assert conv_state == []


async def test_retention_deletes_old_clip_but_keeps_evidence(env):
    rt, ch, ids, clock = env
    for _ in range(2):
        await _ask(rt, "8h00")
        await rt.dispatcher.handle(inbound("t1", payload="c:send"))
    aps = rt.db.run_sync(lambda s: s.exec(select(Approval).order_by(Approval.id)).all())
    for ap in aps:
        await rt.dispatcher.handle(inbound("p1", payload=f"ap:{ap.id}:ok"))
    await rt.dispatcher.drain()
    reqs = rt.db.run_sync(lambda s: s.exec(select(FootageRequest).order_by(FootageRequest.id)).all())
    assert all(r.clip_path for r in reqs)
    await rt.dispatcher.handle(inbound("t1", payload=f"fx:{reqs[0].id}:keep"))  # a teacher may not
    await rt.dispatcher.handle(inbound("i1", payload=f"fx:{reqs[0].id}:keep"))
    await rt.dispatcher.handle(inbound("i1", text="Biên bản vụ việc ngày 23/11"))
    clock.advance(days=rt.settings.clip_retention_days + 1)
    await rt.dispatcher.run_unit(footage.retention_tick)
    kept, gone = rt.db.run_sync(lambda s: s.exec(select(FootageRequest).order_by(FootageRequest.id)).all())
    assert kept.evidence and kept.deleted_at is None and open(kept.clip_path, "rb").read(4)
    assert gone.deleted_at is not None
    import os

    assert not os.path.exists(gone.clip_path)
    ev = rt.db.run_sync(lambda s: list(audit.events(s, action="footage.evidence")))
    assert len(ev) == 1 and ev[0].actor_id == ids["it"]


async def _rule_tick(rt) -> None:
    """One scheduler tick of every reminder rule (as the leader), then the background work."""
    from bot.engine.reminders import Scheduler

    sched = Scheduler(rt)
    try:
        await sched.tick()
    finally:
        sched.leadership.release()  # on PostgreSQL the advisory lock would outlive this test helper
    await rt.dispatcher.drain()


def _add_guard_lead(rt) -> int:
    def go(s):
        school = s.exec(select(School)).one()
        return make_person(s, school, "Phạm Văn Gác", ["guard_lead"], link="g1").id
    return rt.db.run_sync(go)


async def test_review_every_15_days_goes_to_guard_lead_and_it_once(env):
    rt, ch, ids, clock = env
    _add_guard_lead(rt)
    await _rule_tick(rt)
    notices = [o for o in ch.sent if "Điều 5.2" in o.reply.text]
    assert sorted(o.chat_id for o in notices) == ["g1", "i1"]  # not the teacher, not the principal
    assert {b.payload for o in notices for row in o.reply.buttons for b in row} == {"fx:review"}
    assert "Cổng chính" in notices[0].reply.text
    # the next ticks and a restart of the process repeat nothing in the same period
    await _rule_tick(rt)
    rt2 = Runtime(rt.settings, clock=clock, db=rt.db)
    ch2 = RecordingChannel()
    rt2.sender.register(ch2)
    await _rule_tick(rt2)
    assert len([o for o in ch.sent + ch2.sent if "Điều 5.2" in o.reply.text]) == 2
    # 15 days later: the next period, once each again
    clock.advance(days=15)
    await _rule_tick(rt)
    assert len([o for o in ch.sent if "Điều 5.2" in o.reply.text]) == 4


async def test_review_notice_waits_for_the_end_of_quiet_hours(env):
    rt, ch, ids, clock = env
    clock.t = datetime(2026, 11, 30, 15, 0, tzinfo=UTC)  # 22:00 in Hà Nội, on the day a period starts
    await _rule_tick(rt)
    assert not [o for o in ch.sent if "Điều 5.2" in o.reply.text]
    clock.t = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)  # 07:00
    await _rule_tick(rt)
    assert [o.chat_id for o in ch.sent if "Điều 5.2" in o.reply.text] == ["i1"]


async def test_archive_clip_from_the_review_needs_no_approval(env):
    rt, ch, ids, clock = env
    h = rt.dispatcher.handle
    await h(inbound("t1", payload="fx:review"))  # a teacher may not
    assert "guard lead" in ch.texts("t1")[-1] or "bảo vệ" in ch.texts("t1")[-1]
    await h(inbound("i1", payload="fx:review"))
    await h(inbound("i1", text="cổng"))
    await h(inbound("i1", payload="c:today"))
    await h(inbound("i1", text="8h00"))
    await h(inbound("i1", payload="c:1"))  # no purpose asked: it is the review
    assert "5.2" in ch.texts("i1")[-1]
    await h(inbound("i1", payload="c:send"))
    await rt.dispatcher.drain()
    req = rt.db.run_sync(lambda s: s.exec(select(FootageRequest)).one())
    assert req.archive and req.status == "delivered" and req.approval_id is None and req.purpose == "review"
    assert not rt.db.run_sync(lambda s: s.exec(select(Approval)).all())
    assert rt.db.run_sync(lambda s: list(audit.events(s, action="footage.archive")))
    assert [o for o in ch.sent if o.chat_id == "i1" and o.reply.file]


async def test_prefilled_request_goes_straight_to_the_duration(env):
    from bot.core import Handler, Step

    rt, ch, ids, clock = env
    cam_id = rt.db.run_sync(lambda s: s.exec(select(Camera)).one().id)

    def opener(ctx):
        seed = {"camera_id": cam_id, "date": "2026-11-23", "time": "08:00"}
        if ctx.inbound.payload == "tst:bad":
            seed = {"camera_id": 9999, "date": "2099-01-01", "time": "25:00"}
        return Step.start_flow("footage", seed=seed)

    rt.registry.add_handler(Handler(opener, prefix="tst"))
    await rt.dispatcher.handle(inbound("t1", payload="tst:go"))
    assert "Cổng chính" in ch.texts("t1")[-1] and "8:00" in ch.texts("t1")[-1]
    await rt.dispatcher.handle(inbound("t1", payload="c:1"))
    await rt.dispatcher.handle(inbound("t1", payload="c:security"))
    assert "Cổng chính" in ch.texts("t1")[-1]
    await rt.dispatcher.handle(inbound("t1", payload="c:send"))
    req = rt.db.run_sync(lambda s: s.exec(select(FootageRequest)).one())
    assert req.start_at == datetime(2026, 11, 23, 1, 0, tzinfo=UTC) and req.duration_s == 60
    # a seed is only a hint: an unknown camera and an impossible time are asked again
    await rt.dispatcher.handle(inbound("t1", payload="tst:bad"))
    assert [b.payload for row in ch.sent[-1].reply.buttons for b in row][0].startswith("c:cam")


async def test_progress_edits_the_extracting_message(env, monkeypatch):
    from bot.core import Reply
    from bot.flows.footage import jobs as footage_jobs

    rt, ch, ids, clock = env
    monkeypatch.setattr(footage_jobs, "PROGRESS_EVERY_S", 0.0)
    teacher = ids["teacher"]
    await rt.dispatcher.run_unit(lambda ctx: ctx.send_to(
        ctx.session.get(footage_jobs.Person, teacher),
        Reply("⏳", track=(footage_jobs.PROGRESS_KIND, "77"))))
    progress = footage_jobs.Progress(rt, 77, "vi")
    for phase, f in (("cut", 0.05), ("cut", 0.3), ("cut", 0.35), ("encode", 0.6), ("encode", 1.0)):
        progress(phase, f)
    await rt.dispatcher.drain()
    texts = [r.text for _, r in ch.edits]
    assert len(texts) == 2 and "30%" in texts[0] and "60%" in texts[1]  # ≥10 % steps, not the end
    assert all(ref.chat_id == "t1" for ref, _ in ch.edits)


_ = School
