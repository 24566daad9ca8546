"""Cut the window of a :class:`~media.recordings.Coverage` into one mp4 clip with ffmpeg.

* **Stream copy first.**  The concat demuxer over the segment file(s), with ``inpoint`` on the first
  file at the key frame at or before the window (read from its ``moov``; the clip may start up to one
  GOP early, and its audio starts with that picture) and ``outpoint`` on the last, each file's probed
  duration given so nothing is read twice; when every segment carries the same H.264 configuration the packets are passed
  through as they are (``-auto_convert 0``: no Annex B round trip).  NVR: ffmpeg reads the playback
  URL (``-rtsp_transport tcp`` for RTSP) with an I/O timeout.
* **The index (``moov``) always precedes the media data** (phones start playing at once).  For
  recordings, room for it is reserved at the front (``-moov_size``, estimated from the segments' own
  sample tables, :func:`media.mp4info.moov_summary`) and ffmpeg fills it in place — no second pass
  over the file; should the estimate ever be short (ffmpeg 5.1 then writes the index over the start
  of the media data and still exits 0), the copy is redone with ``-movflags +faststart``.  NVR copies,
  clips of 4 GB and more (64-bit chunk offsets) and re-encodes use ``+faststart``.
* **Re-encode only** when the copy is bigger than the delivery cap (bitrate computed from the cap so
  the result uses 85–98 % of it; ``maxrate``/``bufsize``; retried with a corrected bitrate when it
  lands outside; the final size is checked) or when a watermark must be burned in (``drawtext`` reads
  the text from a file with ``expansion=none``: no user text is ever put on the command line).
  To fit, the sound gives way before the picture: 64 kbit/s, then 32 kbit/s mono (warning
  ``audio_lowered``), then none (``audio_dropped``) — each step taken only while the picture would
  otherwise get less than the sound (or less than ``min_video_bps``, the lowest acceptable quality).
* **Whether a window can fit at all** is known before anything is cut: :func:`estimate_size` takes
  the recordings' bitrate (file size ÷ duration) × the window and compares it, and the lowest
  acceptable re-encode (``min_video_bps``, no sound), with the cap; it names the longest window
  that fits.
* The clip is written in a private temporary folder next to the destination and renamed into place
  only once its duration is confirmed: the video track as a player shows it (edit list honoured),
  from the window to the window plus the early start and the B-frame delay (see ``_duration_bounds``).  Nothing partial is ever returned
  as complete: a partial coverage is refused unless ``allow_partial`` and then flagged in
  ``warnings``.

Errors are :class:`ClipError` with a stable ``key`` (:data:`ERROR_KEYS`: ``segment_missing``,
``segment_corrupt``, ``partial_coverage``, ``no_recordings``, ``future``, ``too_old``,
``source_unreachable``, ``duration_mismatch``, ``too_big``, ``timeout``, ``disk_full`` — no space
left for the clip —, ``ffmpeg_killed`` — ffmpeg ended by a signal, e.g. out of memory —,
``ffmpeg_failed`` — any other ffmpeg error); callers translate keys into messages, this module
holds no user-facing text.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import inspect
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import ffmpeg

from media.mp4info import MoovSummary, Mp4Info, moov_summary, mp4_info
from media.recordings import SCHOOL_TZ, Coverage, CoverageStatus, Segment, redact_url

log = logging.getLogger(__name__)

FFMPEG = "ffmpeg"
FFPROBE = "ffprobe"
DEFAULT_SIZE_CAP = 50 * 1000 * 1000  # Telegram Bot API upload limit ("50 MB"), kept on the safe side

ProgressCallback = Callable[[str, float], object]  # (phase "cut" | "encode", fraction 0..1)

_FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/local/share/fonts/DejaVuSans.ttf",
)


#: every ``ClipError.key`` this module raises (see the module docstring)
ERROR_KEYS = ("segment_missing", "segment_corrupt", "partial_coverage", "no_recordings", "future", "too_old",
              "source_unreachable", "duration_mismatch", "too_big", "timeout", "disk_full", "ffmpeg_killed",
              "ffmpeg_failed")


class ClipError(Exception):
    """Extraction failed; ``key`` is stable (see the module docstring), ``detail`` is for logs only."""

    def __init__(self, key: str, detail: str = "") -> None:
        super().__init__(f"{key}: {detail}" if detail else key)
        self.key = key
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Watermark:
    """Requester, request number and time, burned into the picture."""

    requester: str
    request_no: str
    at: datetime
    tz: str = SCHOOL_TZ

    def text(self) -> str:
        when = self.at.astimezone(ZoneInfo(self.tz)).strftime("%d/%m/%Y %H:%M")
        return f"{self.requester} · #{self.request_no} · {when}"


@dataclass(frozen=True, slots=True)
class ClipOptions:
    size_cap: int = DEFAULT_SIZE_CAP
    watermark: str | Watermark | None = None
    allow_partial: bool = False
    timeout_s: float = 900.0
    io_timeout_s: float = 15.0          # network sources: give up when nothing arrives for this long
    gop_s: float | None = None          # key-frame interval; estimated from the recording when None
    preset: str = "veryfast"
    audio_bitrate: int = 64_000
    #: when the sound takes too much of the cap: these (bit/s, channels) steps in turn; 0 = no sound
    audio_fallbacks: tuple[tuple[int, int], ...] = ((32_000, 1), (0, 0))
    #: the lowest acceptable picture (bit/s): below it the clip is refused as ``too_big``
    min_video_bps: int = 24_000
    target_fill: float = 0.92           # aim for this share of the cap ...
    min_fill: float = 0.85              # ... and accept anything between these two
    max_fill: float = 0.98
    max_attempts: int = 4


@dataclass(frozen=True, slots=True)
class ClipResult:
    path: Path
    duration_s: float
    size: int
    sha256: str
    segments_used: tuple[str, ...]
    reencoded: bool
    warnings: tuple[str, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class _Probe:
    duration: float
    width: int
    height: int
    fps: float
    has_video: bool
    has_audio: bool
    audio_codec: str | None
    gop: float | None = None
    reorder: float = 0.0        # the video's B-frame delay (its edit's media time), when known
    audio_end: float | None = None


def find_font() -> str | None:
    """A TrueType font with Vietnamese glyphs: DejaVu Sans via fc-match, else a known path."""
    if shutil.which("fc-match"):
        try:
            out = subprocess.run(["fc-match", "-f", "%{file}", "DejaVu Sans:lang=vi"], capture_output=True,
                                 text=True, timeout=10, check=False).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            out = ""
        if out and os.path.exists(out) and "dejavu" in out.lower():
            return out
    for path in _FONT_CANDIDATES:
        if os.path.exists(path):
            return path
    return None


# ------------------------------------------------------------------------------------------------
# ffmpeg / ffprobe plumbing


async def _probe(path: Path, limit_s: float = 60.0) -> _Probe | None:
    """Duration, streams and the key-frame interval (first minute's video packets) in ONE ffprobe run."""
    proc = await asyncio.create_subprocess_exec(
        FFPROBE, "-v", "error", "-select_streams", "v:0", "-read_intervals", "%+60", "-show_entries",
        "format=duration:stream=codec_type,codec_name,width,height,avg_frame_rate:packet=pts_time,flags",
        "-of", "json", str(path), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), limit_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return None
    if proc.returncode != 0:
        return None
    try:
        data = json.loads(out)
        duration = float(data["format"]["duration"])
    except (ValueError, KeyError, TypeError):
        return None
    video = next((s for s in data.get("streams", []) if s.get("codec_type") == "video"), None)
    fps = 0.0
    if video and "/" in str(video.get("avg_frame_rate", "")):
        num, den = str(video["avg_frame_rate"]).split("/", 1)
        fps = float(num) / float(den) if float(den) else 0.0
    keys = sorted(float(p["pts_time"]) for p in data.get("packets", [])
                  if "K" in str(p.get("flags", "")) and "pts_time" in p)
    gop = max((b - a for a, b in zip(keys, keys[1:], strict=False)), default=None)
    return _Probe(duration=duration, width=int(video.get("width", 0)) if video else 0,
                  height=int(video.get("height", 0)) if video else 0, fps=fps, has_video=video is not None,
                  has_audio=False, audio_codec=None, gop=gop)


async def _quick_probe(path: Path, info: Mp4Info | None = None) -> _Probe | None:
    """The stream copy just written, read in-process (:mod:`media.mp4info`: no ffprobe start-up;
    ``info`` when the caller has read it already); ffprobe when the reader does not understand the
    file. ``has_audio`` is filled in later, only when a re-encode needs it."""
    if info is None:
        info = await asyncio.to_thread(mp4_info, path)
    if info is None or not info.has_video or info.duration <= 0:
        return await _probe(path)
    # The video track as a player shows it (edit list honoured); the movie's duration also counts
    # audio the stream copy may carry past the last picture.
    duration = info.video_end if info.video_end > 0 else info.duration
    return _Probe(duration=duration, width=info.width, height=info.height, fps=info.fps,
                  has_video=True, has_audio=False, audio_codec=None, gop=info.gop, reorder=info.reorder,
                  audio_end=info.audio_end)


async def _has_audio(path: Path) -> bool:
    proc = await asyncio.create_subprocess_exec(
        FFPROBE, "-v", "error", "-select_streams", "a", "-show_entries", "stream=index", "-of", "csv=p=0",
        str(path), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    out, _ = await proc.communicate()
    return bool(out.strip())


async def run_ffmpeg(args: list[str], *, duration_s: float, limit_s: float, phase: str = "cut",
                     progress: ProgressCallback | None = None, secret: str | None = None) -> str:
    """Run ffmpeg (``args`` from ffmpeg-python's ``compile()``) without blocking the event loop,
    reporting ``-progress`` to ``progress``.  Raises ClipError("timeout", "ffmpeg_killed",
    "disk_full" or "ffmpeg_failed", see :func:`_failure_key`); ``secret``
    (an URL with credentials) is redacted from the error detail.  Returns the end of what ffmpeg
    reported on stderr (errors it did not fail on)."""
    full = [args[0], "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error",
            "-progress", "pipe:1", *args[1:]]
    try:
        proc = await asyncio.create_subprocess_exec(*full, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE)
    except (FileNotFoundError, PermissionError) as exc:  # not installed, or not executable
        raise ClipError("ffmpeg_failed", f"cannot start {args[0]}: {exc.strerror}") from exc
    assert proc.stdout is not None and proc.stderr is not None
    err_tail = bytearray()

    async def read_err() -> None:
        assert proc.stderr is not None
        while chunk := await proc.stderr.read(4096):
            err_tail.extend(chunk)
            del err_tail[:-4000]

    async def read_progress() -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            key, _, value = line.decode("ascii", "replace").strip().partition("=")
            if progress is None or key not in ("out_time_us", "progress"):
                continue
            if key == "progress":
                fraction = 1.0 if value == "end" else -1.0
            else:
                try:
                    fraction = max(0.0, min(1.0, int(value) / 1e6 / duration_s)) if duration_s > 0 else 0.0
                except ValueError:
                    continue
            if fraction >= 0:
                res = progress(phase, fraction)
                if inspect.isawaitable(res):
                    await res

    try:
        await asyncio.wait_for(asyncio.gather(read_err(), read_progress(), proc.wait()), limit_s)
    except TimeoutError as exc:
        proc.kill()
        await proc.wait()
        raise ClipError("timeout", f"ffmpeg ran longer than {limit_s:.0f}s") from exc
    except BaseException:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    code = proc.returncode or 0
    if code != 0:
        detail = err_tail.decode("utf-8", "replace").strip()
        if secret:
            detail = detail.replace(secret, redact_url(secret))
        if code < 0:
            try:
                detail = f"ended by {signal.Signals(-code).name}. {detail}"
            except ValueError:
                detail = f"ended by signal {-code}. {detail}"
        raise ClipError(_failure_key(code, detail), detail[-1500:])
    said = err_tail.decode("utf-8", "replace")
    if _failure_key(0, said) == "disk_full":  # ffmpeg may exit 0 when only its last writes failed
        raise ClipError("disk_full", said.strip()[-1500:])
    return said


def _failure_key(returncode: int, detail: str) -> str:
    """What an ffmpeg that exited with ``returncode`` and said ``detail`` ran into: ``ffmpeg_killed``
    (ended by a signal: the OOM killer, an operator), ``disk_full`` (no space for the output) or
    ``ffmpeg_failed`` (anything else; the callers refine it: a missing or damaged segment, an NVR
    that cannot be reached)."""
    d = detail.lower()
    if returncode < 0 or "received signal" in d:
        return "ffmpeg_killed"
    if "no space left on device" in d or "disk quota exceeded" in d:
        return "disk_full"
    return "ffmpeg_failed"


def _concat_line(path: str) -> str:
    return "file '" + path.replace("'", "'\\''") + "'"


def _escape_error(detail: str) -> str:
    d = detail.lower()
    if any(s in d for s in ("invalid data found", "moov atom not found", "error while decoding",
                            "could not find codec parameters", "invalid nal", "truncat")):
        return "segment_corrupt"
    if any(s in d for s in ("no such file", "does not exist")):
        return "segment_missing"
    return "ffmpeg_failed"


def _missing(paths: list[str]) -> list[str]:
    return [p for p in paths if not os.path.exists(p)]


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _clean_text(text: str) -> str:
    text = "".join(ch for ch in text if ch == "\n" or (ch.isprintable() and ch not in "\x7f"))
    return text.strip()[:300]


# ------------------------------------------------------------------------------------------------
# the cut


def _check(coverage: Coverage, options: ClipOptions) -> list[str]:
    warnings: list[str] = []
    status = coverage.status
    if status == CoverageStatus.FUTURE:
        raise ClipError("future")
    if status == CoverageStatus.TOO_OLD:
        raise ClipError("too_old")
    if status == CoverageStatus.NONE or not coverage.segments:
        raise ClipError("no_recordings")
    if coverage.corrupt and not options.allow_partial:
        raise ClipError("segment_corrupt", ", ".join(coverage.corrupt))
    if status == CoverageStatus.PARTIAL:
        if not options.allow_partial:
            raise ClipError("partial_coverage")
        warnings.append("partial_coverage")
        if len(coverage.covered) > 1:
            warnings.append("gaps_removed")
    if coverage.corrupt:
        warnings.append("segment_corrupt_skipped")
    if coverage.kind == "folder":
        for seg in coverage.segments:
            try:
                st = os.stat(seg.path)
            except OSError as exc:
                raise ClipError("segment_missing", seg.path) from exc
            if st.st_size == 0:
                raise ClipError("segment_corrupt", seg.path)
    return warnings


def _used_segments(coverage: Coverage) -> list[Segment]:
    """The segments the window needs.  A segment whose successor starts at or before the window's
    start is left out even when its (probed) end reaches into the window: files written with a
    B-frame delay report a duration longer than what they hold by that delay."""
    start, end = coverage.start, coverage.end
    used = [s for s in coverage.segments if s.end > start and s.start < end]
    while len(used) > 1 and used[1].start <= start:
        used.pop(0)
    if not used:
        raise ClipError("no_recordings")
    return used


def _summaries(used: list[Segment]) -> list[MoovSummary] | None:
    """The segments' ``moov`` facts (a few small reads), or None when one is not understood."""
    out: list[MoovSummary] = []
    for seg in used:
        summary = moov_summary(seg.path)
        if summary is None:
            return None
        out.append(summary)
    return out


_MAX_RESERVED_CLIP = 0xF000_0000  # beyond ~4 GB ffmpeg switches to 64-bit chunk offsets (co64)


def _moov_reserve(summaries: list[MoovSummary] | None) -> int | None:
    """Bytes to reserve for the clip's ``moov``: its sample tables hold at most the segments' entries
    (the clip is a part of their concatenation), plus 1/8 for entries that no longer merge at the
    joins, the largest non-table part of one segment's ``moov`` and some slack per segment.  None
    (use ``+faststart``) when a segment was not understood or the clip may reach 4 GB."""
    if not summaries or sum(s.file_size for s in summaries) >= _MAX_RESERVED_CLIP:
        return None
    tables = sum(s.table_bytes for s in summaries)
    fixed = max(s.moov_size - s.table_bytes for s in summaries)
    return tables + tables // 8 + fixed + 256 * len(summaries) + 2048


def _same_video_config(summaries: list[MoovSummary] | None) -> bool:
    """Every segment has the same video sample descriptions (codec, size, parameter sets), so the
    concat demuxer may pass H.264 packets through unchanged."""
    if not summaries or not summaries[0].video_configs:
        return False
    return all(s.video_configs == summaries[0].video_configs for s in summaries)


def _layout(moov_size: int | None) -> dict[str, str]:
    return {"moov_size": str(moov_size)} if moov_size else {"movflags": "+faststart"}


def _key_at_or_before(summary: MoovSummary | None, target: float) -> float | None:
    """The presentation time of the segment's last key frame at or before ``target`` (its first key
    frame when ``target`` precedes it); None when the segment's key frames are not known."""
    if summary is None or not summary.key_times:
        return None
    before = [k for k in summary.key_times if k <= target + 0.0005]
    return before[-1] if before else summary.key_times[0]


@dataclass(frozen=True, slots=True)
class _CopyPlan:
    args: list[str]
    used: list[Segment]
    lead_s: float | None   # how much earlier than the window the clip starts (its first key frame)


def _copy_args_folder(coverage: Coverage, work: Path, out: Path, *, moov_size: int | None = None,
                      passthrough: bool = False, summaries: list[MoovSummary] | None = None) -> _CopyPlan:
    """The stream-copy command: the concat demuxer over the segments (one or several). ``moov_size``:
    bytes reserved for the index at the front (else ``+faststart``); ``passthrough``: the segments
    share one H.264 configuration (``-auto_convert 0``); ``summaries``: the segments' ``moov`` facts.

    Times in a segment are its presentation times (edit list honoured, as the demuxer reports them):
    a window offset ``x`` seconds after the segment's start is ``video_start + x`` in the file.  The
    first file's ``inpoint`` is the key frame at or before the window's start, so the video starts
    with a picture, and ``-copyts`` with ``-copypriorss:a 0`` drops the audio the demuxer's seek
    returns from before that key frame (it seeks every stream to the key frame's *decode* time, one
    B-frame delay earlier).  ``outpoint`` works on decode times: the video may end up to one B-frame
    delay after the window.  Without the key frames (a segment the reader did not understand) the
    ``inpoint`` is the window's start and the demuxer returns the packets from the key frame before."""
    start, end = coverage.start, coverage.end
    used = _used_segments(coverage)
    if summaries is not None and len(summaries) != len(used):
        summaries = None
    lines = ["ffconcat version 1.0"]
    lead: float | None = 0.0
    for i, seg in enumerate(used):
        summary = summaries[i] if summaries else None
        base = summary.video_start if summary else 0.0
        inpoint: float | None = None
        if i == 0:
            offset = max(0.0, (start - seg.start).total_seconds())
            key = _key_at_or_before(summary, base + offset)
            if key is not None:
                inpoint = key
                lead = max(0.0, base + offset - key)
            else:
                inpoint = offset if offset > 0 else None
                lead = None
        outpoint = base + (end - seg.start).total_seconds() if (i == len(used) - 1 and seg.end > end) else None
        lines.append(_concat_line(seg.path))
        if inpoint is not None:
            lines.append(f"inpoint {inpoint:.3f}")
        if outpoint is not None:
            lines.append(f"outpoint {outpoint:.3f}")
        first = inpoint if inpoint is not None else 0.0
        lines.append(f"duration {max(0.001, (outpoint if outpoint is not None else seg.seconds) - first):.3f}")
    listing = work / "segments.ffconcat"
    listing.write_text("\n".join(lines) + "\n", encoding="utf-8")
    demuxer: dict[str, object] = {"f": "concat", "safe": 0}
    if passthrough:
        demuxer["auto_convert"] = 0
    stream = ffmpeg.input(str(listing), **demuxer).output(
        str(out), c="copy", f="mp4", copyts=None, **{"copypriorss:a": 0}, **_layout(moov_size))
    return _CopyPlan(ffmpeg.compile(stream, cmd=FFMPEG, overwrite_output=True), used, lead)


def _copy_args_nvr(url: str, seconds: float, out: Path, io_timeout_s: float) -> list[str]:
    micro = str(int(io_timeout_s * 1_000_000))
    opts: dict[str, str] = {}
    if url.lower().startswith(("rtsp://", "rtsps://")):
        opts = {"rtsp_transport": "tcp", "timeout": micro}
    else:
        opts = {"rw_timeout": micro}
    stream = ffmpeg.input(url, **opts).output(
        str(out), t=f"{seconds:.3f}", vcodec="copy", acodec="aac", movflags="+faststart", f="mp4",
        avoid_negative_ts="make_zero")
    return ffmpeg.compile(stream, cmd=FFMPEG, overwrite_output=True)


def _pick_height(video_bps: float, probe: _Probe) -> int | None:
    """A lower output height when the bitrate is too thin for the source size (bits/pixel/frame)."""
    if not probe.width or not probe.height:
        return None
    fps = probe.fps or 10.0
    for height in (probe.height, 1080, 720, 480, 360, 240):
        if height > probe.height:
            continue
        width = probe.width * height / probe.height
        if video_bps / (width * height * fps) >= 0.04 or height == 240:
            return None if height == probe.height else height
    return None


async def _encode(src: Path, dst: Path, probe: _Probe, *, video_bps: int | None, drawtext: dict[str, object] | None,
                  height: int | None, options: ClipOptions, progress: ProgressCallback | None,
                  audio: tuple[int, int] | None = None) -> None:
    """Re-encode ``src`` (H.264, AAC); ``audio`` = (bit/s, channels — 0 keeps them), 0 bit/s drops
    the sound; default: ``options.audio_bitrate``."""
    inp = ffmpeg.input(str(src))
    video = inp.video
    if height:
        video = video.filter("scale", -2, height)
    if drawtext:
        video = video.filter("drawtext", **drawtext)
    streams = [video]
    kwargs: dict[str, object] = {"vcodec": "libx264", "preset": options.preset, "pix_fmt": "yuv420p",
                                 "movflags": "+faststart", "f": "mp4"}
    if video_bps:
        kwargs.update({"video_bitrate": str(video_bps), "maxrate": str(int(video_bps * 1.1)),
                       "bufsize": str(int(video_bps * 2))})
    else:
        kwargs["crf"] = 23
    audio_bps, channels = audio if audio is not None else (options.audio_bitrate, 0)
    if probe.has_audio and audio_bps > 0:
        streams.append(inp.audio)
        kwargs.update({"acodec": "aac", "audio_bitrate": str(audio_bps)})
        if channels:
            kwargs["ac"] = channels
    args = ffmpeg.compile(ffmpeg.output(*streams, str(dst), **kwargs), cmd=FFMPEG, overwrite_output=True)
    await run_ffmpeg(args, duration_s=probe.duration, limit_s=options.timeout_s, phase="encode",
                     progress=progress)


async def cut_clip(coverage: Coverage, out_path: str | Path, options: ClipOptions | None = None,
                   progress: ProgressCallback | None = None) -> ClipResult:
    """Cut ``coverage``'s window into ``out_path`` (mp4).  See the module docstring."""
    options = options or ClipOptions()
    out_path = Path(out_path)
    warnings = _check(coverage, options)
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".clip-", dir=out_path.parent))
        try:
            return await _cut(coverage, out_path, work, options, progress, warnings)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise ClipError("disk_full", str(exc)) from exc
        raise


