"""Synthetic camera recordings for tests, the benchmark and the demo.

:func:`make_archive` renders ffmpeg's ``testsrc2`` with the wall-clock time burned in (drawtext with a
font that has Vietnamese glyphs) in ONE ffmpeg run, split into segments by the segment muxer with a
key frame at every segment start, then names each segment after its start time in the Frigate layout
or a strftime pattern (see :mod:`media.recordings`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import ffmpeg

from media.clips import find_font
from media.recordings import FRIGATE_PATTERN, SCHOOL_TZ, FolderSource


def layout_pattern(layout: str) -> str:
    """``"frigate"`` or a strftime pattern with ``{camera}``."""
    return FRIGATE_PATTERN if layout == "frigate" else layout


def make_archive(root: str | Path, camera: str, start: datetime, duration: float, segment_seconds: float = 60,
                 layout: str = "frigate", fps: int = 2, size: str = "320x180", gop: int | None = None, *,
                 tz: str | None = None, clock_tz_name: str = SCHOOL_TZ, label: str | None = None, reuse_one_segment: bool = False,
                 timeout: float = 600, crf: int | None = None, audio_bitrate: int | None = None) -> list[Path]:
    """Write ``duration`` seconds of synthetic video for ``camera`` from ``start`` under ``root``.

    ``gop`` is the key-frame interval in frames (default: one key frame per second).  ``tz`` is the
    time zone of the file names (default UTC for Frigate, the school time zone for a pattern); the
    burned-in clock shows the time in ``clock_tz_name`` (the school time zone).
    ``reuse_one_segment`` renders a single segment and hard-links it under every name (for the
    benchmark: a day of names costs one render; the burned-in clock then repeats).
    ``audio_bitrate`` adds a sine tone as AAC at that bit rate (as a camera with a microphone records).
    Returns the segment paths in time order."""
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    if segment_seconds <= 0 or duration <= 0:
        raise ValueError("duration and segment_seconds must be positive")
    root = Path(root)
    pattern = layout_pattern(layout)
    names_tz = tz or ("UTC" if layout == "frigate" else SCHOOL_TZ)
    source = FolderSource(root, pattern, tz=names_tz)
    gop = gop or max(1, fps)
    n_segments = max(1, int(round(duration / segment_seconds)))
    render_seconds = segment_seconds if reuse_one_segment else n_segments * segment_seconds
    clock_tz = ZoneInfo(clock_tz_name)
    offset = start.astimezone(clock_tz).utcoffset() or timedelta(0)
    epoch = int(start.timestamp() + offset.total_seconds())
    with tempfile.TemporaryDirectory(prefix="synth-") as tmp:
        textfile = Path(tmp) / "clock.txt"
        caption = label if label is not None else camera
        # Expansion-level escaping only (a text file needs no filter-graph escaping).
        textfile.write_text(f"{caption}\n%{{pts:gmtime:{epoch}:%Y-%m-%d %H\\:%M\\:%S}}", encoding="utf-8")
        src = ffmpeg.input(f"testsrc2=size={size}:rate={fps}", f="lavfi", t=render_seconds)
        draw: dict[str, object] = {"textfile": str(textfile), "x": 8, "y": 8, "fontsize": max(10, int(size.split("x")[1]) // 12),
                                   "fontcolor": "white", "box": 1, "boxcolor": "black@0.6"}
        font = find_font()
        if font:
            draw["fontfile"] = font
        video = src.filter("drawtext", **draw)
        seg_pattern = str(Path(tmp) / "seg%06d.mp4")
        streams = [video]
        sound: dict[str, object] = {}
        if audio_bitrate:
            streams.append(ffmpeg.input("sine=frequency=440:sample_rate=48000", f="lavfi", t=render_seconds).audio)
            sound = {"acodec": "aac", "audio_bitrate": str(audio_bitrate)}
        out = ffmpeg.output(
            *streams, seg_pattern, **sound, f="segment", segment_time=segment_seconds, reset_timestamps=1,
            segment_format="mp4", segment_format_options="movflags=+faststart",
            vcodec="libx264", preset="ultrafast", tune="zerolatency", pix_fmt="yuv420p", g=gop,
            keyint_min=gop, sc_threshold=0, **({"crf": crf} if crf is not None else {}),
            force_key_frames=f"expr:gte(t,n_forced*{segment_seconds})")
        args = ffmpeg.compile(out.global_args("-hide_banner", "-loglevel", "error"), overwrite_output=True)
        proc = subprocess.run(args, capture_output=True, timeout=timeout, check=False)
        if proc.returncode != 0:
            raise RuntimeError("ffmpeg failed: " + proc.stderr.decode("utf-8", "replace")[-500:])
        rendered = sorted(Path(tmp).glob("seg*.mp4"))
        if not rendered:
            raise RuntimeError("ffmpeg wrote no segments")
        paths: list[Path] = []
        for i in range(n_segments):
            seg_start = (start + timedelta(seconds=i * segment_seconds)).astimezone(UTC)
            target = root / source.relpath(camera, seg_start)
            target.parent.mkdir(parents=True, exist_ok=True)
            src_file = rendered[0] if reuse_one_segment else rendered[min(i, len(rendered) - 1)]
            if target.exists():
                target.unlink()
            if reuse_one_segment:
                keep = root / ".synth-segment.mp4"
                if i == 0:
                    shutil.copyfile(src_file, keep)
                try:
                    os.link(keep, target)
                except OSError:
                    shutil.copyfile(keep, target)
            else:
                shutil.move(str(src_file), target)
            paths.append(target)
    return paths
