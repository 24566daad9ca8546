"""What a camera's recording source holds for the last hour, before anyone needs a clip (the console's
"Kiểm tra" button and ``python main.py cameras check``).

:func:`check_camera` asks the same :mod:`media.recordings` code the clip extraction uses and returns a
:class:`SourceReport`: the segments found (count, first start, last end, recorded seconds), the gaps
in the window, the damaged files and the problems by stable key (:data:`PROBLEMS`). It reads files
and runs ffprobe, so async code calls :func:`check_camera_async` (a worker thread).

An NVR source (``nvr:rtsp://…``) is never asked for video here: only what can be checked without
recording is checked — the credentials named by ``user_env``/``password_env`` are set, and the
recorder's host accepts a TCP connection within a short timeout. The report says that the content of
such a source cannot be checked. No URL with credentials is kept in the report.

:func:`describe` renders the report as a short text (catalogue, Babel times in the school's zone)."""

from __future__ import annotations

import asyncio
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

from sqlmodel import Session, col, select

from bot.flows.footage.models import Camera
from bot.i18n import N_, Translator
from media.recordings import Interval

if TYPE_CHECKING:
    from media.recordings import FolderSource, NvrSource, Segment

WINDOW = timedelta(hours=1)
CONNECT_TIMEOUT = 3.0
#: the end of the window after the last file still counts as "being written" when no longer than this
#: (or than the last file)
WRITING_AT_LEAST = timedelta(minutes=1)
_DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443}

#: every problem key a report can carry, with its message (an English msgid of the catalogue)
PROBLEMS: dict[str, str] = {
    "no_source": N_("No recording source is set for this camera."),
    "bad_source": N_("The recording source is not understood (use frigate:, pattern: or nvr:)."),
    "bad_pattern": N_("The file name pattern of the recording source cannot be used."),
    "bad_timezone": N_("The time zone of the recording source is unknown."),
    "bad_url": N_("The recorder's address in the recording source cannot be used."),
    "bad_option": N_("An option of the recording source has a wrong value."),
    "missing_credentials": N_("The recorder's user name or password is not set (environment variable {detail})."),
    "folder_missing": N_("The recordings folder does not exist: {detail}"),
    "folder_unreadable": N_("The recordings folder cannot be read (permissions): {detail}"),
    "no_recordings": N_("There are no recordings in this hour."),
    "segment_corrupt": N_("Some recording files cannot be read (damaged or incomplete)."),
    "source_unreachable": N_("The recorder {detail} does not answer."),
}


