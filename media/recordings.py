"""Find the recordings that cover camera C from T1 to T2.

Two kinds of recording source exist:

* :class:`FolderSource` – a folder of segment files whose *names* carry their start time
  (Frigate's ``YYYY-MM-DD/HH/<camera>/MM.SS.mp4`` or any strftime pattern).  Segments may have any
  length and there may be gaps: each segment's real duration is read with ``ffprobe`` (cached by
  path + mtime + size in memory, optionally in small per-folder sidecar files) so a gap between two
  segments is seen.  Only the day/hour folders that can overlap the window are listed – the cost of a
  query grows with the window, never with the archive.
* :class:`NvrSource` – an NVR playback URL template (RTSP or HTTP) whose ``{start}``/``{end}``
  placeholders are filled in the NVR's format; ffmpeg reads that URL directly.

Both answer :meth:`coverage`, returning a :class:`Coverage` (ordered segments, covered intervals,
gaps inside the window and a :class:`CoverageStatus`).

Recording source strings
------------------------
A camera's ``recording_source`` column holds one string, built by :func:`source_from_string`::

    frigate:/var/lib/frigate/recordings
    frigate:/srv/frigate/recordings;camera=cong_truoc;tz=UTC
    pattern:/srv/nvr-export:{camera}/%Y%m%d/%H%M%S.mp4
    pattern:/srv/cam:%Y/%m/%d/{camera}-%H%M%S.mkv;tz=Asia/Ho_Chi_Minh;max_segment=7200
    nvr:rtsp://{user}:{password}@10.0.0.5/Streaming/tracks/101?starttime={start:%Y%m%dT%H%M%SZ}&endtime={end:%Y%m%dT%H%M%SZ};user_env=NVR_USER;password_env=NVR_PASSWORD

* ``frigate:<root>`` – Frigate's layout below ``<root>``.  Frigate names its folders and files in
  UTC, so the default ``tz`` here is ``UTC``.
* ``pattern:<root>:<pattern>`` – ``<pattern>`` is a path relative to ``<root>`` made of strftime
  fields and the ``{camera}`` placeholder.  ``<root>`` must not contain ``:``.  The default ``tz``
  of the names is the school time zone (``Asia/Ho_Chi_Minh``).
* ``nvr:<url template>`` – placeholders ``{start:<strftime>}``, ``{end:<strftime>}``,
  ``{start_epoch}``, ``{end_epoch}``, ``{camera}``, ``{user}``, ``{password}`` (credentials are
  URL-quoted and read from the environment variables named by ``user_env``/``password_env``).
  Times are formatted in ``tz`` (default ``UTC``, as Hikvision expects).

Options follow the source as ``;key=value`` items: ``tz`` (IANA name), ``camera`` (the camera name
used in file names when it differs from the camera code), ``max_segment`` (seconds, the longest
segment expected: how far before T1 a segment may start; default 3600), ``gap_tolerance`` (seconds
between two segments still treated as contiguous; default 1), ``retention_days`` (older windows
report ``too_old``), ``user_env`` / ``password_env`` (NVR only), ``index_dir`` (folder sources:
where to keep the duration sidecar files; off by default).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Protocol
from urllib.parse import quote, urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

log = logging.getLogger(__name__)

SCHOOL_TZ = "Asia/Ho_Chi_Minh"
FRIGATE_PATTERN = "%Y-%m-%d/%H/{camera}/%M.%S.mp4"
FFPROBE = "ffprobe"


#: every ``SourceError.key``: a source string or template that cannot be used, or NVR credentials not set
SOURCE_ERROR_KEYS = ("bad_timezone", "bad_pattern", "bad_url", "missing_credentials", "bad_option", "bad_source")


class SourceError(ValueError):
    """A recording source string or template that cannot be used; ``key`` is stable for callers."""

    def __init__(self, key: str, detail: str = "") -> None:
        super().__init__(f"{key}: {detail}" if detail else key)
        self.key = key
        self.detail = detail


class CoverageStatus(StrEnum):
    COMPLETE = "complete"    # the whole window is recorded
    PARTIAL = "partial"      # some of it (see ``gaps``)
    NONE = "none"            # nothing in the window
    FUTURE = "future"        # the window starts in the future
    TOO_OLD = "too_old"      # nothing found and the window is older than the retention period


@dataclass(frozen=True, slots=True)
class Interval:
    start: datetime
    end: datetime

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


@dataclass(frozen=True, slots=True)
class Segment:
    """One recorded file (or, for an NVR, the playback URL) with its real start and end (UTC)."""

    path: str
    start: datetime
    end: datetime
    size: int = 0

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


@dataclass(frozen=True, slots=True)
class Coverage:
    """What the recordings hold for ``camera`` in [start, end)."""

    camera: str
    start: datetime
    end: datetime
    status: CoverageStatus
    segments: tuple[Segment, ...] = ()
    covered: tuple[Interval, ...] = ()
    gaps: tuple[Interval, ...] = ()
    corrupt: tuple[str, ...] = ()           # files in the window ffprobe could not read
    kind: str = "folder"                    # "folder" or "nvr"
    url: str | None = field(default=None, repr=False)   # NVR playback URL (holds credentials)
    redacted_url: str | None = None         # the same URL, safe for logs and the audit log

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()

    @property
    def covered_seconds(self) -> float:
        return sum(i.seconds for i in self.covered)


class RecordingSource(Protocol):
    kind: str

    def coverage(self, camera: str, start: datetime, end: datetime, *,
                 now: datetime | None = None) -> Coverage: ...


# ------------------------------------------------------------------------------------------------
# helpers


def _aware(t: datetime, name: str) -> datetime:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")
    return t.astimezone(UTC)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise SourceError("bad_timezone", name) from exc


def _window_status(start: datetime, end: datetime, covered: list[Interval], now: datetime,
                   retention_days: float | None) -> CoverageStatus:
    if start >= now:
        return CoverageStatus.FUTURE
    total = (end - start).total_seconds()
    have = sum(i.seconds for i in covered)
    if have <= 0:
        if retention_days is not None and end < now - timedelta(days=retention_days):
            return CoverageStatus.TOO_OLD
        return CoverageStatus.NONE
    if have >= total - 1e-6:
        return CoverageStatus.COMPLETE
    return CoverageStatus.PARTIAL


def _gaps(start: datetime, end: datetime, covered: list[Interval]) -> list[Interval]:
    out: list[Interval] = []
    cur = start
    for iv in covered:
        if iv.start > cur:
            out.append(Interval(cur, iv.start))
        cur = max(cur, iv.end)
    if cur < end:
        out.append(Interval(cur, end))
    return out


def probe_duration(path: str | Path, timeout: float = 30.0) -> float | None:
    """The container duration of ``path`` in seconds, or ``None`` when ffprobe cannot read it."""
    try:
        proc = subprocess.run(
            [FFPROBE, "-v", "error", "-show_entries", "format=duration", "-of", "json", str(path)],
            capture_output=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    try:
        value = float(json.loads(proc.stdout)["format"]["duration"])
    except (ValueError, KeyError, TypeError):
        return None
    return value if value > 0 else None


_MP4_SUFFIXES = (".mp4", ".m4v", ".mov")


def mp4_layout_ok(path: str | Path) -> bool | None:
    """Whether an MP4 file's top-level boxes are whole: each box ends inside the file, the last one
    exactly at its end, and a ``moov`` (or fragments) exists. ``None`` for a file that is not MP4 by
    name. Cheap (box headers only): it finds the segment whose tail was cut off, which ffprobe reports
    with its full duration when the index comes first (``+faststart``)."""
    if not str(path).lower().endswith(_MP4_SUFFIXES):
        return None
    try:
        with open(path, "rb") as fh:
            total = os.fstat(fh.fileno()).st_size
            pos, index = 0, False
            for _ in range(100_000):
                if pos == total:
                    return index
                fh.seek(pos)
                head = fh.read(16)
                if len(head) < 8:
                    return False
                size, kind = int.from_bytes(head[:4], "big"), head[4:8]
                header = 8
                if size == 1:
                    if len(head) < 16:
                        return False
                    size, header = int.from_bytes(head[8:16], "big"), 16
                elif size == 0:
                    size = total - pos
                if size < header or pos + size > total:
                    return False
                index = index or kind in (b"moov", b"moof")
                pos += size
            return False
    except OSError:
        return False


class DurationCache:
    """Segment durations keyed by (path, mtime_ns, size): in memory, and optionally in one small
    JSON sidecar per listed folder under ``index_dir`` (so the cost stays per window)."""

    def __init__(self, index_dir: Path | None = None) -> None:
        self.index_dir = Path(index_dir) if index_dir else None
        self._mem: dict[tuple[str, int, int], float | None] = {}
        self._lock = threading.Lock()
        self.probes = 0  # number of ffprobe runs (for tests and the benchmark)

    def _sidecar(self, folder: str) -> Path | None:
        if self.index_dir is None:
            return None
        return self.index_dir / (hashlib.sha1(folder.encode()).hexdigest()[:20] + ".json")

    def _load_sidecar(self, folder: str) -> None:
        side = self._sidecar(folder)
        if side is None or not side.exists():
            return
        try:
            data = json.loads(side.read_text("utf-8"))
        except (OSError, ValueError):
            return
        with self._lock:
            for name, (mtime, size, dur) in data.get("files", {}).items():
                self._mem.setdefault((os.path.join(folder, name), int(mtime), int(size)), dur)

    def _save_sidecar(self, folder: str, entries: Mapping[str, tuple[int, int, float | None]]) -> None:
        side = self._sidecar(folder)
        if side is None:
            return
        try:
            side.parent.mkdir(parents=True, exist_ok=True)
            old: dict[str, list[object]] = {}
            if side.exists():
                old = json.loads(side.read_text("utf-8")).get("files", {})
            old.update({k: list(v) for k, v in entries.items()})
            fd, tmp = tempfile.mkstemp(dir=side.parent, prefix=".idx-")
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump({"folder": folder, "files": old}, fh)
            os.replace(tmp, side)
        except (OSError, ValueError) as exc:  # a cache only: never fail a query because of it
            log.warning("duration index not written: %s", exc)

    def durations(self, files: Iterable[tuple[str, os.stat_result]]) -> dict[str, float | None]:
        """Durations for the given (path, stat) pairs; unknown ones are probed in parallel."""
        items = list(files)
        for folder in {os.path.dirname(p) for p, _ in items}:
            self._load_sidecar(folder)
        out: dict[str, float | None] = {}
        todo: list[tuple[str, tuple[str, int, int]]] = []
        with self._lock:
            for path, st in items:
                key = (path, st.st_mtime_ns, st.st_size)
                if key in self._mem and self._mem[key] is not None:
                    out[path] = self._mem[key]
                else:
                    todo.append((path, key))
        if todo:
            workers = min(8, len(todo))
            with ThreadPoolExecutor(max_workers=workers) as pool:
                results = list(pool.map(probe_duration, [p for p, _ in todo]))
            new: dict[str, dict[str, tuple[int, int, float | None]]] = {}
            with self._lock:
                self.probes += len(todo)
                for (path, key), dur in zip(todo, results, strict=True):
                    self._mem[key] = dur
                    out[path] = dur
                    if dur is not None:
                        new.setdefault(os.path.dirname(path), {})[os.path.basename(path)] = (key[1], key[2], dur)
            for folder, entries in new.items():
                self._save_sidecar(folder, entries)
        return out


_DEFAULT_CACHE = DurationCache()

_FIELD_STEP = {  # strftime directive -> the finest time step it distinguishes
    "Y": timedelta(days=365), "y": timedelta(days=365), "G": timedelta(days=365),
    "m": timedelta(days=28), "b": timedelta(days=28), "B": timedelta(days=28),
    "d": timedelta(days=1), "j": timedelta(days=1), "a": timedelta(days=1), "A": timedelta(days=1),
    "H": timedelta(hours=1), "I": timedelta(hours=1), "p": timedelta(hours=12),
    "M": timedelta(minutes=1), "S": timedelta(seconds=1),
}
_DIRECTIVE = re.compile(r"%([-#]?[a-zA-Z%])")


def _finest_step(parts: Iterable[str]) -> timedelta | None:
    steps = [_FIELD_STEP[d[-1]] for part in parts for d in _DIRECTIVE.findall(part) if d[-1] in _FIELD_STEP]
    return min(steps) if steps else None


# ------------------------------------------------------------------------------------------------
# folder of segments


class FolderSource:
    """Segment files under ``root`` named by ``pattern`` (strftime fields + ``{camera}``)."""

    kind = "folder"

    def __init__(self, root: str | Path, pattern: str = FRIGATE_PATTERN, *, tz: str = SCHOOL_TZ,
                 camera: str | None = None, max_segment_s: float = 3600.0, gap_tolerance_s: float = 1.0,
                 retention_days: float | None = None, cache: DurationCache | None = None) -> None:
        pattern = pattern.strip().lstrip("/")
        if not pattern or "%" not in pattern:
            raise SourceError("bad_pattern", pattern)
        if ".." in pattern.split("/"):
            raise SourceError("bad_pattern", pattern)
        self.root = Path(root)
        self.pattern = pattern
        self.tz = _zone(tz)
        self.camera = camera
        self.max_segment = timedelta(seconds=max_segment_s)
        self.gap_tolerance = timedelta(seconds=gap_tolerance_s)
        self.retention_days = retention_days
        self.cache = cache or _DEFAULT_CACHE
        self.dirs_listed = 0  # folders listed by the last query (the benchmark prints it)

    def _pattern_for(self, camera: str) -> str:
        return self.pattern.replace("{camera}", (self.camera or camera).replace("%", "%%"))

    def relpath(self, camera: str, start: datetime) -> str:
        """The relative file name a segment of ``camera`` starting at ``start`` has."""
        return _aware(start, "start").astimezone(self.tz).strftime(self._pattern_for(camera))

    def _candidate_dirs(self, pattern: str, lo: datetime, hi: datetime) -> list[str]:
        parts = pattern.split("/")[:-1]
        if not parts:
            return [""]
        dir_pattern = "/".join(parts)
        step = _finest_step(parts)
        if step is None:
            return [dir_pattern.replace("%%", "%")]
        step = min(step, timedelta(hours=1))
        out: list[str] = []
        seen: set[str] = set()
        t = lo
        while True:
            name = t.astimezone(self.tz).strftime(dir_pattern)
            if name not in seen:
                seen.add(name)
                out.append(name)
            if t >= hi:
                break
            t = min(t + step, hi)
        return out

    def _list(self, camera: str, lo: datetime, hi: datetime) -> list[tuple[datetime, str, os.stat_result]]:
        pattern = self._pattern_for(camera)
        found: list[tuple[datetime, str, os.stat_result]] = []
        self.dirs_listed = 0
        for rel_dir in self._candidate_dirs(pattern, lo, hi):
            folder = self.root / rel_dir if rel_dir else self.root
            try:
                entries = list(os.scandir(folder))
            except (FileNotFoundError, NotADirectoryError, PermissionError):
                continue
            self.dirs_listed += 1
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                try:
                    local = datetime.strptime(rel, pattern)
                except ValueError:
                    continue
                start = local.replace(tzinfo=self.tz).astimezone(UTC)
                if not (lo <= start < hi):
                    continue
                try:
                    st = entry.stat()
                except OSError:
                    continue
                if not entry.is_file():
                    continue
                found.append((start, entry.path, st))
        found.sort(key=lambda x: (x[0], x[1]))
        return found

    def coverage(self, camera: str, start: datetime, end: datetime, *,
                 now: datetime | None = None) -> Coverage:
        start, end = _aware(start, "start"), _aware(end, "end")
        if end <= start:
            raise ValueError("end must be after start")
        now = _aware(now, "now") if now else datetime.now(UTC)
        if start >= now:
            return Coverage(camera, start, end, CoverageStatus.FUTURE, gaps=(Interval(start, end),))
        listed = self._list(camera, start - self.max_segment, end)
        # Of the files starting before the window only the last one can reach into it.
        before = [f for f in listed if f[0] < start]
        inside = [f for f in listed if f[0] >= start]
        candidates = before[-1:] + inside
        durations = self.cache.durations((p, st) for _, p, st in candidates)
        segments: list[Segment] = []
        corrupt: list[str] = []
        for seg_start, path, st in candidates:
            dur = durations.get(path)
            if dur is None:
                if seg_start >= start:
                    corrupt.append(path)
                continue
            seg_end = seg_start + timedelta(seconds=dur)
            if seg_end <= start or seg_start >= end:
                continue
            segments.append(Segment(path=path, start=seg_start, end=seg_end, size=st.st_size))
        covered: list[Interval] = []
        for seg in segments:
            lo, hi = max(seg.start, start), min(seg.end, end)
            if covered and lo <= covered[-1].end + self.gap_tolerance:
                covered[-1] = Interval(covered[-1].start, max(covered[-1].end, hi))
            else:
                covered.append(Interval(lo, hi))
        # Contiguous within tolerance at the window edges counts as covered.
        if covered and covered[0].start - start <= self.gap_tolerance:
            covered[0] = Interval(start, covered[0].end)
        if covered and end - covered[-1].end <= self.gap_tolerance:
            covered[-1] = Interval(covered[-1].start, end)
        if now < end:  # nothing can be recorded after "now"
            covered = [Interval(i.start, min(i.end, now)) for i in covered if i.start < now]
        status = _window_status(start, end, covered, now, self.retention_days)
        return Coverage(camera=camera, start=start, end=end, status=status, segments=tuple(segments),
                        covered=tuple(covered), gaps=tuple(_gaps(start, end, covered)),
                        corrupt=tuple(corrupt), kind=self.kind)


# ------------------------------------------------------------------------------------------------
# NVR playback URL


class NvrSource:
    """An NVR playback URL template; ffmpeg reads the rendered URL (see the module docstring)."""

    kind = "nvr"

    def __init__(self, template: str, *, tz: str = "UTC", user_env: str | None = None,
                 password_env: str | None = None, camera: str | None = None,
                 retention_days: float | None = None, env: Mapping[str, str] | None = None) -> None:
        scheme = urlsplit(template.replace("{", "").replace("}", "")).scheme.lower()
        if scheme not in ("rtsp", "rtsps", "http", "https"):
            raise SourceError("bad_url", "scheme must be rtsp or http(s)")
        self.template = template
        self.scheme = scheme
        self.tz = _zone(tz)
        self.user_env = user_env
        self.password_env = password_env
        self.camera = camera
        self.retention_days = retention_days
        self._env = env if env is not None else os.environ
        # Fail early on a template that cannot be formatted.
        t = datetime(2000, 1, 1, tzinfo=UTC)
        self._render(camera or "cam", t, t, "u", "p")

    def _credentials(self) -> tuple[str, str]:
        user = self._env.get(self.user_env, "") if self.user_env else ""
        password = self._env.get(self.password_env, "") if self.password_env else ""
        if self.user_env and not user:
            raise SourceError("missing_credentials", self.user_env)
        if self.password_env and not password:
            raise SourceError("missing_credentials", self.password_env)
        return user, password

    def _render(self, camera: str, start: datetime, end: datetime, user: str, password: str) -> str:
        s, e = start.astimezone(self.tz), end.astimezone(self.tz)
        try:
            return self.template.format(start=s, end=e, start_epoch=int(start.timestamp()),
                                        end_epoch=int(end.timestamp()), camera=quote(self.camera or camera),
                                        user=quote(user, safe=""), password=quote(password, safe=""))
        except (KeyError, IndexError, ValueError) as exc:
            raise SourceError("bad_url", f"template: {exc}") from exc

    def url(self, camera: str, start: datetime, end: datetime) -> str:
        """The playback URL with credentials (never log it: see :meth:`redacted_url`)."""
        user, password = self._credentials()
        return self._render(camera, _aware(start, "start"), _aware(end, "end"), user, password)

    def redacted_url(self, camera: str, start: datetime, end: datetime) -> str:
        url = self._render(camera, _aware(start, "start"), _aware(end, "end"), "***", "***")
        return redact_url(url)

    def coverage(self, camera: str, start: datetime, end: datetime, *,
                 now: datetime | None = None) -> Coverage:
        start, end = _aware(start, "start"), _aware(end, "end")
        if end <= start:
            raise ValueError("end must be after start")
        now = _aware(now, "now") if now else datetime.now(UTC)
        if start >= now:
            return Coverage(camera, start, end, CoverageStatus.FUTURE, gaps=(Interval(start, end),), kind="nvr")
        covered = [Interval(start, min(end, now))]
        if self.retention_days is not None and end < now - timedelta(days=self.retention_days):
            covered = []
        status = _window_status(start, end, covered, now, self.retention_days)
        stop = min(end, now)
        url = self.url(camera, start, stop) if covered else None
        segs = (Segment(path=self.redacted_url(camera, start, stop), start=start, end=stop),) if covered else ()
        return Coverage(camera=camera, start=start, end=end, status=status, segments=segs,
                        covered=tuple(covered), gaps=tuple(_gaps(start, end, covered)), kind="nvr",
                        url=url, redacted_url=self.redacted_url(camera, start, stop))


_SECRET_PARAMS = re.compile(r"(?i)([?&;](?:password|passwd|pwd|pass|token|auth|key|secret)=)[^&;#]*")


def redact_url(url: str) -> str:
    """``url`` with the user info and secret-looking query parameters replaced by ``***``."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***:***@" + netloc.rsplit("@", 1)[1]
    out = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return _SECRET_PARAMS.sub(r"\1***", out)


