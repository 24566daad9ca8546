"""Stream-copied clips have their index (``moov``) in front of the media data, written in place.

Real ffmpeg on tiny synthetic recordings: the room reserved for the index, the fallback when it is too
small, and the H.264 pass-through of the concat demuxer only when the segments agree."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import struct
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import media.clips as clips
from media.clips import cut_clip
from media.mp4info import moov_summary, mp4_info
from media.recordings import DurationCache, FolderSource
from media.synth import make_archive

T0 = datetime(2026, 11, 21, 1, 30, tzinfo=UTC)
NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
FPS, GOP = 5, 5            # one key frame per second
GOP_S = GOP / FPS


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def top_boxes(path: Path) -> list[tuple[bytes, int]]:
    """(type, size) of the top-level boxes, walked independently of media.mp4info."""
    data = path.read_bytes()
    out: list[tuple[bytes, int]] = []
    pos = 0
    while pos < len(data):
        size, kind = struct.unpack_from(">I4s", data, pos)
        if size == 1:
            size = struct.unpack_from(">Q", data, pos + 8)[0]
        elif size == 0:
            size = len(data) - pos
        assert size >= 8 and pos + size <= len(data), f"broken box {kind!r} at {pos}"
        out.append((kind, size))
        pos += size
    return out


def assert_moov_first(path: Path) -> None:
    kinds = [k for k, _ in top_boxes(path)]
    assert b"moov" in kinds and b"mdat" in kinds
    assert kinds.index(b"moov") < kinds.index(b"mdat"), kinds
    info = mp4_info(path)
    assert info is not None and info.moov_first


def decode_errors(path: Path) -> str:
    """Everything ffmpeg complains about while decoding the whole file (empty: it plays cleanly)."""
    proc = subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-i", str(path), "-f", "null", "-"],
                          capture_output=True, text=True, check=False)
    return proc.stderr.strip() + ("" if proc.returncode == 0 else f" (exit {proc.returncode})")


def probe(path: Path) -> dict[str, Any]:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration:stream=codec_type,width",
                          "-of", "json", str(path)], capture_output=True, check=True).stdout
    return json.loads(out)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def archive(tmp_path: Path) -> FolderSource:
    make_archive(tmp_path / "rec", "cam", T0, 12, 2, layout="frigate", fps=FPS, size="160x90", gop=GOP)
    return FolderSource(tmp_path / "rec", tz="UTC", cache=DurationCache())


def commands(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Record the ffmpeg command lines the cut runs."""
    seen: list[list[str]] = []
    real = clips.run_ffmpeg

    async def spy(args: list[str], **kwargs: object) -> str:
        seen.append(list(args))
        return await real(args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(clips, "run_ffmpeg", spy)
    return seen


async def test_multi_segment_cut_has_moov_before_mdat_in_one_pass(archive: FolderSource, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    ran = commands(monkeypatch)
    cov = archive.coverage("cam", at(1), at(10.5), now=NOW)
    res = await cut_clip(cov, tmp_path / "multi.mp4")
    assert len(res.segments_used) == 6
    assert_moov_first(res.path)
    assert decode_errors(res.path) == ""
    duration = float(probe(res.path)["format"]["duration"])
    assert abs(duration - 9.5) <= GOP_S and abs(res.duration_s - 9.5) <= GOP_S
    assert res.sha256 == sha256(res.path) and res.size == res.path.stat().st_size
    # one ffmpeg run: room reserved for the index, no +faststart rewrite; same H.264 everywhere
    assert len(ran) == 1
    assert "-moov_size" in ran[0] and "+faststart" not in ran[0]
    assert ran[0][ran[0].index("-auto_convert") + 1] == "0"
    # the unused part of the reservation is a free box right after the index
    boxes = top_boxes(res.path)
    assert boxes[1][0] == b"moov" and boxes[2][0] == b"free"


async def test_single_segment_cut_has_moov_before_mdat(archive: FolderSource, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    ran = commands(monkeypatch)
    res = await cut_clip(archive.coverage("cam", at(4.2), at(5.8), now=NOW), tmp_path / "one.mp4")
    assert len(res.segments_used) == 1 and len(ran) == 1 and "-moov_size" in ran[0]
    assert_moov_first(res.path)
    assert decode_errors(res.path) == "" and res.sha256 == sha256(res.path)


async def test_short_reservation_falls_back_to_faststart(archive: FolderSource, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    ran = commands(monkeypatch)
    monkeypatch.setattr(clips, "_moov_reserve", lambda summaries: 64)   # far too small for the index
    cov = archive.coverage("cam", at(1), at(10.5), now=NOW)
    with caplog.at_level(logging.WARNING, logger="media.clips"):
        res = await cut_clip(cov, tmp_path / "fallback.mp4")
    assert len(ran) == 2 and "-moov_size" in ran[0] and "+faststart" in ran[1]
    assert any("+faststart" in r.getMessage() for r in caplog.records)
    assert_moov_first(res.path)
    assert decode_errors(res.path) == ""
    assert abs(res.duration_s - 9.5) <= GOP_S and res.sha256 == sha256(res.path)


def test_overrun_index_is_not_understood(archive: FolderSource, tmp_path: Path) -> None:
    """What ffmpeg leaves when the reservation is short (exit 0, the index written over the start of
    the media data) must not pass for a clip."""
    seg = sorted((tmp_path / "rec").rglob("*.mp4"))[0]
    out = tmp_path / "overrun.mp4"
    proc = subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-i", str(seg), "-c", "copy", "-f", "mp4",
                           "-moov_size", "64", str(out)], capture_output=True, text=True, check=False)
    assert "reserved_moov_size" in proc.stderr
    assert mp4_info(out) is None


async def test_segments_with_different_h264_settings_are_converted(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A camera whose picture size changed between two segments: the concat demuxer keeps converting
    the packets (parameter sets in-band), and the clip still plays."""
    make_archive(tmp_path / "rec", "cam", T0, 4, 2, layout="frigate", fps=FPS, size="160x90", gop=GOP)
    make_archive(tmp_path / "rec", "cam", at(4), 4, 2, layout="frigate", fps=FPS, size="192x108", gop=GOP)
    src = FolderSource(tmp_path / "rec", tz="UTC", cache=DurationCache())
    cov = src.coverage("cam", at(1), at(7), now=NOW)
    summaries = [moov_summary(s.path) for s in cov.segments]
    assert all(summaries) and summaries[0] != summaries[-1]
    assert not clips._same_video_config(summaries)  # type: ignore[arg-type]
    ran = commands(monkeypatch)
    res = await cut_clip(cov, tmp_path / "mixed.mp4")
    assert "-auto_convert" not in ran[0]
    assert_moov_first(res.path)
    assert abs(res.duration_s - 6.0) <= GOP_S and res.sha256 == sha256(res.path)


async def test_recordings_with_audio_b_frames_and_moov_at_the_end(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Segments as an NVR/Frigate writes them (index at the end, AAC audio, B-frames): the reservation
    estimated from their sample tables holds the clip's index at the first attempt."""
    raw = tmp_path / "raw"
    raw.mkdir()
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-f", "lavfi", "-i", "testsrc2=size=160x90:rate=15",
                    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "12",
                    "-c:v", "libx264", "-preset", "ultrafast", "-bf", "2", "-g", "15", "-pix_fmt", "yuv420p",
                    "-c:a", "aac", "-b:a", "32k", "-f", "segment", "-segment_time", "3", "-reset_timestamps", "1",
                    "-segment_format", "mp4", str(raw / "s%03d.mp4")], check=True, capture_output=True)
    src = FolderSource(tmp_path / "rec", tz="UTC", cache=DurationCache())
    for i, seg in enumerate(sorted(raw.glob("s*.mp4"))):
        target = tmp_path / "rec" / src.relpath("cam", at(3 * i))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(seg, target)
        summary = moov_summary(target)
        assert summary is not None and not summary.moov_first   # index at the end, as recorded
    cov = src.coverage("cam", at(1.5), at(10.5), now=NOW)
    ran = commands(monkeypatch)
    res = await cut_clip(cov, tmp_path / "av.mp4")
    assert len(res.segments_used) == 4
    assert len(ran) == 1 and "-moov_size" in ran[0]
    assert_moov_first(res.path)
    assert decode_errors(res.path) == ""
    kinds = sorted(s["codec_type"] for s in probe(res.path)["streams"])
    assert kinds == ["audio", "video"]
    assert abs(res.duration_s - 9.0) <= 1.0 + 0.2 and res.sha256 == sha256(res.path)


def test_no_reservation_for_unknown_segments_or_clips_that_may_reach_4_gb() -> None:
    from media.mp4info import MoovSummary

    seg = MoovSummary(moov_size=5_000, moov_first=False, file_size=1_500_000_000, samples=900, table_bytes=4_000,
                      video_configs=(b"avc1",))
    reserve = clips._moov_reserve([seg, seg])
    assert reserve is not None and reserve >= 2 * seg.table_bytes + (seg.moov_size - seg.table_bytes)
    assert clips._moov_reserve([seg, seg, seg]) is None       # 4.5 GB: 64-bit offsets, +faststart
    assert clips._moov_reserve(None) is None                    # a segment the reader did not understand