async def _cut(coverage: Coverage, out_path: Path, work: Path, options: ClipOptions,
               progress: ProgressCallback | None, warnings: list[str]) -> ClipResult:
    copy = work / "copy.mp4"
    expected = coverage.covered_seconds
    gop = options.gop_s
    info: Mp4Info | None = None
    lead: float | None = None     # how much earlier than the window the clip starts, when known
    if coverage.kind == "nvr":
        if not coverage.url:
            raise ClipError("no_recordings")
        args = _copy_args_nvr(coverage.url, expected, copy, options.io_timeout_s)
        used = [coverage.redacted_url or redact_url(coverage.url)]
        try:
            await run_ffmpeg(args, duration_s=expected, limit_s=options.timeout_s, progress=progress,
                             secret=coverage.url)
        except ClipError as exc:
            if exc.key == "ffmpeg_failed":
                raise ClipError("source_unreachable", exc.detail) from exc
            raise
    else:
        segs = _used_segments(coverage)
        used = [s.path for s in segs]
        summaries = await asyncio.to_thread(_summaries, segs)
        reserve = _moov_reserve(summaries)
        passthrough = len(segs) > 1 and _same_video_config(summaries)
        plan = _copy_args_folder(coverage, work, copy, moov_size=reserve, passthrough=passthrough,
                                 summaries=summaries)
        lead = plan.lead_s
        args = plan.args
        try:
            err = await _copy_folder(args, used, expected, options, progress)
        except ClipError as exc:   # (ffmpeg releases that do fail on a short reservation)
            if reserve is None or "reserved_moov_size" not in exc.detail:
                raise
            err = exc.detail
        info = await asyncio.to_thread(mp4_info, copy)
        if reserve is not None and (info is None or not info.moov_first or "reserved_moov_size" in err):
            # The reservation was short: ffmpeg reports it but still exits 0, with the index written
            # over the start of the media data (mp4_info does not understand such a file). Copy again.
            log.warning("clip: the copy with %d bytes reserved for the moov is not a plain MP4 with the "
                        "moov in front (reservation not enough?); copying again with +faststart", reserve)
            args = _copy_args_folder(coverage, work, copy, passthrough=passthrough, summaries=summaries).args
            await _copy_folder(args, used, expected, options, progress)
            info = None
    probe = await _quick_probe(copy, info)
    if probe is None or not probe.has_video:
        raise ClipError("segment_corrupt" if coverage.kind == "folder" else "source_unreachable",
                        "no readable video in the cut")
    if gop is None:
        gop = probe.gop
    if gop is None and coverage.kind == "folder":  # clip shorter than one GOP: ask the recording
        first = await _probe(Path(used[0]))
        gop = first.gop if first else None
    low, high = _duration_bounds(expected, probe, gop, lead)
    if not low <= probe.duration <= high:
        key = "segment_corrupt" if probe.duration < low else "duration_mismatch"
        raise ClipError(key, f"got {probe.duration:.2f}s, expected {low:.2f}s to {high:.2f}s")
    if probe.audio_end is not None and probe.audio_end > probe.duration + 0.1:
        log.warning("clip: the audio runs %.2fs past the video", probe.audio_end - probe.duration)

    final = copy
    final_probe: _Probe | None = probe
    reencoded = False
    text = options.watermark.text() if isinstance(options.watermark, Watermark) else options.watermark
    text = _clean_text(text) if text else None
    drawtext: dict[str, object] | None = None
    if text:
        textfile = work / "watermark.txt"
        textfile.write_text(text, encoding="utf-8")
        drawtext = {"textfile": str(textfile), "expansion": "none", "fontcolor": "white",
                    "fontsize": max(12, probe.height // 24), "box": 1, "boxcolor": "black@0.55",
                    "boxborderw": 4, "x": 8, "y": "h-th-12"}
        font = find_font()
        if font:
            drawtext["fontfile"] = font
        else:
            warnings.append("font_missing")
        marked = work / "marked.mp4"
        probe = replace(probe, has_audio=await _has_audio(copy))
        await _encode(copy, marked, probe, video_bps=None, drawtext=drawtext, height=None, options=options,
                      progress=progress)
        final, reencoded, final_probe = marked, True, None
        warnings.append("watermarked")
    if final.stat().st_size > options.size_cap:
        if not text:
            probe = replace(probe, has_audio=await _has_audio(copy))
        final_probe = None
        final = await _fit(copy, work, probe, drawtext, options, progress, warnings)
        reencoded = True
        warnings.append("reencoded_for_size")

    out_probe = final_probe or await _probe(final)
    if out_probe is None or not low <= out_probe.duration <= high:
        got = f"{out_probe.duration:.2f}s" if out_probe else "unreadable"
        raise ClipError("duration_mismatch", f"final clip {got}, expected {expected:.2f}s")
    size = final.stat().st_size
    if size > options.size_cap:
        raise ClipError("too_big", f"{size} > {options.size_cap}")
    digest = await asyncio.to_thread(_sha256, final)
    os.replace(final, out_path)
    return ClipResult(path=out_path, duration_s=out_probe.duration, size=size, sha256=digest,
                      segments_used=tuple(used), reencoded=reencoded, warnings=tuple(warnings))


def _duration_bounds(expected: float, probe: _Probe, gop: float | None, lead: float | None) -> tuple[float, float]:
    """The durations a cut of ``expected`` seconds may have.  A stream copy starts at the key frame
    at or before the window (``lead`` seconds early when known, else up to one GOP); its end is cut
    on decode times, so with B-frames the video may run one reorder delay past the window, and
    ffmpeg's mp4 muxer counts that delay once more in the edit list the players show.  Shorter than
    the window by more than a GOP means frames are missing."""
    frame = 1.0 / probe.fps if probe.fps else 0.1
    gop_s = gop if gop is not None else 2.0
    reorder = probe.reorder if probe.reorder > 0 else 2 * frame
    early = lead if lead is not None else gop_s
    return expected - (gop_s + frame + 0.05), expected + early + 2 * reorder + frame + 0.05


async def _copy_folder(args: list[str], used: list[str], expected: float, options: ClipOptions,
                       progress: ProgressCallback | None) -> str:
    try:
        return await run_ffmpeg(args, duration_s=expected, limit_s=options.timeout_s, progress=progress)
    except ClipError as exc:
        if exc.key == "ffmpeg_failed":
            missing = _missing(used)
            if missing:
                raise ClipError("segment_missing", ", ".join(missing)) from exc
            raise ClipError(_escape_error(exc.detail), exc.detail) from exc
        raise


async def _fit(src: Path, work: Path, probe: _Probe, drawtext: dict[str, object] | None, options: ClipOptions,
               progress: ProgressCallback | None, warnings: list[str]) -> Path:
    """Re-encode ``src`` so it lands between min_fill and max_fill of the cap (best effort above
    min_fill; never above the cap).  The sound gives way first: the first of its steps (64 kbit/s,
    32 kbit/s mono, none) that leaves the picture at least as many bits as the sound and at least
    ``min_video_bps``; when even that does not get under the cap, the next step."""
    duration = max(probe.duration, 0.5)
    total_bps = options.size_cap * options.target_fill * 8 / duration * _CONTAINER_SHARE
    steps = [(options.audio_bitrate, 0), *options.audio_fallbacks] if probe.has_audio else [(0, 0)]
    usable = [a for a in steps if total_bps - a[0] >= max(options.min_video_bps, a[0])]
    if not usable:
        raise ClipError("too_big", f"{duration:.0f}s leave {total_bps:.0f} bit/s, less than the lowest quality")
    for audio in usable:
        found = await _fit_video(src, work, probe, drawtext, options, progress, warnings, audio=audio,
                                 video_bps=int(total_bps - audio[0]))
        if found is not None:
            if probe.has_audio and audio != steps[0]:
                warnings.append("audio_dropped" if audio[0] == 0 else "audio_lowered")
            return found
    raise ClipError("too_big", "could not get the clip under the size cap")


async def _fit_video(src: Path, work: Path, probe: _Probe, drawtext: dict[str, object] | None, options: ClipOptions,
                     progress: ProgressCallback | None, warnings: list[str], *, audio: tuple[int, int],
                     video_bps: int) -> Path | None:
    """Up to ``max_attempts`` encodes with ``audio``, correcting the picture's bitrate each time;
    the result closest to the target under the cap, or None."""
    cap = options.size_cap
    duration = max(probe.duration, 0.5)
    height = _pick_height(video_bps, probe)
    if height and "downscaled" not in warnings:
        warnings.append("downscaled")
    best: tuple[int, Path] | None = None  # (size, path) closest to the target and under the cap
    target = cap * options.target_fill
    tag = f"a{audio[0] // 1000}"
    for attempt in range(options.max_attempts):
        dst = work / f"fit-{tag}-{attempt}.mp4"
        await _encode(src, dst, probe, video_bps=video_bps, drawtext=drawtext, height=height, options=options,
                      progress=progress, audio=audio)
        size = dst.stat().st_size
        log.info("clip re-encode attempt %d: %d kbit/s video, %d kbit/s audio -> %d bytes (cap %d)", attempt + 1,
                 video_bps // 1000, audio[0] // 1000, size, cap)
        if size <= cap and (best is None or abs(size - target) < abs(best[0] - target)):
            best = (size, dst)
        if cap * options.min_fill <= size <= cap * options.max_fill:
            return dst
        # Correct the video share of the bitrate by how far the whole file missed the target.
        overhead = size - (video_bps * duration / 8)
        wanted_video_bytes = target - max(overhead, 0)
        corrected = max(options.min_video_bps, int(wanted_video_bytes * 8 / duration))
        if corrected == video_bps:   # at the floor already: another encode would be the same
            break
        video_bps = corrected
    if best is None:
        return None
    if best[0] < cap * options.min_fill:
        warnings.append("under_target_fill")
    return best[1]


# ------------------------------------------------------------------------------------------------
# will it fit? (asked before anything is cut)

_CONTAINER_SHARE = 0.98  # of a re-encode's bitrate for the streams: ~2 % for the mp4 container


@dataclass(frozen=True, slots=True)
class SizeEstimate:
    """What a window of recordings would weigh as a clip, from the recordings' own files."""

    seconds: float      # recorded seconds in the window
    bitrate: float      # the recordings' bit/s (file size ÷ duration)
    copy_bytes: int     # about what a stream copy of the window weighs
    max_seconds: float  # the longest window that fits the cap: copied as recorded, or re-encoded at the
    #                     lowest acceptable quality (``min_video_bps``, no sound)

    @property
    def fits(self) -> bool:
        return self.seconds <= self.max_seconds


def lowest_quality_seconds(options: ClipOptions) -> float:
    """The longest clip a re-encode at the lowest acceptable quality (``min_video_bps``, no sound) gets
    under the cap — the same budget :func:`_fit` computes."""
    return options.size_cap * options.target_fill * 8 * _CONTAINER_SHARE / options.min_video_bps


def estimate_size(coverage: Coverage, options: ClipOptions | None = None) -> SizeEstimate | None:
    """Whether ``coverage``'s window can be delivered under ``options.size_cap`` — the recordings'
    bitrate (their files' size ÷ duration) × the recorded seconds, else the lowest acceptable
    re-encode.  None when the sizes are not known (an NVR streams the window)."""
    options = options or ClipOptions()
    segs = [s for s in coverage.segments if s.size > 0 and s.seconds > 0]
    if coverage.kind != "folder" or not segs:
        return None
    bitrate = sum(s.size for s in segs) * 8 / sum(s.seconds for s in segs)
    seconds = coverage.covered_seconds
    return SizeEstimate(seconds=seconds, bitrate=bitrate, copy_bytes=int(bitrate * seconds / 8),
                        max_seconds=max(options.size_cap * 8 / bitrate, lowest_quality_seconds(options)))


def cut_clip_sync(coverage: Coverage, out_path: str | Path, options: ClipOptions | None = None) -> ClipResult:
    """Blocking form of :func:`cut_clip` (scripts and the benchmark)."""
    return asyncio.run(cut_clip(coverage, out_path, options))


def describe(result: ClipResult) -> dict[str, object]:
    """The facts an audit event records about a clip."""
    return {"sha256": result.sha256, "size": result.size, "duration_s": round(result.duration_s, 3),
            "segments": list(result.segments_used), "reencoded": result.reencoded,
            "warnings": list(result.warnings), "file": os.path.basename(result.path)}


_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


def clip_filename(camera: str, start: datetime, request_no: str | int) -> str:
    """A file-system-safe clip name built from the camera code, the start time and the request number."""
    cam = _SAFE_NAME.sub("_", camera)[:40] or "camera"
    return f"{cam}_{start.strftime('%Y%m%dT%H%M%S')}_{_SAFE_NAME.sub('_', str(request_no))[:20]}.mp4"
