"""Cutting and delivering an approved clip, outside the event that approved it.

Runs as background work after the approval's unit has committed: claim the request (a
conditional update, so a double run or a restart never cuts twice at once), tell the requester
``Đang trích xuất…``, cut with ffmpeg (``media.clips``), then in one unit record the clip's
SHA-256, size and segments in the request and the audit log and send the video privately with
``protect_content`` (the caption says when the sound was lowered or left out to fit the size cap).
A failure is explained to the requester and to IT / the guard lead / BGH with its own reason
(:data:`FAILURES`: every ``media.clips`` error key, the recording-source errors and the job's own);
only a failure a retry can change carries IT's retry button. A partial clip is never delivered as if
complete.

A crash (``kill -9``, power cut) cannot strand a request: every scheduler tick :func:`recover`
starts the extraction of ``approved`` requests nobody is cutting (the process died between the
approval and the cut), and starts ``extracting`` requests nobody is cutting any more (the process
died while ffmpeg ran) once more, automatically — their partial work is deleted, ``resumes`` counts
it and the requester gets a fresh "cutting it again" message. A second interruption fails the
request with the reason "interrupted" (a clip that brings the process down would otherwise do it
at every start): the requester is told and IT gets the retry button. "Nobody is cutting" is exact:
this process keeps the ids it works on, and on PostgreSQL each cut holds an advisory lock the
server drops when its process dies."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import text, update
from sqlmodel import col, select

from bot.core import Button, Ctx, Host, Reply, keyboard
from bot.flows.footage.models import Camera, FootageRequest, FootageStatus
from bot.flows.footage.service import PREFIX, clip_options, custody_notice, custody_people, video_reply
from bot.flows.footage.settings import FootageSettings
from bot.i18n import N_, Translator
from storage.models import Person, School

if TYPE_CHECKING:
    from storage.db import Database

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a clip could not be made (a catalogue msgid, one sentence) and whether trying again can
    change it (only then does IT get a retry button)."""

    reason: str
    retry: bool


_SOURCE_SETUP = N_("The camera's recording source is not set up correctly (IT: check the camera list).")

#: every failure an extraction can end with, by key: ``media.clips.ERROR_KEYS``, the recording-source
#: errors (``media.recordings.SourceError``) and this module's own. Only ``source_unreachable`` blames
#: the recorder.
FAILURES: dict[str, Failure] = {
    # the recordings
    "no_recordings": Failure(N_("There are no recordings for that window any more."), retry=False),
    "too_old": Failure(N_("The recordings of that window are no longer kept."), retry=False),
    "future": Failure(N_("That window has not been recorded yet."), retry=True),
    "partial_coverage": Failure(N_("Part of that window was not recorded."), retry=False),
    "segment_missing": Failure(N_("A recording file of that window is missing."), retry=False),
    "segment_corrupt": Failure(N_("A recording file of that window is damaged."), retry=False),
    # the recorder and its set-up
    "source_unreachable": Failure(N_("The recorder could not be reached, or it refused to send the recording."),
                                  retry=True),
    "missing_credentials": Failure(N_("The recorder's user name or password is not set on the server."), retry=True),
    "bad_source": Failure(_SOURCE_SETUP, retry=True),
    "bad_url": Failure(_SOURCE_SETUP, retry=True),
    "bad_pattern": Failure(_SOURCE_SETUP, retry=True),
    "bad_option": Failure(_SOURCE_SETUP, retry=True),
    "bad_timezone": Failure(_SOURCE_SETUP, retry=True),
    # the cut
    "too_big": Failure(N_("The clip cannot be made small enough to send, even at the lowest picture quality and "
                          "without sound."), retry=False),
    "duration_mismatch": Failure(N_("The cut clip was not as long as the window, so it was not sent."), retry=True),
    "timeout": Failure(N_("Cutting the clip took too long."), retry=True),
    "ffmpeg_killed": Failure(N_("The video tool (ffmpeg) was stopped before it finished, for example because the "
                                "server ran out of memory."), retry=True),
    "ffmpeg_failed": Failure(N_("The video tool (ffmpeg) reported an error while cutting the clip."), retry=True),
    "disk_full": Failure(N_("The server's disk is full, so the clip could not be written."), retry=True),
    # the assistant
    "interrupted": Failure(N_("The assistant was restarted twice while it was cutting the clip."), retry=True),
    "error": Failure(N_("An unexpected error occurred in the assistant while it was cutting the clip."),
                     retry=True),
}


def failure(key: str) -> Failure:
    """The failure of ``key``; an unknown key is an unexpected error (never the recorder's)."""
    return FAILURES.get(key, FAILURES["error"])


