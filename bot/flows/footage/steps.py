"""``/camera`` — ask to use camera footage (seeds 000/001 Điều 3–4): camera → date → start time →
duration → purpose → summary (recordings checked) → the principal (or the active delegate)
approves with one tap → the exact clip is cut with ffmpeg and delivered privately; every step is
in the audit log (request, decision, extraction with SHA-256, delivery).

```mermaid
stateDiagram-v2
    [*] --> camera: /camera
    camera --> date: camera chosen (button or part of its name)
    date --> time: Hôm nay / Hôm qua / 21/11
    time --> duration: 8h30, 8:30, 08.30, 8 giờ 30
    duration --> duration: too big for the size cap (the longest window that fits is offered)
    duration --> purpose: 1 / 5 / 15 / 30 minutes or typed
    purpose --> other: Khác
    purpose --> confirm: recordings found
    other --> confirm
    confirm --> time: change the time
    confirm --> [*]: sent for approval (or extracted directly by BGH / guard lead / IT when enabled)
```
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any

from sqlmodel import col, select

from bot.core import (
    Button,
    Ctx,
    Flow,
    Handler,
    Inbound,
    Reply,
    Step,
    choice,
    choice_value,
    keyboard,
)
from bot.engine import approvals
from bot.flows.footage.models import Camera, FootageRequest, FootageStatus
from bot.flows.footage.service import PREFIX, clip_options
from bot.flows.footage.service import when_text as _when
from bot.flows.footage.settings import FootageSettings
from bot.i18n import N_, Translator
from bot.roles import Role
from bot.steps import FUTURE, TOO_OLD, UNREADABLE, Confirm, DayQuestion, parse_payload
from bot.text import fold, parse_id, parse_time
from storage.models import Approval, School

log = logging.getLogger(__name__)

REVIEW_PURPOSE = N_("Periodic footage review (archive)")
#: Who does the 15-day review (Điều 5.2) and may cut archive clips without approval (Điều 7–8).
REVIEW_ROLES = frozenset({Role.GUARD_LEAD, Role.IT, Role.PRINCIPAL, Role.VICE_PRINCIPAL})
PURPOSES: dict[str, str] = {
    "work": N_("Professional work"),
    "research": N_("Research"),
    "evidence": N_("Complaint or evidence"),
    "security": N_("Security"),
    "other": N_("Other"),
}
#: Roles named in Điều 7–8 that may extract without approval when the school enables it.
DIRECT_ROLES = frozenset({Role.PRINCIPAL, Role.VICE_PRINCIPAL, Role.GUARD_LEAD, Role.IT})
#: Roles that may keep a clip as evidence or retry a failed extraction.
CUSTODY_ROLES = frozenset({Role.PRINCIPAL, Role.VICE_PRINCIPAL, Role.GUARD_LEAD, Role.IT})
MAX_CAMERA_BUTTONS = 12
#: the day asked for: not in the future, not older than the recordings kept (checked per call)
DAY = DayQuestion(errors={
    UNREADABLE: N_("I could not read that date. Type it like 21/11 or 21/11/2026."),
    FUTURE: N_("That day is in the future. Which day do you need?"),
    TOO_OLD: N_("Recordings are kept for {n} days only, so {date} is no longer available."),
})
CONFIRM = Confirm(edit=N_("🕘 Another time"), edit_value="retime")


# -- helpers --------------------------------------------------------------------------------------
def cameras(ctx: Ctx) -> list[Camera]:
    assert ctx.person is not None
    return list(ctx.session.exec(select(Camera).where(Camera.school_id == ctx.person.school_id,
                                                      Camera.status == "active").order_by(col(Camera.name))))


def _window(ctx: Ctx) -> tuple[datetime, datetime]:
    start = datetime.fromisoformat(ctx.data["start"])
    return start, start + timedelta(seconds=int(ctx.data["duration"]))


def coverage_for(ctx_settings: Any, camera: Camera, start: datetime, end: datetime, now: datetime) -> Any:
    """The recordings covering the window (``media.recordings``), or None when the source is broken."""
    from media.recordings import SourceError, source_from_string

    try:
        source = source_from_string(camera.source, school_tz=ctx_settings.timezone,
                                    retention_days=ctx_settings.recording_retention_days)
        return source.coverage(camera.code, start, end, now=now)
    except SourceError:
        log.warning("camera %s has an unusable recording source", camera.id)
        return None


def may_archive(ctx: Ctx) -> bool:
    return ctx.person is not None and ctx.person.has_role(*REVIEW_ROLES)


def _may_extract_directly(ctx: Ctx) -> bool:
    assert ctx.person is not None and ctx.school is not None
    return FootageSettings.of(ctx.school).direct_extract and ctx.person.has_role(*DIRECT_ROLES)


# -- steps ----------------------------------------------------------------------------------------
def start(ctx: Ctx) -> Step:
    """Offer the school's cameras by place — or, when another workflow opened this one pre-filled
    (an incident's camera and time; the 15-day review), go straight to what is still missing."""
    cams = cameras(ctx)
    if not cams:
        return Step.done(Reply(ctx.t("No cameras are registered for your school yet. Ask IT to import the "
                                     "camera list.")))
    if ctx.data.get("archive") and not may_archive(ctx):
        ctx.data.pop("archive", None)
    seeded = ctx.data.get("camera_id")
    if seeded is not None:
        cam = next((c for c in cams if c.id == _int(seeded)), None)
        if cam is None:  # a seed is a hint, never trusted: unknown or other school's camera → ask
            ctx.data.pop("camera_id", None)
        else:
            ctx.data["camera_id"] = cam.id
            return _prefilled(ctx, cam)
    return Step.goto("camera", Reply(ctx.t("Which camera? Tap a place, or type part of its name."),
                                     buttons=keyboard(*[choice(c.name, f"cam{c.id}")
                                                        for c in cams[:MAX_CAMERA_BUTTONS]], per_row=2)))


def _int(v: Any) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def _prefilled(ctx: Ctx, cam: Camera) -> Step:
    """Continue from a seeded camera (and, when valid, a seeded date and time)."""
    from datetime import date as date_type

    try:
        d = date_type.fromisoformat(str(ctx.data.get("date", "")))
    except ValueError:
        d = None
    t = parse_time(str(ctx.data.get("time", ""))) if ctx.data.get("time") else None
    today = ctx.today()
    oldest = today - timedelta(days=ctx.settings.recording_retention_days)
    if d is not None and oldest <= d <= today:
        ctx.data["date"] = d.isoformat()
        if t is not None:
            local = datetime.combine(d, time(t.hour, t.minute), tzinfo=ctx.tr.tz)
            if local <= ctx.local_now():
                ctx.data["start"] = local.isoformat()
                mx = ctx.settings.footage_max_minutes
                options = [m for m in (1, 5, 15, 30) if m <= mx]
                return Step.goto("duration", Reply(
                    ctx.t("Camera: {name}, from {time} on {date}. How long? Tap a choice or type the number of "
                          "minutes (at most {max}).", name=cam.name, time=ctx.tr.time(local),
                          date=ctx.tr.date(local), max=mx),
                    buttons=keyboard(*[choice(ctx.t("{n} min", n=m), f"{m}") for m in options], per_row=4)))
        return Step.goto("time", Reply(ctx.t("Camera: {name}, {date}. From what time? For example 8h30, 8:30 or "
                                             "14 giờ 05.", name=cam.name, date=ctx.tr.date(d))))
    ctx.data.pop("date", None)
    return DAY.ask(ctx, "date", ctx.t("Camera: {name}. Which day?", name=cam.name))


def camera(ctx: Ctx, msg: Inbound) -> Step:
    """A camera from a button, or found by part of its name/code (diacritics and case forgiven)."""
    cams = cameras(ctx)
    value = choice_value(msg) or ""
    found: list[Camera] = []
    if value.startswith("cam") and parse_id(value[3:]) is not None:
        found = [c for c in cams if c.id == parse_id(value[3:])]
    elif msg.text:
        q = fold(msg.text)
        found = [c for c in cams if q and (q in fold(c.name) or q == fold(c.code))]
    if len(found) != 1:
        if found:
            return Step.stay(Reply(ctx.t("Several cameras match. Which one?"),
                                   buttons=keyboard(*[choice(c.name, f"cam{c.id}") for c in found[:12]], per_row=2)))
        return Step.stay(Reply(ctx.t("I found no camera by that name. Tap one of the places or type another part "
                                     "of its name.")))
    ctx.data["camera_id"] = found[0].id
    return DAY.ask(ctx, "date", ctx.t("Camera: {name}. Which day?", name=found[0].name))


def date_(ctx: Ctx, msg: Inbound) -> Step:
    """``Hôm nay``, ``Hôm qua``, ``21/11`` or ``21/11/2026``; not in the future, not past retention."""
    d = DAY.answer(ctx, msg, past_days=ctx.settings.recording_retention_days)
    if isinstance(d, Reply):
        return Step.stay(d)
    ctx.data["date"] = d.isoformat()
    return Step.goto("time", Reply(ctx.t("From what time? For example 8h30, 8:30 or 14 giờ 05.")))


def time_(ctx: Ctx, msg: Inbound) -> Step:
    """The start time, as people type it here."""
    t = parse_time(msg.text)
    if t is None:
        return Step.stay(Reply(ctx.t("I could not read that time. Type it like 8h30, 8:30 or 14 giờ 05.")))
    d = datetime.fromisoformat(ctx.data["date"]).date()
    local = datetime.combine(d, time(t.hour, t.minute), tzinfo=ctx.tr.tz)
    if local > ctx.local_now():
        return Step.stay(Reply(ctx.t("That time has not come yet. Please give an earlier time.")))
    ctx.data["start"] = local.isoformat()
    mx = ctx.settings.footage_max_minutes
    options = [m for m in (1, 5, 15, 30) if m <= mx]
    return Step.goto("duration", Reply(
        ctx.t("How long? Tap a choice or type the number of minutes (at most {max}).", max=mx),
        buttons=keyboard(*[choice(ctx.t("{n} min", n=m), f"{m}") for m in options], per_row=4)))


_MINUTES = re.compile(r"^\s*(\d{1,3})\s*(?:p|ph|phut|min|minutes?)?\s*$")


def duration(ctx: Ctx, msg: Inbound) -> Step:
    """Minutes, bounded by ``FOOTAGE_MAX_MINUTES``; the window may not reach into the future."""
    raw = choice_value(msg) or fold(msg.text or "")
    m = _MINUTES.match(raw)
    mx = ctx.settings.footage_max_minutes
    if not m or not 1 <= int(m.group(1)) <= mx:
        return Step.stay(Reply(ctx.t("Please give a number of minutes from 1 to {max}.", max=mx)))
    ctx.data["duration"] = int(m.group(1)) * 60
    start_l, end_l = _window(ctx)
    if end_l > ctx.local_now():
        return Step.stay(Reply(ctx.t("That window reaches into the future. Please choose a shorter duration.")))
    too_big = _too_big(ctx, start_l, end_l)
    if too_big is not None:
        return Step.stay(too_big)
    if ctx.data.get("archive"):
        ctx.data["purpose"] = "review"
        return _summary(ctx)
    return Step.goto("purpose", Reply(ctx.t("What is the footage for?"), buttons=keyboard(
        *[choice(ctx.t(label), key) for key, label in PURPOSES.items()], per_row=2)))


def _too_big(ctx: Ctx, start_l: datetime, end_l: datetime) -> Reply | None:
    """When the window's recordings cannot become a clip under ``CLIP_SIZE_CAP_MB`` even at the lowest
    acceptable quality (estimated from the recordings' files, ``media.clips.estimate_size``): say so
    and offer the longest window that fits. None when it fits or cannot be told (an NVR, no
    recordings — the summary reports those)."""
    from media.clips import estimate_size

    cam = ctx.session.get(Camera, ctx.data.get("camera_id"))
    cov = coverage_for(ctx.settings, cam, start_l, end_l, ctx.now) if cam is not None else None
    if cam is None or cov is None or not cov.segments:
        return None
    est = estimate_size(cov, clip_options(ctx.settings))
    if est is None or est.fits:
        return None
    longest = int(est.max_seconds // 60)
    minutes = int(ctx.data["duration"]) // 60
    cap = ctx.settings.clip_size_cap_mb
    if longest < 1:
        return Reply(ctx.t("Even one minute of {camera} is larger than a clip may be ({cap} MB), so no clip of it "
                           "can be sent. Ask IT to raise the size limit (CLIP_SIZE_CAP_MB), or type /huy to stop.",
                           camera=cam.name, cap=cap))
    options = sorted({m for m in (1, 5, 15, 30) if m < longest} | {longest})
    return Reply(ctx.t("{n} minutes of {camera} would be larger than a clip may be ({cap} MB), even at the lowest "
                       "picture quality and without sound. At most about {max} minutes fit: please choose a "
                       "shorter duration.", n=minutes, camera=cam.name, cap=cap, max=longest),
                 buttons=keyboard(*[choice(ctx.t("{n} min", n=m), f"{m}") for m in options], per_row=4))


def purpose(ctx: Ctx, msg: Inbound) -> Step:
    """One of the purposes of Điều 3–4; “Other” asks for a short text."""
    value = choice_value(msg)
    if value not in PURPOSES:
        return Step.stay(Reply(ctx.t("Please choose one of the buttons.")))
    ctx.data["purpose"] = value
    if value == "other":
        return Step.goto("other", Reply(ctx.t("Please describe the purpose in a few words.")))
    return _summary(ctx)


def other(ctx: Ctx, msg: Inbound) -> Step:
    """The free-text purpose (1–300 characters)."""
    text = (msg.text or "").strip()
    if not text or len(text) > 300:
        return Step.stay(Reply(ctx.t("Please describe the purpose in at most 300 characters.")))
    ctx.data["purpose_text"] = text
    return _summary(ctx)


def _summary(ctx: Ctx) -> Step:
    cam = ctx.session.get(Camera, ctx.data.get("camera_id"))
    if cam is None:
        return Step.done(Reply(ctx.t("That camera is no longer available.")))
    start_l, end_l = _window(ctx)
    cov = coverage_for(ctx.settings, cam, start_l, end_l, ctx.now)
    status = getattr(cov, "status", None)
    if cov is None or status in ("none", "too_old", "future"):
        return Step.goto("confirm", Reply(
            ctx.t("There are no recordings of {camera} for {window}. The recorder may have been off, or the "
                  "footage is no longer kept. Choose another time, or cancel.",
                  camera=cam.name, window=_when(ctx.tr, start_l, int(ctx.data["duration"]))),
            buttons=CONFIRM.buttons(ctx, send=False)))
    lines = [ctx.t("<b>Footage request</b>"),
             ctx.t("Camera: {name}", name=cam.name),
             ctx.t("Time: {window}", window=_when(ctx.tr, start_l, int(ctx.data["duration"]))),
             ctx.t("Purpose: {purpose}", purpose=_purpose_text(ctx.tr, ctx.data))]
    if status == "partial":
        missing = sum(g.seconds for g in cov.gaps)
        lines.append(ctx.t("⚠️ Part of this window was not recorded (about {n} minutes missing); the clip "
                           "will hold only what exists.", n=max(1, round(missing / 60))))
    ctx.data["partial"] = status == "partial"
    lines.append("")
    if ctx.data.get("archive"):
        lines.append(ctx.t("This is an archive clip of the periodic review (Điều 5.2): no approval is needed for "
                           "your role, and it is recorded in the audit log. Extract now?"))
    else:
        lines.append(ctx.t("Send this request to the principal for approval?") if not _may_extract_directly(ctx)
                     else ctx.t("Your role may extract directly. Extract now?"))
    return CONFIRM.ask(ctx, "\n".join(lines))


def _purpose_text(tr: Translator, data: dict[str, Any]) -> str:
    key = data.get("purpose", "other")
    if key == "review":
        return tr.t(REVIEW_PURPOSE)
    label = tr.t(PURPOSES.get(key, PURPOSES["other"]))
    return f"{label}: {data['purpose_text']}" if key == "other" and data.get("purpose_text") else label


def _retime(ctx: Ctx) -> Step:
    """Ask for another start time (the day stays)."""
    return Step.goto("time", Reply(ctx.t("From what time? For example 8h30, 8:30 or 14 giờ 05.")))


def _send(ctx: Ctx) -> Step:
    """Send for approval (or extract directly when the school allows the requester's role)."""
    person, school = ctx.person, ctx.school
    assert person is not None and school is not None and person.id is not None and school.id is not None
    cam = ctx.session.get(Camera, ctx.data.get("camera_id"))
    if cam is None:
        return Step.done(Reply(ctx.t("That camera is no longer available.")))
    start_l, _ = _window(ctx)
    req = FootageRequest(school_id=school.id, requester_id=person.id, camera_id=cam.id or 0, start_at=start_l,
                         duration_s=int(ctx.data["duration"]), purpose=ctx.data.get("purpose", "other"),
                         purpose_text=ctx.data.get("purpose_text", ""), created_at=ctx.now)
    ctx.session.add(req)
    ctx.session.flush()
    ctx.audit("footage.requested", f"footage:{req.id}", camera=cam.code, start=start_l.isoformat(),
              seconds=req.duration_s, purpose=req.purpose)
    if ctx.data.get("archive") and may_archive(ctx):
        req.archive, req.status = True, FootageStatus.APPROVED
        ctx.session.add(req)
        ctx.audit("footage.archive", f"footage:{req.id}", role=[r for r in person.roles if r in REVIEW_ROLES])
        schedule_extraction(ctx, req)
        return Step.done(Reply(ctx.t("Archive clip #{id} recorded. Extracting it now…", id=req.id)))
    if _may_extract_directly(ctx):
        req.status = FootageStatus.APPROVED
        ctx.session.add(req)
        ctx.audit("footage.direct", f"footage:{req.id}", role=[r for r in person.roles if r in DIRECT_ROLES])
        schedule_extraction(ctx, req)
        return Step.done(Reply(ctx.t("Request #{id} recorded. Extracting the clip now…", id=req.id)))
    ap = approvals.request(
        ctx, kind="footage", subject=f"footage:{req.id}", title=N_("Camera footage request"),
        fields=[(N_("Camera"), cam.name), (N_("Time"), _when(ctx.tr, start_l, req.duration_s)),
                (N_("Purpose"), _purpose_text(ctx.tr, ctx.data))],
        stages=[approvals.StageSpec(role=Role.PRINCIPAL)])
    req.approval_id = ap.id
    ctx.session.add(req)
    return Step.done(Reply(ctx.t("Request #{id} was sent to the principal. You will get the clip here as soon "
                                 "as it is approved.", id=req.id)))


confirm = CONFIRM.step(_send, on_edit=_retime)


# -- after the decision ---------------------------------------------------------------------------
def on_decided(ctx: Ctx, approval: Approval, outcome: str) -> None:
    """Approval hook: on approval cut and deliver the clip; on rejection just record it."""
    req = ctx.session.exec(select(FootageRequest).where(FootageRequest.approval_id == approval.id)).first()
    if req is None:
        return
    req.status = FootageStatus.APPROVED if outcome == "approved" else FootageStatus.REJECTED
    ctx.session.add(req)
    if outcome == "approved":
        schedule_extraction(ctx, req)


def schedule_extraction(ctx: Ctx, req: FootageRequest) -> None:
    runtime = ctx.services.host
    if runtime is None:
        log.warning("no runtime: footage %s will not be extracted", req.id)
        return
    req_id = req.id
    assert req_id is not None

    async def job() -> None:
        from bot.flows.footage.jobs import extract_and_deliver

        await extract_and_deliver(runtime, req_id)

    ctx.later(job)


# -- custody actions: retry, keep as evidence -----------------------------------------------------
def on_action(ctx: Ctx) -> Step:
    """``fx:<id>:retry`` / ``fx:<id>:keep`` — checked on the server against role and school."""
    person = ctx.person
    assert person is not None
    if ctx.inbound.payload == f"{PREFIX}:review":
        if not person.has_role(*REVIEW_ROLES):
            ctx.audit("footage.refused", "footage:review", action="review")
            return Step.stay(Reply(ctx.t("Only the guard lead, IT and the board cut archive clips of the review.")))
        return Step.start_flow("footage", seed={"archive": True})
    parsed = parse_payload(ctx.inbound.payload, PREFIX, ("retry", "keep"))
    if parsed is None:
        return Step.stay(Reply(ctx.t("That button is no longer valid.")))
    req = ctx.session.get(FootageRequest, parsed.id)
    if req is None or req.school_id != person.school_id or not person.has_role(*CUSTODY_ROLES):
        ctx.audit("footage.refused", f"footage:{parsed.id}", action=parsed.action)
        return Step.stay(Reply(ctx.t("You cannot do this for that footage request.")))
    if parsed.action == "retry":
        if req.status != FootageStatus.FAILED:
            return Step.stay(Reply(ctx.t("Request #{id} is not waiting for a retry.", id=req.id)))
        from bot.flows.footage.jobs import failure

        why = failure(req.error)
        if not why.retry:
            return Step.stay(Reply(ctx.t("Trying the extraction of request #{id} again would not change the "
                                         "outcome: {reason}", id=req.id, reason=ctx.t(why.reason))))
        req.status, req.resumes = FootageStatus.APPROVED, 0
        ctx.session.add(req)
        ctx.audit("footage.retry", f"footage:{req.id}")
        schedule_extraction(ctx, req)
        return Step.stay(Reply(ctx.t("Trying the extraction of request #{id} again…", id=req.id)))
    if req.evidence:
        return Step.stay(Reply(ctx.t("The clip of request #{id} is already kept as evidence.", id=req.id)))
    if req.deleted_at is not None or not req.clip_path:
        return Step.stay(Reply(ctx.t("The clip of request #{id} no longer exists.", id=req.id)))
    return Step.start_flow("footage_evidence", seed={"request_id": req.id})


def _evidence_start(ctx: Ctx) -> Step:
    """Ask why the clip must be kept."""
    return Step.goto("reason", Reply(ctx.t("Why must the clip of request #{id} be kept as evidence?",
                                           id=ctx.data.get("request_id"))))


def _evidence_reason(ctx: Ctx, msg: Inbound) -> Step:
    """Record who keeps the clip and why; it is then exempt from deletion."""
    reason = (msg.text or "").strip()
    if not reason or len(reason) > 500:
        return Step.stay(Reply(ctx.t("Please give the reason in at most 500 characters.")))
    req = ctx.session.get(FootageRequest, int(ctx.data.get("request_id", 0)))
    assert ctx.person is not None
    if req is None or req.school_id != ctx.person.school_id:
        return Step.done(Reply(ctx.t("That footage request no longer exists.")))
    req.evidence, req.evidence_by, req.evidence_reason = True, ctx.person.id, reason
    ctx.session.add(req)
    ctx.audit("footage.evidence", f"footage:{req.id}", reason=reason, sha256=req.clip_sha256)
    return Step.done(Reply(ctx.t("The clip of request #{id} will be kept as evidence.", id=req.id)))


def retention_tick(ctx: Ctx) -> None:
    """Delete clips older than ``CLIP_RETENTION_DAYS`` unless kept as evidence (audited)."""
    cutoff = ctx.now - timedelta(days=ctx.settings.clip_retention_days)
    rows = ctx.session.exec(select(FootageRequest).where(
        col(FootageRequest.clip_path).is_not(None), col(FootageRequest.deleted_at).is_(None),
        col(FootageRequest.evidence).is_(False), col(FootageRequest.extracted_at) < cutoff)).all()
    for req in rows:
        path = Path(req.clip_path or "")
        try:
            path.unlink(missing_ok=True)
        except OSError:
            log.warning("could not delete clip of footage request %s", req.id)
            continue
        req.deleted_at = ctx.now
        ctx.session.add(req)
        audit_school = ctx.session.get(School, req.school_id)
        from storage import audit

        audit.record(ctx.session, action="footage.clip_deleted", school_id=audit_school.id if audit_school else None,
                     subject=f"footage:{req.id}", details={"sha256": req.clip_sha256}, at=ctx.now)


EVIDENCE_FLOW = Flow(name="footage_evidence", title=N_("Keep a clip as evidence"), start=_evidence_start,
                     states={"reason": _evidence_reason}, in_menu=False)


#: commands and button namespaces that are not a conversation
HANDLERS: tuple[Handler, ...] = (
    Handler(on_action, prefix=PREFIX),
)
#: conversations started from a button or another workflow (not from the menu)
FLOWS: tuple[Flow, ...] = (
    EVIDENCE_FLOW,
)


FLOW = Flow(
    name="footage",
    command="camera",
    title=N_("Camera footage"),
    description=N_("Ask for a clip of camera footage"),
    icon="🎥",
    start=start,
    states={"camera": camera, "date": date_, "time": time_, "duration": duration, "purpose": purpose,
            "other": other, "confirm": confirm},
    order=10,
)

APPROVAL_HOOKS = {"footage": on_decided}


# -- 15-day review (Điều 5.2) -------------------------------------------------------------------
def review_notice(run: Any) -> None:
    """Every 15 days: the guard lead and IT get the camera list, what was extracted in the period,
    and a button to cut archive clips (no approval needed by their role)."""
    from bot.engine.reminders import RuleRun

    assert isinstance(run, RuleRun)
    school_id = run.school.id
    cams = list(run.session.exec(select(Camera).where(Camera.school_id == school_id, Camera.status == "active")
                                 .order_by(col(Camera.name))))
    if not cams:
        return
    days = int(run.param("days", 15))
    since = run.occurrence.at - timedelta(days=days)
    reqs = list(run.session.exec(select(FootageRequest).where(FootageRequest.school_id == school_id,
                                                              col(FootageRequest.created_at) >= since)))
    extracted = sum(1 for r in reqs if r.clip_sha256)
    evidence = sum(1 for r in reqs if r.evidence)

    def make(tr: Translator) -> Reply:
        lines = [tr.t("📋 <b>Camera footage review</b> (every {days} days, Điều 5.2)", days=days),
                 tr.t("Please review the recordings of these cameras and cut archive clips of anything that "
                      "matters:")]
        lines += [f"• {c.name}" + (f" — {c.unit}" if c.unit else "") for c in cams[:40]]
        if len(cams) > 40:
            lines.append(tr.t("… and {n} more.", n=len(cams) - 40))
        lines.append(tr.t("Since {date}: {n} clips extracted, {m} kept as evidence.", date=tr.date(since),
                          n=extracted, m=evidence))
        return Reply("\n".join(lines), buttons=keyboard(Button(tr.t("✂️ Cut an archive clip"), f"{PREFIX}:review")))

    for person in run.recipients():
        run.notify(person, make)


def _rules() -> list[Any]:
    from bot.engine.reminders import EveryNDays, Rule

    return [Rule(key="footage_review", title=N_("Camera footage review"), schedule=EveryNDays(days=15, hour=8),
                 fn=review_notice, roles=(Role.GUARD_LEAD, Role.IT), regulation="000/001 Điều 5.2", order=10)]


RULES = _rules()
