"""Clips of recordings with AAC audio and H.264 B-frames (as an NVR or Frigate writes them).

Real ffmpeg.  Such a stream copy starts at the key frame at or before the window (so it may be up to one
GOP longer at the start), its audio starts with the first picture, and it is not refused as
``duration_mismatch``.  Durations are checked with ffprobe, independently of media.mp4info."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from media.clips import cut_clip
from media.mp4info import moov_summary, mp4_info
from media.recordings import DurationCache, FolderSource

T0 = datetime(2026, 11, 21, 1, 30, tzinfo=UTC)
NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
FPS, GOP, BFRAMES, SEG_S = 5, 5, 2, 3
GOP_S = GOP / FPS
REORDER_S = BFRAMES / FPS
TAIL_S = REORDER_S + 1 / FPS       # how far the video may run past a cut made on decode times


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture(scope="module")
def av_archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """Four 3 s segments, one ffmpeg run with the segment muxer (the first one starts one B-frame
    delay late, through an empty edit, as ffmpeg writes it)."""
    root = tmp_path_factory.mktemp("av")
    raw = root / "raw"
    raw.mkdir()
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-f", "lavfi", "-i", f"testsrc2=size=320x180:rate={FPS}",
                    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", str(4 * SEG_S),
                    "-c:v", "libx264", "-preset", "ultrafast", "-bf", str(BFRAMES), "-g", str(GOP),
                    "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "32k", "-f", "segment",
                    "-segment_time", str(SEG_S), "-reset_timestamps", "1", "-segment_format", "mp4",
                    str(raw / "s%03d.mp4")], check=True, capture_output=True)
    src = FolderSource(root / "rec", tz="UTC")
    paths: list[Path] = []
    for i, seg in enumerate(sorted(raw.glob("s*.mp4"))):
        target = root / "rec" / src.relpath("cam", at(SEG_S * i))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(seg, target)
        paths.append(target)
    assert len(paths) == 4
    return root / "rec", paths


def streams(path: Path) -> dict[str, dict[str, Any]]:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries",
                          "stream=codec_type,start_time,duration,has_b_frames", "-of", "json", str(path)],
                         capture_output=True, check=True).stdout
    return {s["codec_type"]: s for s in json.loads(out)["streams"]}


def key_frame_times(path: Path) -> list[float]:
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                          "packet=pts_time,flags", "-of", "csv=p=0", str(path)],
                         capture_output=True, check=True, text=True).stdout
    return [float(t) for t, flags in (line.split(",", 1) for line in out.split()) if "K" in flags]


def top_level(path: Path) -> list[bytes]:
    data = path.read_bytes()
    kinds, pos = [], 0
    while pos < len(data):
        size, kind = struct.unpack_from(">I4s", data, pos)
        if size == 1:
            size = struct.unpack_from(">Q", data, pos + 8)[0]
        assert size >= 8
        kinds.append(kind)
        pos += size
    return kinds


def test_segments_have_audio_b_frames_and_an_empty_edit(av_archive: tuple[Path, list[Path]]) -> None:
    """The fixture is what it claims, and the in-process reader sees the first segment's times as
    ffprobe does (edit list honoured)."""
    _, paths = av_archive
    first = streams(paths[0])
    assert set(first) == {"video", "audio"} and int(first["video"]["has_b_frames"]) > 0
    assert float(first["video"]["start_time"]) > 0.1            # the B-frame delay, as an empty edit
    for path in (paths[0], paths[1]):
        summary = moov_summary(path)
        assert summary is not None
        assert summary.key_times == pytest.approx(key_frame_times(path), abs=0.002)
        assert summary.video_start == pytest.approx(float(streams(path)["video"]["start_time"]), abs=0.002)


@pytest.mark.parametrize(("start", "end", "n_segments"), [
    (3.5, 5.3, 1),       # inside one segment, both ends mid-GOP
    (1.3, 2.6, 1),       # inside the first segment (the one with the empty edit)
    (4.3, 8.1, 2),       # two segments
    (1.4, 10.6, 4),      # from the first to the last segment
    (6.0, 11.3, 2),      # starting exactly on a segment boundary
])
async def test_av_cut_is_delivered_with_the_window(av_archive: tuple[Path, list[Path]], tmp_path: Path,
                                                   start: float, end: float, n_segments: int) -> None:
    root, paths = av_archive
    src = FolderSource(root, tz="UTC", cache=DurationCache())
    cov = src.coverage("cam", at(start), at(end), now=NOW)
    res = await cut_clip(cov, tmp_path / "av.mp4")        # no duration_mismatch
    window = end - start
    assert len(res.segments_used) == n_segments
    assert not res.reencoded
    kinds = top_level(res.path)
    assert kinds.index(b"moov") < kinds.index(b"mdat")
    found = streams(res.path)
    assert set(found) == {"video", "audio"}
    video, audio = found["video"], found["audio"]
    video_start, video_len = float(video["start_time"]), float(video["duration"])
    audio_start, audio_len = float(audio["start_time"]), float(audio["duration"])
    # starts at the key frame at or before the window: up to one GOP early, and the cut on decode
    # times may end one B-frame delay late
    assert window - 0.01 <= video_len <= window + GOP_S + TAIL_S + 0.01
    assert abs(video_start) <= 0.01
    # the audio starts with the first picture and does not outlast the video
    assert -0.01 <= audio_start - video_start <= 0.1
    assert audio_start + audio_len <= video_start + video_len + 0.1
    assert audio_len >= window - 0.3
    # the in-process reader agrees with ffprobe within the muxer's edit-list rounding
    info = mp4_info(res.path)
    assert info is not None and info.moov_first
    assert video_len - 0.01 <= info.video_end <= video_len + REORDER_S + 0.01
    assert res.duration_s == pytest.approx(info.video_end, abs=0.001)


async def test_window_on_a_boundary_skips_the_segment_that_ends_there(av_archive: tuple[Path, list[Path]],
                                                                     tmp_path: Path) -> None:
    """The first segment's probed duration runs one B-frame delay past the second's start: a window
    from that start needs only the later segments, and the clip has no picture from before it."""
    root, paths = av_archive
    src = FolderSource(root, tz="UTC", cache=DurationCache())
    cov = src.coverage("cam", at(SEG_S), at(2 * SEG_S + 1.5), now=NOW)
    assert cov.segments[0].path == str(paths[0])             # the coverage does list it
    res = await cut_clip(cov, tmp_path / "edge.mp4")
    assert res.segments_used == (str(paths[1]), str(paths[2]))
    video = streams(res.path)["video"]
    assert 4.5 - 0.01 <= float(video["duration"]) <= 4.5 + TAIL_S + 0.01
