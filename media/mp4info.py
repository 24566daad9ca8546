"""Read what the clip verification needs from an MP4 file in-process: duration, the video track's
size, frame rate and key-frame interval.

Starting ``ffprobe`` costs ~100 ms on a small machine — as much as cutting a one-minute clip — so
the stream-copied clip we just wrote is checked by reading its ``moov`` box here instead (``mvhd``,
``tkhd``, ``mdhd``, ``hdlr``, ``stts``, ``stss``; ISO/IEC 14496-12). Anything unexpected returns
``None`` and the caller falls back to ffprobe, so this is an optimisation, never a weaker check.

:func:`moov_summary` reads the same box of a recording segment before a cut: its size and sample
count (to reserve room for the clip's ``moov`` in front of the media data) and each track's sample
description (``stsd``: codec, picture size, H.264 parameter sets), to tell whether the segments can
be joined without rewriting the H.264 packets."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts"}
MAX_MOOV = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Mp4Info:
    duration: float
    width: int
    height: int
    fps: float
    has_video: bool
    gop: float | None
    moov_first: bool = True   # the index precedes the media data: players start before the end arrives
    # The video track as a player presents it (its edit list honoured), in seconds: where its first
    # frame is shown, where it ends, and the B-frame reorder delay (the edit's media time).
    video_start: float = 0.0
    video_end: float = 0.0
    reorder: float = 0.0
    audio_end: float | None = None   # the end of the (first) audio track as presented; None: no audio


@dataclass(frozen=True, slots=True)
class MoovSummary:
    moov_size: int
    moov_first: bool
    file_size: int
    samples: int                  # over all tracks (``stsz`` sample counts)
    table_bytes: int              # the per-sample tables (each ``stbl`` but its ``stsd``), all tracks
    video_configs: tuple[bytes, ...]  # per video sample entry: codec, picture size, decoder configuration
    # Presentation times (seconds, edit list honoured: what ffmpeg's demuxer reports as pts) of the
    # video key frames and of the first video frame; () when the edit list is not a simple one.
    key_times: tuple[float, ...] = ()
    video_start: float = 0.0


def _boxes(data: bytes, start: int, end: int) -> list[tuple[bytes, int, int]]:
    """(type, payload start, payload end) of the boxes in data[start:end]."""
    out: list[tuple[bytes, int, int]] = []
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            if pos + 16 > end:
                break
            size = struct.unpack_from(">Q", data, pos + 8)[0]
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            break
        out.append((kind, pos + header, pos + size))
        pos += size
    return out


_TOP_LEVEL = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"uuid", b"udta", b"meta", b"pdin",
              b"styp", b"sidx", b"moof", b"mfra", b"prft"}


def _find_moov(path: Path) -> tuple[bytes, bool, int] | None:
    """The ``moov`` box (header included), whether it comes before the ``mdat``, and the file's size.
    The whole top-level layout is walked: every box must have a known type and the boxes must end
    exactly at the end of the file, so a file whose index overran the room kept for it (media data
    overwritten) or whose tail is missing is not understood."""
    with path.open("rb") as fh:
        fh.seek(0, 2)
        total = fh.tell()
        pos = 0
        moov_at = moov_size = mdat_at = -1
        for _ in range(10_000):
            if pos == total:
                break
            if pos + 8 > total:
                return None
            fh.seek(pos)
            head = fh.read(16)
            size, kind = struct.unpack_from(">I4s", head)
            header = 8
            if size == 1:
                if len(head) < 16:
                    return None
                size = struct.unpack_from(">Q", head, 8)[0]
                header = 16
            elif size == 0:
                size = total - pos
            if size < header or pos + size > total or kind not in _TOP_LEVEL:
                return None
            if kind == b"moov" and moov_at < 0:
                moov_at, moov_size = pos, size
            elif kind == b"mdat" and mdat_at < 0:
                mdat_at = pos
            pos += size
        else:
            return None
        if moov_at < 0 or moov_size > MAX_MOOV:
            return None
        fh.seek(moov_at)
        moov = fh.read(moov_size)
        if len(moov) != moov_size:
            return None
        return moov, mdat_at < 0 or moov_at < mdat_at, total


def _time_fields(data: bytes, start: int) -> tuple[int, int]:
    """(timescale, duration) of an mvhd/mdhd payload."""
    version = data[start]
    if version == 1:
        timescale, duration = struct.unpack_from(">IQ", data, start + 4 + 16)
    else:
        timescale, duration = struct.unpack_from(">II", data, start + 4 + 8)
    return timescale, duration


def _child(data: bytes, start: int, end: int, kind: bytes) -> tuple[int, int] | None:
    for k, s, e in _boxes(data, start, end):
        if k == kind:
            return s, e
    return None


def _read_moov(path: Path) -> tuple[bytes, bool, int, int, int] | None:
    """(the ``moov`` box's bytes, whether it comes before the media data, file size, its body's start and end)."""
    found = _find_moov(path)
    if found is None:
        return None
    moov, first, file_size = found
    top = _boxes(moov, 0, len(moov))
    if not top or top[0][0] != b"moov":
        return None
    return moov, first, file_size, top[0][1], top[0][2]


def mp4_info(path: str | Path) -> Mp4Info | None:
    """The clip's facts, or None when the file is not a plain MP4 this reader understands."""
    try:
        read = _read_moov(Path(path))
        if read is None:
            return None
        moov, first, _, ms, me = read
        mvhd = _child(moov, ms, me, b"mvhd")
        if mvhd is None:
            return None
        timescale, duration = _time_fields(moov, mvhd[0])
        if timescale <= 0:
            return None
        video: tuple[int, int, float, float | None] | None = None
        video_line: _Timeline | None = None
        audio_end: float | None = None
        for kind, ts, te in _boxes(moov, ms, me):
            if kind != b"trak":
                continue
            handler = _handler(moov, ts, te)
            if handler == b"vide" and video is None:
                video = _video_track(moov, ts, te)
                video_line = _timeline(moov, ts, te, timescale)
            elif handler == b"soun" and audio_end is None:
                line = _timeline(moov, ts, te, timescale)
                audio_end = line.end if line is not None else None
        if video is not None:
            width, height, fps, gop = video
            if video_line is None:
                return None
            return Mp4Info(duration / timescale, width, height, fps, True, gop, first, video_line.start,
                           video_line.end, video_line.reorder, audio_end)
        return Mp4Info(duration / timescale, 0, 0, 0.0, False, None, first, audio_end=audio_end)
    except (OSError, struct.error, IndexError, ValueError):
        return None