class CameraLike(Protocol):
    @property
    def code(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def source(self) -> str: ...


class CheckSettings(Protocol):
    @property
    def timezone(self) -> str: ...
    @property
    def recording_retention_days(self) -> int: ...


@dataclass(frozen=True, slots=True)
class CameraRef:
    """What the check needs of a camera, safe to use after its database session has closed."""

    code: str
    name: str
    source: str

    @classmethod
    def of(cls, camera: CameraLike) -> CameraRef:
        return cls(code=camera.code, name=camera.name, source=camera.source or "")


@dataclass(frozen=True, slots=True)
class Problem:
    key: str          # one of :data:`PROBLEMS`
    detail: str = ""  # a folder, an environment variable's name, host:port — never a secret


#: a stretch of the window with no recording (the recordings module's interval, with ``seconds``)
Gap = Interval


@dataclass(frozen=True, slots=True)
class SourceReport:
    """What the recording source of one camera holds for [start, end) (UTC)."""

    code: str
    name: str
    kind: str                 # "folder", "nvr" or "" (no usable source)
    start: datetime
    end: datetime
    content_checked: bool     # False for an NVR: its recordings are not read by the check
    segments: int = 0
    first_start: datetime | None = None
    last_end: datetime | None = None
    recorded_seconds: float = 0.0
    gaps: tuple[Gap, ...] = ()
    damaged: tuple[str, ...] = ()          # files (relative to the source's folder) ffprobe cannot read
    # The end of the window after the last file, no longer than that file: the segment being written now
    # (a recorder writes a file when it is complete), so not a gap.
    writing: Gap | None = None
    problems: tuple[Problem, ...] = ()
    host: str | None = None                # NVR: host:port tried
    reachable: bool | None = None          # NVR: the TCP connection was accepted
    credentials: bool | None = None        # NVR: credentials set (None: the source names none)

    @property
    def ok(self) -> bool:
        return not self.problems and not self.gaps and not self.damaged

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(p.key for p in self.problems)


def cameras_to_check(session: Session, *, school_id: int, code: str | None = None) -> list[Camera]:
    """The camera with ``code`` (any status), or every camera of the school that is not retired."""
    q = select(Camera).where(Camera.school_id == school_id)
    if code is not None:
        q = q.where(col(Camera.code) == code)
    else:
        q = q.where(col(Camera.status) != "retired")
    return list(session.exec(q.order_by(col(Camera.code))))


def check_camera(camera: CameraLike, settings: CheckSettings, now: datetime | None = None,
                 window: timedelta = WINDOW, *, env: dict[str, str] | None = None,
                 connect_timeout: float = CONNECT_TIMEOUT) -> SourceReport:
    """Check ``camera``'s recording source for the ``window`` before ``now`` (blocking: files, ffprobe,
    a TCP connect; from async code use :func:`check_camera_async`)."""
    from media.recordings import FolderSource, SourceError, source_from_string

    end = (now or datetime.now(UTC)).astimezone(UTC)
    start = end - window
    base = SourceReport(code=camera.code, name=camera.name, kind="", start=start, end=end, content_checked=False)
    spec = (camera.source or "").strip()
    if not spec:
        return _replace(base, problems=(Problem("no_source"),))
    try:
        source = source_from_string(spec, school_tz=settings.timezone,
                                    retention_days=settings.recording_retention_days, env=env)
    except SourceError as exc:
        key = exc.key if exc.key in PROBLEMS else "bad_source"
        return _replace(base, problems=(Problem(key, exc.detail if key == "missing_credentials" else ""),))
    if isinstance(source, FolderSource):
        return _check_folder(base, source, camera.code, start, end)
    return _check_nvr(base, source, camera.code, start, end, connect_timeout)


async def check_camera_async(camera: CameraLike, settings: CheckSettings, now: datetime | None = None,
                             window: timedelta = WINDOW, *, env: dict[str, str] | None = None,
                             connect_timeout: float = CONNECT_TIMEOUT) -> SourceReport:
    """:func:`check_camera` in a worker thread, so the event loop keeps serving."""
    return await asyncio.to_thread(check_camera, camera, settings, now, window, env=env,
                                   connect_timeout=connect_timeout)


def _replace(report: SourceReport, **changes: object) -> SourceReport:
    from dataclasses import replace

    return replace(report, **changes)  # type: ignore[arg-type]


def _check_folder(base: SourceReport, source: FolderSource, code: str, start: datetime,
                  end: datetime) -> SourceReport:
    from media.recordings import CoverageStatus, mp4_layout_ok

    root = source.root
    base = _replace(base, kind="folder")
    if not root.is_dir():
        return _replace(base, problems=(Problem("folder_missing", str(root)),))
    if not os.access(root, os.R_OK | os.X_OK):
        return _replace(base, problems=(Problem("folder_unreadable", str(root)),))
    cov = source.coverage(code, start, end, now=end)
    cut_off = [seg.path for seg in cov.segments if mp4_layout_ok(seg.path) is False]
    segs = tuple(seg for seg in cov.segments if seg.path not in cut_off)
    damaged = (*cov.corrupt, *cut_off)
    problems: list[Problem] = []
    if cov.status in (CoverageStatus.NONE, CoverageStatus.TOO_OLD):
        problems.append(Problem("no_recordings"))
    if damaged:
        problems.append(Problem("segment_corrupt"))
    gaps = tuple(cov.gaps)
    recorded = cov.covered_seconds
    if cut_off:  # what a cut-off file claims to hold is not counted: the gaps come from the whole files
        gaps, recorded = _gaps(segs, start, end, source.gap_tolerance)
    last_end = max(s.end for s in segs) if segs else None
    writing = None
    # (never when a file is damaged: it may be the one that should hold that time)
    if gaps and last_end is not None and not damaged and gaps[-1].end == end and gaps[-1].start == last_end \
            and gaps[-1].seconds <= max(WRITING_AT_LEAST.total_seconds(), segs[-1].seconds):
        writing, gaps = gaps[-1], gaps[:-1]
    return _replace(
        base, content_checked=True, segments=len(segs), first_start=segs[0].start if segs else None,
        last_end=last_end, recorded_seconds=recorded, gaps=gaps, writing=writing,
        damaged=tuple(sorted(_relative(p, root) for p in damaged)), problems=tuple(problems))


def _gaps(segments: tuple[Segment, ...], start: datetime, end: datetime,
          tolerance: timedelta) -> tuple[tuple[Gap, ...], float]:
    """The gaps in [start, end) left by ``segments`` (ordered by start), and the seconds covered."""
    gaps: list[Gap] = []
    cur, covered = start, 0.0
    for seg in segments:
        lo, hi = max(seg.start, start), min(seg.end, end)
        if hi <= cur:
            continue
        if lo - cur > tolerance:
            gaps.append(Gap(cur, lo))
        covered += (hi - max(lo, cur)).total_seconds()
        cur = hi
    if end - cur > tolerance:
        gaps.append(Gap(cur, end))
    return tuple(gaps), covered


def _relative(path: str, root: Path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return Path(path).name


def _check_nvr(base: SourceReport, source: NvrSource, code: str, start: datetime, end: datetime,
               timeout: float) -> SourceReport:
    from media.recordings import SourceError

    base = _replace(base, kind="nvr")
    problems: list[Problem] = []
    credentials: bool | None = None
    if source.user_env or source.password_env:
        try:
            source.url(code, start, end)  # only to see the credentials are set; the URL is dropped
            credentials = True
        except SourceError as exc:
            if exc.key != "missing_credentials":
                return _replace(base, problems=(Problem(exc.key if exc.key in PROBLEMS else "bad_url"),))
            credentials = False
            problems.append(Problem("missing_credentials", exc.detail))
    parts = urlsplit(source.redacted_url(code, start, end))
    try:
        host, port = parts.hostname, parts.port or _DEFAULT_PORTS.get(parts.scheme.lower())
    except ValueError:
        host, port = None, None
    if not host or not port:
        return _replace(base, credentials=credentials, problems=(*problems, Problem("bad_url")))
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    reachable = _connects(host, port, timeout)
    if not reachable:
        problems.append(Problem("source_unreachable", where))
    return _replace(base, host=where, reachable=reachable, credentials=credentials, problems=tuple(problems))


def _connects(host: str, port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# ------------------------------------------------------------------------------------------------
# the text


def duration_text(tr: Translator, seconds: float) -> str:
    """``1 giờ 5 phút``, ``12 phút 30 giây``, ``4 giây``."""
    total = max(0, int(round(seconds)))
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    if h:
        return (tr.t("{hours} h {minutes} min", hours=tr.number(h), minutes=tr.number(m)) if m
                else tr.t("{hours} h", hours=tr.number(h)))
    if m:
        return (tr.t("{minutes} min {seconds} s", minutes=tr.number(m), seconds=tr.number(s)) if s
                else tr.t("{minutes} min", minutes=tr.number(m)))
    return tr.t("{seconds} s", seconds=tr.number(s))


def _clock(tr: Translator, when: datetime) -> str:
    return tr.time(when, "HH:mm:ss")


def describe(report: SourceReport, tr: Translator, *, max_gaps: int = 10) -> str:
    """A short summary of ``report`` for the person who pressed "Kiểm tra" (times in ``tr``'s zone)."""
    lines = [tr.t("Camera {code} — {name}: {start} to {end} on {date}", code=report.code, name=report.name,
                  start=tr.time(report.start), end=tr.time(report.end), date=tr.date(report.end))]
    if report.kind == "folder" and report.content_checked:
        if report.segments:
            lines.append(tr.t("{count} recording files, from {first} to {last}; {recorded} of {window} recorded.",
                              count=tr.number(report.segments), first=_clock(tr, report.first_start or report.start),
                              last=_clock(tr, report.last_end or report.end),
                              recorded=duration_text(tr, report.recorded_seconds),
                              window=duration_text(tr, (report.end - report.start).total_seconds())))
        if report.gaps and report.segments:
            lines.append(tr.t("Gaps without recording:"))
            for gap in report.gaps[:max_gaps]:
                lines.append(tr.t("• {start} – {end} ({length})", start=_clock(tr, gap.start),
                                  end=_clock(tr, gap.end), length=duration_text(tr, gap.seconds)))
            if len(report.gaps) > max_gaps:
                lines.append(tr.t("… and {n} more gaps.", n=tr.number(len(report.gaps) - max_gaps)))
        if report.writing is not None and report.segments:
            lines.append(tr.t("From {start} the current file is still being written ({length}).",
                              start=_clock(tr, report.writing.start), length=duration_text(tr, report.writing.seconds)))
        if report.damaged:
            lines.append(tr.t("Damaged files:"))
            lines.extend(f"• {name}" for name in report.damaged[:max_gaps])
    if report.kind == "nvr":
        lines.append(tr.t("Recorder (NVR) source: its recordings cannot be checked from here; only the "
                          "connection and the credentials were checked."))
        if report.credentials:
            lines.append(tr.t("The recorder's credentials are set."))
        if report.reachable:
            lines.append(tr.t("The recorder {host} accepts connections.", host=report.host or ""))
    for problem in report.problems:
        lines.append("⚠️ " + tr.t(PROBLEMS[problem.key], detail=problem.detail))
    if report.ok:
        lines.append("✅ " + (tr.t("Recording is complete for this hour.") if report.content_checked
                             else tr.t("No problem found.")))
    return "\n".join(lines)