#: per running bot: ids of the requests this process is cutting (or about to claim).
_LIVE: weakref.WeakKeyDictionary[Any, set[int]] = weakref.WeakKeyDictionary()
#: PostgreSQL advisory lock namespace of a cut in progress (7318201: migrations, 7318202: scheduler).
LOCK_KEY = 7318203


def _live(runtime: Host) -> set[int]:
    return _LIVE.setdefault(runtime, set())


def _lock(db: Database, req_id: int) -> tuple[bool, Any]:
    """PostgreSQL: hold an advisory lock for request ``req_id`` on a dedicated connection while it is
    cut (the server releases it if this process dies). SQLite (one process): nothing to hold."""
    if db.is_sqlite:
        return True, None
    conn = db.engine.connect()
    try:
        got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k, :id)"), {"k": LOCK_KEY, "id": req_id}).scalar())
        conn.commit()
    except Exception:
        conn.invalidate()
        conn.close()
        raise
    if not got:
        conn.close()
        return False, None
    return True, conn


def _unlock(conn: Any) -> None:
    if conn is not None:
        conn.invalidate()  # closing the server connection drops its session locks
        conn.close()


def _work_dir(out: Path) -> Path:
    """The request's own scratch folder beside its clip (``cut_clip`` works inside it)."""
    return out.parent / f".{out.stem}.partial"


async def extract_and_deliver(runtime: Host, req_id: int) -> None:
    """Claim, cut and deliver request ``req_id`` (a no-op unless it is ``approved`` and nobody cuts it)."""
    live = _live(runtime)
    if req_id in live:
        return
    live.add(req_id)  # before the claim, so recover() never sees it claimed and not live
    conn = None
    try:
        got, conn = await asyncio.to_thread(_lock, runtime.db, req_id)
        if got:
            await _extract_and_deliver(runtime, req_id)
    finally:
        live.discard(req_id)
        if conn is not None:
            await asyncio.to_thread(_unlock, conn)


async def _extract_and_deliver(runtime: Host, req_id: int) -> None:
    from media.clips import ClipError, ClipOptions, Watermark, cut_clip
    from media.recordings import SourceError, source_from_string

    settings = runtime.settings
    claimed: dict[str, Any] = {}

    def claim(ctx: Ctx) -> None:
        res = ctx.session.execute(update(FootageRequest).where(
            col(FootageRequest.id) == req_id, col(FootageRequest.status) == FootageStatus.APPROVED)
            .values(status=FootageStatus.EXTRACTING, attempts=FootageRequest.attempts + 1)
            .execution_options(synchronize_session=False))
        if res.rowcount != 1:  # type: ignore[attr-defined]
            return
        req = ctx.session.get(FootageRequest, req_id)
        assert req is not None
        cam = ctx.session.get(Camera, req.camera_id)
        requester = ctx.session.get(Person, req.requester_id)
        school = ctx.session.get(School, req.school_id)
        claimed.update(source=cam.source if cam else "", code=cam.code if cam else "", start=req.start_at,
                       seconds=req.duration_s, name=requester.full_name if requester else "",
                       watermark=school is not None and FootageSettings.of(school).watermark,
                       school_id=req.school_id)
        if requester is not None:
            claimed["locale"] = requester.locale or settings.default_locale
            # After an interrupted cut: a fresh message, not the old "Extracting…" once more.
            ctx.send_to(requester, lambda tr: Reply(
                tr.t("⏳ The assistant was restarted while it was cutting the clip of request #{id}; cutting it "
                     "again…", id=req_id) if req.resumes else
                tr.t("⏳ Extracting the clip of request #{id}…", id=req_id), track=(PROGRESS_KIND, str(req_id))))

    await runtime.dispatcher.run_unit(claim, channel="footage")
    if not claimed:
        return
    start = claimed["start"]
    end = start + timedelta(seconds=int(claimed["seconds"]))
    out_dir = settings.media_dir / "clips" / str(claimed["school_id"])
    out = out_dir / f"request-{req_id}.mp4"
    work = _work_dir(out)
    coverage: Any = None
    options: ClipOptions | None = None
    try:
        source = source_from_string(claimed["source"], school_tz=settings.timezone,
                                    retention_days=settings.recording_retention_days)
        now = runtime.services.clock.now()
        coverage = await asyncio.to_thread(lambda: source.coverage(claimed["code"], start, end, now=now))
        if getattr(coverage, "status", "none") in ("none", "too_old", "future"):
            raise ClipError("no_recordings")
        options = clip_options(settings, watermark=Watermark(claimed["name"], str(req_id), start, settings.timezone)
                               if claimed["watermark"] else None)
        # Cut inside the request's scratch folder, then move into place: what a crash leaves behind
        # is recognisably this request's and is removed by recover().
        result = await cut_clip(coverage, work / out.name, options,
                                progress=Progress(runtime, req_id, claimed.get("locale")))
        os.replace(result.path, out)
    except (ClipError, SourceError) as exc:
        key = getattr(exc, "key", "error")
        log.warning("footage %s extraction failed: %s", req_id, key)
        longest = _longest_minutes(coverage, options) if key == "too_big" else None
        await runtime.dispatcher.run_unit(lambda ctx: _failed(ctx, req_id, key, longest_minutes=longest),
                                          channel="footage")
        return
    except OSError as exc:
        import errno

        key = "disk_full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "error"
        log.warning("footage %s extraction failed: %s (%s)", req_id, key, exc.strerror)
        await runtime.dispatcher.run_unit(lambda ctx: _failed(ctx, req_id, key), channel="footage")
        return
    except Exception:
        log.exception("footage %s extraction crashed", req_id)
        await runtime.dispatcher.run_unit(lambda ctx: _failed(ctx, req_id, "error"), channel="footage")
        return
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def deliver(ctx: Ctx) -> None:
        req = ctx.session.get(FootageRequest, req_id)
        assert req is not None
        req.clip_path, req.clip_sha256, req.clip_size = str(out), result.sha256, result.size
        req.clip_duration, req.clip_reencoded = result.duration_s, result.reencoded
        req.clip_warnings = list(result.warnings)
        req.segments = [Path(s).name for s in result.segments_used]
        req.extracted_at = ctx.now
        ctx.audit("footage.extracted", f"footage:{req_id}", sha256=result.sha256, size=result.size,
                  seconds=round(result.duration_s, 3), segments=req.segments, reencoded=result.reencoded,
                  warnings=list(result.warnings))
        cam = ctx.session.get(Camera, req.camera_id)
        requester = ctx.session.get(Person, req.requester_id)
        assert cam is not None
        delivered = requester is not None and ctx.send_to(requester, lambda tr: video_reply(tr, req, cam))
        req.status = FootageStatus.DELIVERED if delivered else FootageStatus.FAILED
        req.error = "" if delivered else "unreachable"
        req.delivered_at = ctx.now if delivered else None
        ctx.session.add(req)
        ctx.audit("footage.delivered" if delivered else "footage.undeliverable", f"footage:{req_id}",
                  recipient=req.requester_id, sha256=result.sha256)
        for p in custody_people(ctx, req.school_id):
            if p.id != req.requester_id:
                ctx.send_to(p, lambda tr: custody_notice(tr, req, cam, requester))

    await runtime.dispatcher.run_unit(deliver, channel="footage")