def moov_summary(path: str | Path) -> MoovSummary | None:
    """Size, sample count and sample descriptions of a file's ``moov``; None when not understood."""
    try:
        read = _read_moov(Path(path))
        if read is None:
            return None
        moov, first, file_size, ms, me = read
        samples = tables = 0
        configs: list[bytes] = []
        mvhd = _child(moov, ms, me, b"mvhd")
        movie_scale = _time_fields(moov, mvhd[0])[0] if mvhd is not None else 0
        key_times: tuple[float, ...] = ()
        video_start = 0.0
        for kind, ts, te in _boxes(moov, ms, me):
            if kind != b"trak":
                continue
            stbl = _path(moov, ts, te, (b"mdia", b"minf", b"stbl"))
            hdlr = _path(moov, ts, te, (b"mdia", b"hdlr"))
            if stbl is None or hdlr is None:
                return None
            stsd = _child(moov, stbl[0], stbl[1], b"stsd")
            stsz = _child(moov, stbl[0], stbl[1], b"stsz") or _child(moov, stbl[0], stbl[1], b"stz2")
            if stsd is None or stsz is None:
                return None
            samples += struct.unpack_from(">I", moov, stsz[0] + 8)[0]
            tables += (stbl[1] - stbl[0]) - (stsd[1] - stsd[0] + 8)
            if moov[hdlr[0] + 8:hdlr[0] + 12] == b"vide":
                if not configs and movie_scale > 0:
                    line = _timeline(moov, ts, te, movie_scale, keys=True)
                    if line is not None:
                        key_times, video_start = line.keys, line.start
                configs.extend(_visual_configs(moov, stsd[0], stsd[1]))
        return MoovSummary(len(moov), first, file_size, samples, tables, tuple(configs), key_times, video_start)
    except (OSError, struct.error, IndexError, ValueError):
        return None