# ------------------------------------------------------------------------------------------------
# factory

_OPTION = re.compile(r";(tz|camera|max_segment|gap_tolerance|retention_days|user_env|password_env|index_dir)="
                     r"([^;]*)$")


def _split_options(spec: str) -> tuple[str, dict[str, str]]:
    opts: dict[str, str] = {}
    while True:
        m = _OPTION.search(spec)
        if not m:
            return spec, opts
        opts.setdefault(m.group(1), m.group(2).strip())
        spec = spec[:m.start()]


def _float(opts: Mapping[str, str], key: str, default: float | None) -> float | None:
    if key not in opts:
        return default
    try:
        value = float(opts[key])
    except ValueError as exc:
        raise SourceError("bad_option", key) from exc
    if value < 0:
        raise SourceError("bad_option", key)
    return value


def source_from_string(spec: str, *, school_tz: str = SCHOOL_TZ, retention_days: float | None = None,
                       env: Mapping[str, str] | None = None,
                       cache: DurationCache | None = None) -> FolderSource | NvrSource:
    """Build a recording source from a camera's ``recording_source`` string (syntax above)."""
    spec = (spec or "").strip()
    kind, sep, rest = spec.partition(":")
    if not sep or not rest:
        raise SourceError("bad_source", "expected frigate:, pattern: or nvr:")
    rest, opts = _split_options(rest)
    kind = kind.lower()
    retention = _float(opts, "retention_days", retention_days)
    if kind in ("frigate", "pattern"):
        if kind == "frigate":
            root, pattern, tz = rest, FRIGATE_PATTERN, opts.get("tz", "UTC")
        else:
            root, sep, pattern = rest.partition(":")
            if not sep:
                raise SourceError("bad_source", "pattern:<folder>:<pattern>")
            tz = opts.get("tz", school_tz)
        if not root.strip():
            raise SourceError("bad_source", "empty folder")
        if "index_dir" in opts and cache is None:
            cache = DurationCache(Path(opts["index_dir"]))
        return FolderSource(root.strip(), pattern, tz=tz, camera=opts.get("camera") or None,
                            max_segment_s=_float(opts, "max_segment", 3600.0) or 3600.0,
                            gap_tolerance_s=_float(opts, "gap_tolerance", 1.0) or 0.0,
                            retention_days=retention, cache=cache)
    if kind == "nvr":
        return NvrSource(rest.strip(), tz=opts.get("tz", "UTC"), user_env=opts.get("user_env") or None,
                         password_env=opts.get("password_env") or None, camera=opts.get("camera") or None,
                         retention_days=retention, env=env)
    raise SourceError("bad_source", f"unknown kind {kind!r}")