def _longest_minutes(coverage: Any, options: Any) -> int | None:
    """The longest window (whole minutes) the recordings' estimate says fits the cap; None when not
    known, or when the estimate thought this window fits (then it cannot be trusted for a shorter one)."""
    from media.clips import estimate_size

    if coverage is None or options is None:
        return None
    est = estimate_size(coverage, options)
    return int(est.max_seconds // 60) if est is not None and not est.fits and est.max_seconds >= 60 else None


PROGRESS_KIND = "footage_progress"
#: At most one progress edit per this many seconds (and per 10 % of the work).
PROGRESS_EVERY_S = 4.0


class Progress:
    """Edits the requester's ``Đang trích xuất…`` message while ffmpeg works on a long clip."""

    def __init__(self, runtime: Host, req_id: int, locale: str | None) -> None:
        import time

        self.runtime, self.req_id = runtime, req_id
        self.tr = Translator(locale or runtime.settings.default_locale, runtime.settings.tz)
        self._clock = time.monotonic
        self._last_at = self._clock()
        self._last_pct = 0
        self.edits = 0

    def __call__(self, phase: str, fraction: float) -> None:
        pct = int(max(0.0, min(1.0, fraction)) * 100)
        now = self._clock()
        if pct >= 100 or pct - self._last_pct < 10 or now - self._last_at < PROGRESS_EVERY_S:
            return
        self._last_at, self._last_pct = now, pct
        text = (self.tr.t("⏳ Extracting the clip of request #{id}… {pct}%", id=self.req_id, pct=pct)
                if phase != "encode" else
                self.tr.t("⏳ Compressing the clip of request #{id} to fit the size limit… {pct}%",
                          id=self.req_id, pct=pct))
        self.edits += 1
        self.runtime.dispatcher.spawn(self._edit(text))

    async def _edit(self, text: str) -> None:
        from sqlmodel import select

        from bot.core import MessageRef
        from storage.models import SentMessage

        def find(s: Any) -> tuple[str, str, str] | None:
            row = s.exec(select(SentMessage).where(SentMessage.ref_kind == PROGRESS_KIND,
                                                   SentMessage.ref_id == str(self.req_id))
                         .order_by(col(SentMessage.id).desc())).first()
            return (row.channel, row.chat_id, row.message_id) if row else None

        ref = await self.runtime.db.run(find)
        if ref is None:
            return
        adapter = self.runtime.sender.adapters.get(ref[0])
        if adapter is not None:
            await adapter.edit(MessageRef(*ref), Reply(text))


def _job(runtime: Host, req_id: int) -> Callable[[], Awaitable[None]]:
    async def job() -> None:
        await extract_and_deliver(runtime, req_id)
    return job


def recover(ctx: Ctx) -> None:
    """Scheduler job (every tick): requests a crash left behind (see the module docstring).

    An interrupted cut is started again once, automatically; interrupted a second time it fails —
    a clip that brings the process down would otherwise do it again at every start — and IT decides
    with the retry button."""
    runtime = ctx.services.host
    if runtime is None:
        return
    live = _live(runtime)
    rows = ctx.session.exec(select(FootageRequest).where(
        col(FootageRequest.status).in_([FootageStatus.APPROVED, FootageStatus.EXTRACTING]))
        .order_by(col(FootageRequest.id))).all()
    for req in rows:
        req_id = req.id
        if req_id is None or req_id in live:
            continue
        if req.status == FootageStatus.APPROVED:
            # Usually left by a restart between the approval and its cut; if the approval's own job
            # is merely late, the conditional claim lets only one of the two cut.
            log.info("footage %s is approved and not being cut here; starting its extraction", req_id)
            ctx.later(_job(runtime, req_id))
            continue
        if ctx.session.get_bind().dialect.name != "sqlite" and not ctx.session.execute(
                text("SELECT pg_try_advisory_xact_lock(:k, :id)"), {"k": LOCK_KEY, "id": req_id}).scalar():
            continue  # another bot process is cutting it
        again = req.resumes < 1
        res = ctx.session.execute(update(FootageRequest).where(
            col(FootageRequest.id) == req_id, col(FootageRequest.status) == FootageStatus.EXTRACTING,
            col(FootageRequest.resumes) == req.resumes)
            .values(status=FootageStatus.APPROVED if again else FootageStatus.FAILED,
                    resumes=FootageRequest.resumes + 1)
            .execution_options(synchronize_session=False))
        if res.rowcount != 1:  # type: ignore[attr-defined]
            continue
        ctx.session.refresh(req)
        out = ctx.settings.media_dir / "clips" / str(req.school_id) / f"request-{req_id}.mp4"
        shutil.rmtree(_work_dir(out), ignore_errors=True)
        if req.clip_path is None:  # a finished cut whose delivery was never recorded: not kept
            out.unlink(missing_ok=True)
        if again:
            log.warning("footage %s: its extraction was interrupted (restart?); starting it again", req_id)
            ctx.audit("footage.resumed", f"footage:{req_id}", attempt=req.attempts + 1)
            ctx.later(_job(runtime, req_id))
        else:
            log.warning("footage %s: its extraction was interrupted again; IT can retry", req_id)
            _failed(ctx, req_id, "interrupted")


def _failed(ctx: Ctx, req_id: int, key: str, *, longest_minutes: int | None = None) -> None:
    """Record the failure and tell the requester and the custody people why (:data:`FAILURES`); IT's
    retry button only when trying again can change the outcome."""
    req = ctx.session.get(FootageRequest, req_id)
    if req is None:
        return
    req.status, req.error = FootageStatus.FAILED, key[:200]
    ctx.session.add(req)
    ctx.audit("footage.failed", f"footage:{req_id}", error=key)
    why = failure(key)
    requester = ctx.session.get(Person, req.requester_id)

    def to_requester(tr: Translator) -> Reply:
        reason = tr.t(why.reason)
        if why.retry:
            return Reply(tr.t("Sorry, the clip of request #{id} could not be extracted: {reason} IT has been told "
                              "and can retry.", id=req_id, reason=reason))
        if longest_minutes:
            return Reply(tr.t("Sorry, the clip of request #{id} could not be extracted: {reason} You can ask "
                              "again for a shorter window: at most about {n} minutes.", id=req_id, reason=reason,
                              n=longest_minutes))
        return Reply(tr.t("Sorry, the clip of request #{id} could not be extracted: {reason}", id=req_id,
                          reason=reason))

    def to_custody(tr: Translator) -> Reply:
        reason = tr.t(why.reason)
        if why.retry:
            return Reply(tr.t("⚠️ Extracting the clip of request #{id} failed: {reason}", id=req_id, reason=reason),
                         buttons=keyboard(Button(tr.t("🔁 Retry"), f"{PREFIX}:{req_id}:retry")))
        return Reply(tr.t("⚠️ Extracting the clip of request #{id} failed: {reason} Trying again would not "
                          "change this.", id=req_id, reason=reason))

    if requester is not None:
        ctx.send_to(requester, to_requester)
    for p in custody_people(ctx, req.school_id):
        ctx.send_to(p, to_custody)