def _visual_configs(d: bytes, start: int, end: int) -> list[bytes]:
    """Each visual sample entry of an ``stsd`` payload as codec + width/height + its child boxes but
    ``btrt`` (bit rates, which differ from file to file without changing the stream)."""
    out: list[bytes] = []
    for kind, es, ee in _boxes(d, start + 8, end):   # after version/flags and entry_count
        head = 78                                      # VisualSampleEntry fields before the child boxes
        if ee - es < head:
            out.append(kind + d[es:ee])
            continue
        children = b"".join(d[cs - 8:ce] for k, cs, ce in _boxes(d, es + head, ee) if k != b"btrt")
        out.append(kind + d[es + 24:es + 28] + children)
    return out


def _path(data: bytes, start: int, end: int, kinds: tuple[bytes, ...]) -> tuple[int, int] | None:
    span: tuple[int, int] | None = (start, end)
    for kind in kinds:
        if span is None:
            return None
        span = _child(data, span[0], span[1], kind)
    return span


def _video_track(d: bytes, ts: int, te: int) -> tuple[int, int, float, float | None] | None:
    mdia = _child(d, ts, te, b"mdia")
    tkhd = _child(d, ts, te, b"tkhd")
    if mdia is None or tkhd is None:
        return None
    hdlr = _child(d, mdia[0], mdia[1], b"hdlr")
    if hdlr is None or d[hdlr[0] + 8:hdlr[0] + 12] != b"vide":
        return None
    mdhd = _child(d, mdia[0], mdia[1], b"mdhd")
    minf = _child(d, mdia[0], mdia[1], b"minf")
    if mdhd is None or minf is None:
        return None
    stbl = _child(d, minf[0], minf[1], b"stbl")
    if stbl is None:
        return None
    timescale, _ = _time_fields(d, mdhd[0])
    version = d[tkhd[0]]
    off = tkhd[0] + 4 + (32 if version == 1 else 20) + 8 + 8 + 36
    width, height = (v >> 16 for v in struct.unpack_from(">II", d, off))
    stts = _child(d, stbl[0], stbl[1], b"stts")
    if stts is None or timescale <= 0:
        return None
    (n_entries,) = struct.unpack_from(">I", d, stts[0] + 4)
    runs = [struct.unpack_from(">II", d, stts[0] + 8 + 8 * i) for i in range(n_entries)]
    samples = sum(c for c, _ in runs)
    ticks = sum(c * delta for c, delta in runs)
    fps = samples * timescale / ticks if ticks else 0.0
    gop: float | None = None
    stss = _child(d, stbl[0], stbl[1], b"stss")
    if stss is not None:
        (n_sync,) = struct.unpack_from(">I", d, stss[0] + 4)
        sync = [struct.unpack_from(">I", d, stss[0] + 8 + 4 * i)[0] for i in range(min(n_sync, 10_000))]
        times = _sample_times(runs, sync, timescale)
        within = [t for t in times if t <= times[0] + 60] if times else []
        gop = max((b - a for a, b in zip(within, within[1:], strict=False)), default=None)
    return int(width), int(height), fps, gop


def _handler(d: bytes, ts: int, te: int) -> bytes:
    hdlr = _path(d, ts, te, (b"mdia", b"hdlr"))
    return d[hdlr[0] + 8:hdlr[0] + 12] if hdlr is not None else b""


@dataclass(frozen=True, slots=True)
class _Timeline:
    start: float                  # where the track's first sample is presented (leading empty edits)
    end: float                    # where its presentation ends (edits, or the media duration without them)
    reorder: float                # media time of the edit: the B-frame delay ffmpeg writes for video
    keys: tuple[float, ...] = ()  # presentation times of the sync samples (when asked for)


