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



# -- clips that fit the size cap; failures told apart ---------------------------------------------
LOBBY_START = REC_START + timedelta(minutes=10)  # 08:10 local


@pytest.fixture(scope="module")
def lobby_archive(tmp_path_factory):
    """Seven minutes of the lobby camera (08:10–08:17 local), too heavy to copy under a 1 MB cap."""
    root = tmp_path_factory.mktemp("lobby")
    make_archive(root, "sanh", LOBBY_START, 7 * 60, segment_seconds=60, fps=2)
    return root


@pytest.fixture(scope="module")
def hall_archive(tmp_path_factory):
    """Three minutes of the hall camera, with a microphone (08:20–08:23 local)."""
    root = tmp_path_factory.mktemp("hall")
    make_archive(root, "hoitruong", REC_START + timedelta(minutes=20), 3 * 60, segment_seconds=60, fps=2,
                 audio_bitrate=64_000)
    return root


def _add_camera(rt, ids, code: str, name: str, root) -> None:
    rt.db.run_sync(lambda s: s.add(Camera(school_id=ids["school"], code=code, name=name,
                                          source=f"frigate:{root}")))


async def _request(rt, camera: str, when: str, minutes: str, *, send: bool = True) -> None:
    h = rt.dispatcher.handle
    await h(inbound("t1", command="camera"))
    await h(inbound("t1", text=camera))
    await h(inbound("t1", payload="c:today"))
    await h(inbound("t1", text=when))
    await h(inbound("t1", text=minutes))
    if send:
        await h(inbound("t1", payload="c:evidence"))
        await h(inbound("t1", payload="c:send"))


async def _approve_all(rt) -> None:
    for ap in rt.db.run_sync(lambda s: s.exec(select(Approval).where(Approval.status == "pending")).all()):
        await rt.dispatcher.handle(inbound("p1", payload=f"ap:{ap.id}:ok"))
    await rt.dispatcher.drain()


def _buttons(reply) -> set[str]:
    return {b.payload for row in reply.buttons for b in row}


@pytest.mark.parametrize("runtime_options", [{"settings": {"clip_size_cap_mb": 1}}])
async def test_a_window_too_big_for_the_cap_is_refused_at_request_time_with_the_longest_that_fits(env, lobby_archive):
    from bot.flows.footage.service import clip_options
    from media.clips import lowest_quality_seconds

    rt, ch, ids, _ = env
    _add_camera(rt, ids, "sanh", "Sảnh tầng 1", lobby_archive)
    recorded = sum(f.stat().st_size for f in lobby_archive.rglob("*.mp4"))
    assert recorded > 3 * 1024 * 1024                       # a stream copy would not fit 1 MB by far
    assert int(lowest_quality_seconds(clip_options(rt.settings)) // 60) == 5
    await _request(rt, "sảnh", "8h10", "7", send=False)
    told = ch.texts("t1")[-1]
    assert "7 phút" in told and "1 MB" in told and "tối đa khoảng 5 phút" in told
    assert _buttons(ch.sent[-1].reply) == {"c:1", "c:5"}       # only durations that fit
    assert not rt.db.run_sync(lambda s: s.exec(select(Approval)).all())  # nobody was asked
    await rt.dispatcher.handle(inbound("t1", text="6"))         # still too long: told again
    assert "tối đa khoảng 5 phút" in ch.texts("t1")[-1]
    await rt.dispatcher.handle(inbound("t1", payload="c:5"))
    await rt.dispatcher.handle(inbound("t1", payload="c:evidence"))
    assert "Sảnh tầng 1" in ch.texts("t1")[-1]                  # the summary, then the approval
    await rt.dispatcher.handle(inbound("t1", payload="c:send"))
    await _approve_all(rt)
    req = rt.db.run_sync(lambda s: s.exec(select(FootageRequest)).one())
    assert req.status == "delivered" and req.clip_reencoded and req.duration_s == 300
    assert req.clip_size is not None and req.clip_size <= 1024 * 1024
    assert 295 <= (req.clip_duration or 0) <= 305


@pytest.mark.parametrize("runtime_options", [{"settings": {"clip_size_cap_mb": 1}}])
async def test_the_sound_is_left_out_to_fit_a_small_cap_and_the_caption_says_so(env, hall_archive):
    import json
    import subprocess

    rt, ch, ids, _ = env
    _add_camera(rt, ids, "hoitruong", "Hội trường", hall_archive)
    await _request(rt, "hội trường", "8h20", "3")
    await _approve_all(rt)
    req = rt.db.run_sync(lambda s: s.exec(select(FootageRequest)).one())
    assert req.status == "delivered" and "audio_dropped" in req.clip_warnings
    video = next(o for o in ch.sent if o.chat_id == "t1" and o.reply.file)
    assert "🔇" in video.reply.text and "bỏ âm thanh" in video.reply.text
    streams = json.loads(subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_type", "-of",
                                         "json", video.reply.file.path], capture_output=True, check=True).stdout)
    assert [s_["codec_type"] for s_ in streams["streams"]] == ["video"]
    assert req.clip_size is not None and req.clip_size <= 1024 * 1024
    ev = rt.db.run_sync(lambda s: list(audit.events(s, action="footage.extracted")))
    assert "audio_dropped" in ev[0].details["warnings"]


