"""Clips that fit the delivery cap, and ffmpeg failures told apart — real ffmpeg on tiny generated
recordings with sound (``media.synth.make_archive(audio_bitrate=...)``).

To fit, the sound gives way before the picture (64 kbit/s → 32 kbit/s mono → none); a window that
cannot fit even at the lowest acceptable quality is known beforehand from the recordings' files
(:func:`media.clips.estimate_size`), and the cut agrees with the estimate. A killed ffmpeg and a full
disk each raise their own error key."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from media.clips import (
    ERROR_KEYS,
    ClipError,
    ClipOptions,
    cut_clip,
    estimate_size,
    lowest_quality_seconds,
    run_ffmpeg,
)
from media.recordings import Coverage, DurationCache, FolderSource
from media.synth import make_archive

T0 = datetime(2026, 11, 21, 1, 30, tzinfo=UTC)
NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
SECONDS = 16


@pytest.fixture(scope="module")
def with_sound(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """16 s of a camera with a microphone: 320x180 at 5 fps, AAC at 96 kbit/s, 4 s segments."""
    root = tmp_path_factory.mktemp("sound")
    paths = make_archive(root, "cam", T0, SECONDS, 4, fps=5, size="320x180", gop=5, audio_bitrate=96_000)
    return root, paths


def coverage(root: Path) -> Coverage:
    return FolderSource(root, tz="UTC", cache=DurationCache()).coverage(
        "cam", T0, T0 + timedelta(seconds=SECONDS), now=NOW)


def audio_streams(path: Path) -> list[dict[str, Any]]:
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "a", "-show_entries",
                          "stream=codec_name,channels,bit_rate", "-of", "json", str(path)],
                         capture_output=True, check=True).stdout
    return list(json.loads(out)["streams"])


def video_seconds(path: Path) -> float:
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=duration",
                          "-of", "csv=p=0", str(path)], capture_output=True, check=True, text=True).stdout
    return float(out.strip())


def test_the_estimate_is_the_recordings_bitrate_times_the_window(with_sound: tuple[Path, list[Path]]) -> None:
    root, paths = with_sound
    cov = coverage(root)
    est = estimate_size(cov, ClipOptions(size_cap=50_000_000))
    assert est is not None and est.fits
    recorded = sum(p.stat().st_size for p in paths)
    assert est.copy_bytes == pytest.approx(recorded, rel=0.05)
    assert est.bitrate == pytest.approx(recorded * 8 / SECONDS, rel=0.05)
    # Under a small cap the stream copy no longer fits; the lowest acceptable re-encode decides.
    small = ClipOptions(size_cap=40_000)
    tight = estimate_size(cov, small)
    assert tight is not None and not tight.fits
    assert tight.max_seconds == pytest.approx(lowest_quality_seconds(small)) and tight.max_seconds < SECONDS


@pytest.mark.parametrize(("cap", "audio", "warning"), [
    (150_000, {"channels": 1}, "audio_lowered"),     # 64 kbit/s would leave the picture less than the sound
    (80_000, None, "audio_dropped"),                 # even 32 kbit/s mono would: no sound at all
])
async def test_the_sound_gives_way_before_the_clip_is_refused(with_sound: tuple[Path, list[Path]], tmp_path: Path,
                                                            cap: int, audio: dict[str, int] | None,
                                                            warning: str) -> None:
    root, paths = with_sound
    assert sum(p.stat().st_size for p in paths) > 4 * cap          # the copy cannot be delivered as it is
    cov = coverage(root)
    options = ClipOptions(size_cap=cap)
    est = estimate_size(cov, options)
    assert est is not None and est.fits                             # the estimate promised it fits ...
    res = await cut_clip(cov, tmp_path / "fit.mp4", options)        # ... and the cut keeps the promise
    assert res.reencoded and warning in res.warnings and "reencoded_for_size" in res.warnings
    assert res.size <= cap and res.size == res.path.stat().st_size
    assert abs(video_seconds(res.path) - SECONDS) <= 1.0
    found = audio_streams(res.path)
    if audio is None:
        assert found == []
    else:
        assert len(found) == 1 and found[0]["channels"] == audio["channels"]
        assert int(found[0]["bit_rate"]) <= 40_000


async def test_a_generous_cap_keeps_the_sound_as_recorded(with_sound: tuple[Path, list[Path]], tmp_path: Path) -> None:
    root, _ = with_sound
    res = await cut_clip(coverage(root), tmp_path / "copy.mp4", ClipOptions(size_cap=10_000_000))
    assert not res.reencoded and res.warnings == ()
    assert [s["channels"] for s in audio_streams(res.path)] == [1]   # the sine tone is mono, copied


async def test_a_window_that_cannot_fit_is_refused_as_too_big_as_estimated(with_sound: tuple[Path, list[Path]],
                                                                           tmp_path: Path) -> None:
    root, _ = with_sound
    cov = coverage(root)
    options = ClipOptions(size_cap=40_000)
    est = estimate_size(cov, options)
    assert est is not None and not est.fits
    with pytest.raises(ClipError) as err:
        await cut_clip(cov, tmp_path / "big.mp4", options)
    assert err.value.key == "too_big"
    assert not (tmp_path / "big.mp4").exists() and list(tmp_path.iterdir()) == []


def _children(name: str) -> list[int]:
    """Pids of this process's live children called ``name``."""
    me, out = os.getpid(), []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rfind(")") + 2:].split()
            if stat[stat.find("(") + 1:stat.rfind(")")] == name and int(fields[1]) == me and fields[0] != "Z":
                out.append(int(entry.name))
    return out


