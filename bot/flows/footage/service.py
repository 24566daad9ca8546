"""Footage pieces shared by the conversation (``steps.py``) and the cutting jobs (``jobs.py``): the
button namespace, who keeps the chain of custody, and the replies that carry or announce a clip."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from bot.core import Button, Ctx, OutFile, Reply, keyboard
from bot.flows.footage.models import Camera, FootageRequest
from bot.i18n import Translator
from bot.roles import BGH, Role
from storage.models import Person
from storage.people import people_with_role

if TYPE_CHECKING:
    from media.clips import ClipOptions

#: button namespace of the footage cards: ``fx:<id>:retry``, ``fx:<id>:keep``, ``fx:review``
PREFIX = "fx"


def when_text(tr: Translator, start: datetime, seconds: int) -> str:
    end = start + timedelta(seconds=seconds)
    return tr.t("{start} to {end} on {date}", start=tr.time(start), end=tr.time(end), date=tr.date(start))


def custody_people(ctx: Ctx, school_id: int) -> list[Person]:
    out: list[Person] = []
    for role in (Role.IT, Role.GUARD_LEAD, *BGH):
        for p in people_with_role(ctx.session, school_id=school_id, role=role):
            if all(p.id != q.id for q in out):
                out.append(p)
    return out


def clip_options(settings: Any, watermark: Any = None) -> ClipOptions:
    """How clips are cut for this bot (``CLIP_SIZE_CAP_MB``): the same options for the request-time
    estimate (``steps.py``) and the cut (``jobs.py``), so the two agree."""
    from media.clips import ClipOptions

    return ClipOptions(size_cap=settings.clip_size_cap_mb * 1024 * 1024, allow_partial=True, watermark=watermark)


def video_reply(tr: Translator, req: FootageRequest, cam: Camera) -> Reply:
    start = req.start_at
    caption = tr.t("🎥 Request #{id} · {camera}\n{window}\nSHA-256: {sha}…", id=req.id, camera=cam.name,
                   window=when_text(tr, start, req.duration_s), sha=(req.clip_sha256 or "")[:16])
    notes = set(req.clip_warnings or ())
    if "audio_dropped" in notes:
        caption += "\n" + tr.t("🔇 The sound was left out so that the clip fits the size limit.")
    elif "audio_lowered" in notes:
        caption += "\n" + tr.t("🔉 The sound was compressed so that the clip fits the size limit.")
    if "downscaled" in notes:
        caption += "\n" + tr.t("The picture was made smaller so that the clip fits the size limit.")
    return Reply(caption, file=OutFile(kind="video", path=req.clip_path or "", file_name=f"camera-{req.id}.mp4",
                                       mime="video/mp4"), protect=True)


def custody_notice(tr: Translator, req: FootageRequest, cam: Camera, requester: Person | None) -> Reply:
    """To IT, the guard lead and BGH: what was delivered, with “keep as evidence”."""
    return Reply(tr.t("🎥 The clip of request #{id} ({camera}, {window}) was delivered to {name}. "
                      "SHA-256: {sha}", id=req.id, camera=cam.name, window=when_text(tr, req.start_at, req.duration_s),
                      name=requester.full_name if requester else "?", sha=req.clip_sha256 or ""),
                 buttons=keyboard(Button(tr.t("🔒 Keep as evidence"), f"{PREFIX}:{req.id}:keep")))