def _timeline(d: bytes, ts: int, te: int, movie_scale: int, keys: bool = False) -> _Timeline | None:
    """A track's presentation as ffmpeg's demuxer and the players see it: its edit list (``elst``)
    honoured when it is a simple one — leading empty edits, then one edit at normal rate (what
    ffmpeg and the NVRs write); None for anything else."""
    mdhd = _path(d, ts, te, (b"mdia", b"mdhd"))
    stbl = _path(d, ts, te, (b"mdia", b"minf", b"stbl"))
    if mdhd is None or stbl is None or movie_scale <= 0:
        return None
    scale, media_duration = _time_fields(d, mdhd[0])
    if scale <= 0:
        return None
    start = 0.0
    media_time = 0
    span: float | None = None
    elst = _path(d, ts, te, (b"edts", b"elst"))
    if elst is not None:
        version = d[elst[0]]
        (count,) = struct.unpack_from(">I", d, elst[0] + 4)
        fmt, size = (">QqhH", 20) if version == 1 else (">IihH", 12)
        entries = [struct.unpack_from(fmt, d, elst[0] + 8 + size * i) for i in range(min(count, 16))]
        while entries and entries[0][1] == -1:
            start += entries.pop(0)[0] / movie_scale
        if len(entries) > 1 or (entries and entries[0][2] != 1):
            return None
        if entries:
            span = entries[0][0] / movie_scale
            media_time = entries[0][1]
    if span is None or span == 0:     # no edit (or one "to the end of the media"): the whole media
        span = max(0.0, (media_duration - media_time) / scale)
    key_times: tuple[float, ...] = ()
    if keys:
        stts = _child(d, stbl[0], stbl[1], b"stts")
        stss = _child(d, stbl[0], stbl[1], b"stss")
        if stts is None:
            return None
        (n_runs,) = struct.unpack_from(">I", d, stts[0] + 4)
        runs = [struct.unpack_from(">II", d, stts[0] + 8 + 8 * i) for i in range(n_runs)]
        samples = sum(c for c, _ in runs)
        if stss is None:
            sync = list(range(1, samples + 1))
        else:
            (n_sync,) = struct.unpack_from(">I", d, stss[0] + 4)
            sync = [struct.unpack_from(">I", d, stss[0] + 8 + 4 * i)[0] for i in range(n_sync)]
        offsets = _composition_offsets(d, stbl, sync)
        decode = _sample_times(runs, sync, 1)       # in media ticks
        key_times = tuple(start + (t + o - media_time) / scale for t, o in zip(decode, offsets, strict=False))
    return _Timeline(start, start + span, media_time / scale, key_times)


def _composition_offsets(d: bytes, stbl: tuple[int, int], numbers: list[int]) -> list[int]:
    """``ctts`` offsets of the given 1-based sample numbers (sorted); zeros without a ``ctts``."""
    ctts = _child(d, stbl[0], stbl[1], b"ctts")
    if ctts is None:
        return [0] * len(numbers)
    version = d[ctts[0]]
    (n_runs,) = struct.unpack_from(">I", d, ctts[0] + 4)
    out: list[int] = []
    wanted = iter(numbers)
    nxt = next(wanted, None)
    sample = 1
    for i in range(n_runs):
        count, raw = struct.unpack_from(">II", d, ctts[0] + 8 + 8 * i)
        offset = raw - (1 << 32) if version == 1 and raw & 0x8000_0000 else raw
        while nxt is not None and nxt < sample + count:
            out.append(offset)
            nxt = next(wanted, None)
        sample += count
        if nxt is None:
            break
    out.extend(0 for _ in range(len(numbers) - len(out)))
    return out


def _sample_times(runs: list[tuple[int, int]], numbers: list[int], timescale: int) -> list[float]:
    """Decode times (seconds) of the given 1-based sample numbers (sorted)."""
    out: list[float] = []
    wanted = iter(sorted(numbers))
    nxt = next(wanted, None)
    sample, t = 1, 0
    for count, delta in runs:
        while nxt is not None and nxt < sample + count:
            out.append((t + (nxt - sample) * delta) / timescale)
            nxt = next(wanted, None)
        sample += count
        t += count * delta
        if nxt is None:
            break
    return out


__all__ = ["MoovSummary", "Mp4Info", "moov_summary", "mp4_info"]