async def test_recordings_gone_after_the_approval_fail_without_a_retry_button(env, tmp_path):
    rt, ch, ids, _ = env
    root = tmp_path / "kho"
    files = make_archive(root, "kho", REC_START, 60, segment_seconds=60, fps=2)
    _add_camera(rt, ids, "kho", "Kho thiết bị", root)
    await _request(rt, "kho", "8h00", "1")
    for f in files:
        f.unlink()                                          # deleted by the recorder's own retention
    await _approve_all(rt)
    req = rt.db.run_sync(lambda s: s.exec(select(FootageRequest)).one())
    assert (req.status, req.error) == ("failed", "no_recordings")
    told = ch.texts("t1")[-1]
    assert f"#{req.id}" in told and "Không còn dữ liệu ghi hình" in told
    assert "thử lại" not in told and "Đầu ghi hình" not in told
    it = [o for o in ch.sent if o.chat_id == "i1" and f"#{req.id}" in o.reply.text][-1]
    assert not it.reply.buttons and "không thay đổi" in it.reply.text
    await rt.dispatcher.handle(inbound("i1", payload=f"fx:{req.id}:retry"))  # an old or typed button
    assert "không thay đổi" in ch.texts("i1")[-1]
    assert rt.db.run_sync(lambda s: s.get(FootageRequest, req.id)).status == "failed"


async def test_a_killed_ffmpeg_is_not_blamed_on_the_recorder_and_can_be_retried(env, tmp_path, monkeypatch):
    import media.clips

    rt, ch, ids, _ = env
    suicidal = tmp_path / "ffmpeg-oom"
    suicidal.write_text("#!/bin/sh\nkill -9 $$\n")           # as the out-of-memory killer ends ffmpeg
    suicidal.chmod(0o755)
    await _ask(rt, "8h00")
    await rt.dispatcher.handle(inbound("t1", payload="c:send"))
    monkeypatch.setattr(media.clips, "FFMPEG", str(suicidal))
    await _approve_all(rt)
    req = rt.db.run_sync(lambda s: s.exec(select(FootageRequest)).one())
    assert (req.status, req.error) == ("failed", "ffmpeg_killed")
    told = ch.texts("t1")[-1]
    assert "ffmpeg" in told and "bị dừng" in told and "Đầu ghi hình" not in told and "thử lại" in told
    it = [o for o in ch.sent if o.chat_id == "i1" and f"#{req.id}" in o.reply.text][-1]
    assert _buttons(it.reply) == {f"fx:{req.id}:retry"}
    monkeypatch.setattr(media.clips, "FFMPEG", "ffmpeg")      # memory freed: IT retries
    await rt.dispatcher.handle(inbound("i1", payload=f"fx:{req.id}:retry"))
    await rt.dispatcher.drain()
    assert rt.db.run_sync(lambda s: s.get(FootageRequest, req.id)).status == "delivered"


async def test_every_failure_kind_has_its_own_message_and_only_the_recorder_blames_the_recorder(env):
    from bot.flows.footage import jobs
    from media.clips import ERROR_KEYS
    from media.recordings import SOURCE_ERROR_KEYS

    rt, ch, ids, _ = env
    kinds = [*ERROR_KEYS, *SOURCE_ERROR_KEYS, "interrupted", "error", "something new"]
    assert set(ERROR_KEYS) | set(SOURCE_ERROR_KEYS) <= set(jobs.FAILURES)
    cam = rt.db.run_sync(lambda s: s.exec(select(Camera)).one().id)

    def make(s):
        reqs = [FootageRequest(school_id=ids["school"], requester_id=ids["teacher"], camera_id=cam,
                               start_at=REC_START, duration_s=60, purpose="security", status="extracting")
                for _ in kinds]
        s.add_all(reqs)
        s.flush()
        return [r.id for r in reqs]

    req_ids = rt.db.run_sync(make)
    reasons: dict[str, str] = {}
    for key, req_id in zip(kinds, req_ids, strict=True):
        await rt.dispatcher.run_unit(lambda ctx, k=key, r=req_id: jobs._failed(ctx, r, k))
        teacher = [o for o in ch.sent if o.chat_id == "t1" and f"#{req_id}:" in o.reply.text]
        it = [o for o in ch.sent if o.chat_id == "i1" and f"#{req_id}" in o.reply.text]
        assert len(teacher) == 1 and len(it) == 1, key
        text = teacher[0].reply.text
        reason = text.split(":", 1)[1]
        reasons[key] = reason
        retry = jobs.failure(key).retry
        assert ("thử lại" in text) == retry, key
        assert (_buttons(it[0].reply) == {f"fx:{req_id}:retry"}) == retry, key
        assert ("Đầu ghi hình" in text or "đầu ghi hình" in text) == (key in ("source_unreachable",
                                                                            "missing_credentials")), key
        assert "báo lỗi" not in text or key == "ffmpeg_failed", key
        assert text.isascii() is False and "{" not in text     # translated, placeholders filled
    assert not jobs.failure("too_big").retry and not jobs.failure("no_recordings").retry
    # the recording-source set-up errors share one message; every other kind has its own
    own = {k: v for k, v in reasons.items() if k not in SOURCE_ERROR_KEYS or k == "missing_credentials"}
    assert len(set(own.values())) == len(own) - 1                   # "something new" reads as "error"
    assert reasons["something new"] == reasons["error"]


_ = School