async def test_a_killed_ffmpeg_is_told_apart_from_a_failing_one(tmp_path: Path) -> None:
    args = ["ffmpeg", "-f", "lavfi", "-re", "-i", "testsrc2=size=160x90:rate=5", "-t", "120", "-f", "null", "-"]
    started = asyncio.Event()
    task = asyncio.create_task(run_ffmpeg(args, duration_s=120, limit_s=60, progress=lambda _p, _f: started.set()))
    await asyncio.wait_for(started.wait(), 30)
    victims = _children("ffmpeg")
    assert len(victims) == 1
    os.kill(victims[0], signal.SIGKILL)                     # as the out-of-memory killer does
    with pytest.raises(ClipError) as err:
        await task
    assert err.value.key == "ffmpeg_killed" and "SIGKILL" in err.value.detail
    # a plain ffmpeg error stays "ffmpeg_failed"
    with pytest.raises(ClipError) as err2:
        await run_ffmpeg(["ffmpeg", "-i", str(tmp_path / "nothing.mp4"), "-f", "null", "-"], duration_s=1, limit_s=30)
    assert err2.value.key == "ffmpeg_failed"
    # and so does an ffmpeg that is not installed (not an unexpected error of the assistant)
    with pytest.raises(ClipError) as err3:
        await run_ffmpeg([str(tmp_path / "no-ffmpeg"), "-version"], duration_s=1, limit_s=30)
    assert err3.value.key == "ffmpeg_failed"


async def test_a_full_disk_is_reported_as_a_full_disk() -> None:
    # /dev/full answers every write with ENOSPC, as a full disk does.
    args = ["ffmpeg", "-y", "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=5", "-t", "5", "-c:v", "libx264",
            "-preset", "ultrafast", "-f", "mpegts", "/dev/full"]
    with pytest.raises(ClipError) as err:
        await run_ffmpeg(args, duration_s=5, limit_s=60)
    assert err.value.key == "disk_full"


def test_every_error_key_is_documented() -> None:
    import media.clips

    doc = media.clips.__doc__ or ""
    assert all(f"``{key}``" in doc for key in ERROR_KEYS)
