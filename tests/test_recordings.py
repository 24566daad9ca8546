"""Recording sources against real synthetic archives (ffmpeg + ffprobe)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from media.recordings import (
    CoverageStatus,
    DurationCache,
    FolderSource,
    Interval,
    NvrSource,
    SourceError,
    redact_url,
    source_from_string,
)
from media.synth import make_archive

T0 = datetime(2026, 11, 21, 1, 30, tzinfo=UTC)   # 08:30 in Hà Nội
NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_frigate_layout_complete_window(tmp_path: Path) -> None:
    paths = make_archive(tmp_path, "cong_truoc", T0, 12, 4, layout="frigate", fps=4, size="96x64", gop=4)
    # Frigate names are UTC: 01:30 UTC.
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == [
        "2026-11-21/01/cong_truoc/30.00.mp4", "2026-11-21/01/cong_truoc/30.04.mp4",
        "2026-11-21/01/cong_truoc/30.08.mp4"]
    src = source_from_string(f"frigate:{tmp_path}", cache=DurationCache())
    cov = src.coverage("cong_truoc", at(2), at(9), now=NOW)
    assert cov.status == CoverageStatus.COMPLETE
    assert [Path(s.path).name for s in cov.segments] == ["30.00.mp4", "30.04.mp4", "30.08.mp4"]
    assert cov.segments[0].start == at(0) and cov.segments[0].end == at(4)
    assert cov.covered == (Interval(at(2), at(9)),) and cov.gaps == ()
    # Another camera in the same archive has nothing.
    assert src.coverage("cong_sau", at(2), at(9), now=NOW).status == CoverageStatus.NONE


def test_pattern_layout_uses_school_time_zone(tmp_path: Path) -> None:
    pattern = "{camera}/%Y%m%d/%H%M%S.mp4"
    paths = make_archive(tmp_path, "san_truong", T0, 8, 4, layout=pattern, fps=4, size="96x64", gop=4)
    assert paths[0].relative_to(tmp_path).as_posix() == "san_truong/20261121/083000.mp4"
    src = source_from_string(f"pattern:{tmp_path}:{pattern}", cache=DurationCache())
    assert isinstance(src, FolderSource)
    cov = src.coverage("san_truong", at(1), at(7), now=NOW)
    assert cov.status == CoverageStatus.COMPLETE
    assert len(cov.segments) == 2
    # The same window told in another time zone gives the same answer.
    cov2 = src.coverage("san_truong", at(1).astimezone(src.tz), at(7).astimezone(src.tz), now=NOW)
    assert cov2.segments == cov.segments


def test_window_spanning_two_segments_and_a_gap(tmp_path: Path) -> None:
    paths = make_archive(tmp_path, "cam", T0, 12, 4, layout="frigate", fps=4, size="96x64", gop=4)
    paths[1].unlink()                      # 4 s .. 8 s missing
    later = make_archive(tmp_path, "cam", at(14), 6, 6, layout="frigate", fps=4, size="96x64", gop=4)
    assert later[0].name == "30.14.mp4"    # a 6-second segment after a 2-second hole
    src = FolderSource(tmp_path, tz="UTC", cache=DurationCache())
    cov = src.coverage("cam", at(2), at(18), now=NOW)
    assert cov.status == CoverageStatus.PARTIAL
    assert [Path(s.path).name for s in cov.segments] == ["30.00.mp4", "30.08.mp4", "30.14.mp4"]
    assert cov.gaps == (Interval(at(4), at(8)), Interval(at(12), at(14)))
    assert cov.covered == (Interval(at(2), at(4)), Interval(at(8), at(12)), Interval(at(14), at(18)))
    assert cov.covered_seconds == pytest.approx(10)


def test_no_recordings_future_and_too_old(tmp_path: Path) -> None:
    make_archive(tmp_path, "cam", T0, 4, 4, layout="frigate", fps=4, size="96x64", gop=4)
    src = FolderSource(tmp_path, tz="UTC", retention_days=30, cache=DurationCache())
    assert src.coverage("cam", at(3600), at(3660), now=NOW).status == CoverageStatus.NONE
    future = src.coverage("cam", NOW + timedelta(minutes=5), NOW + timedelta(minutes=6), now=NOW)
    assert future.status == CoverageStatus.FUTURE and future.gaps
    old = src.coverage("cam", T0 - timedelta(days=40), T0 - timedelta(days=40, seconds=-60), now=NOW)
    assert old.status == CoverageStatus.TOO_OLD
    # A window running into "now" is partial: nothing after now can exist.
    cov = src.coverage("cam", at(0), at(10), now=at(2))
    assert cov.status == CoverageStatus.PARTIAL and cov.gaps == (Interval(at(2), at(10)),)
    with pytest.raises(ValueError):
        src.coverage("cam", datetime(2026, 11, 21, 8, 30), at(10), now=NOW)  # naive time


def test_cost_grows_with_the_window_not_the_archive(tmp_path: Path) -> None:
    # Three hours of one-minute segments (one render, hard-linked under every name).
    make_archive(tmp_path, "cam", T0, 3 * 3600, 60, layout="frigate", fps=1, size="64x48", gop=10,
                 reuse_one_segment=True)
    cache = DurationCache()
    src = FolderSource(tmp_path, tz="UTC", max_segment_s=120, cache=cache)
    cov = src.coverage("cam", at(3600 + 90), at(3600 + 270), now=NOW)
    assert cov.status == CoverageStatus.COMPLETE
    assert len(cov.segments) == 4
    assert src.dirs_listed <= 2            # only the hour folders that can hold the window
    assert cache.probes <= 5               # only the files that can overlap it were probed
    probes = cache.probes
    src.coverage("cam", at(3600 + 90), at(3600 + 270), now=NOW)
    assert cache.probes == probes          # durations are cached


def test_duration_sidecar_index(tmp_path: Path) -> None:
    make_archive(tmp_path / "rec", "cam", T0, 8, 4, layout="frigate", fps=4, size="96x64", gop=4)
    spec = f"frigate:{tmp_path / 'rec'};index_dir={tmp_path / 'idx'}"
    first = source_from_string(spec)
    assert isinstance(first, FolderSource)
    first.coverage("cam", at(0), at(8), now=NOW)
    assert first.cache.probes == 2 and list((tmp_path / "idx").glob("*.json"))
    second = source_from_string(spec)       # a new process: the sidecar answers
    assert isinstance(second, FolderSource)
    assert second.coverage("cam", at(0), at(8), now=NOW).status == CoverageStatus.COMPLETE
    assert second.cache.probes == 0


def test_corrupt_segment_is_reported(tmp_path: Path) -> None:
    paths = make_archive(tmp_path, "cam", T0, 8, 4, layout="frigate", fps=4, size="96x64", gop=4)
    paths[1].write_bytes(os.urandom(4000))
    cov = FolderSource(tmp_path, tz="UTC", cache=DurationCache()).coverage("cam", at(0), at(8), now=NOW)
    assert cov.corrupt == (str(paths[1]),)
    assert cov.status == CoverageStatus.PARTIAL and cov.gaps == (Interval(at(4), at(8)),)


def test_factory_syntax_and_errors(tmp_path: Path) -> None:
    src = source_from_string(f"pattern:{tmp_path}:%Y/%m/%d/{{camera}}-%H%M%S.mkv;tz=UTC;camera=c1;max_segment=600")
    assert isinstance(src, FolderSource)
    assert src.relpath("ignored", T0) == "2026/11/21/c1-013000.mkv"
    assert src.max_segment == timedelta(seconds=600)
    for bad in ("", "frigate:", "ftp:/x", "pattern:/x", "pattern:/x:no-fields.mp4", "frigate:/x;tz=Mars/Base",
                "nvr:ftp://host/x", "nvr:http://h/{nope}", "frigate:/x;max_segment=abc"):
        with pytest.raises(SourceError):
            source_from_string(bad)


def test_nvr_url_hikvision_format_and_redaction() -> None:
    env = {"NVR_USER": "admin", "NVR_PASSWORD": "p@ss:w/rd"}
    spec = ("nvr:rtsp://{user}:{password}@10.0.0.5:554/Streaming/tracks/101?"
            "starttime={start:%Y%m%dT%H%M%SZ}&endtime={end:%Y%m%dT%H%M%SZ};user_env=NVR_USER;password_env=NVR_PASSWORD")
    src = source_from_string(spec, env=env)
    assert isinstance(src, NvrSource)
    cov = src.coverage("cam", at(0), at(300), now=NOW)
    assert cov.status == CoverageStatus.COMPLETE and cov.kind == "nvr"
    assert cov.url == ("rtsp://admin:p%40ss%3Aw%2Frd@10.0.0.5:554/Streaming/tracks/101?"
                       "starttime=20261121T013000Z&endtime=20261121T013500Z")
    assert cov.redacted_url is not None and "p%40ss" not in cov.redacted_url and "admin" not in cov.redacted_url
    assert "p%40ss" not in repr(cov) and all("p%40ss" not in s.path for s in cov.segments)
    assert redact_url("http://u:secret@h/x?password=abc&a=1") == "http://***:***@h/x?password=***&a=1"
    # Missing credentials are a clear error, never an URL with empty fields.
    with pytest.raises(SourceError) as err:
        source_from_string(spec, env={}).coverage("cam", at(0), at(60), now=NOW)
    assert err.value.key == "missing_credentials"
    # Local-time NVRs are configurable.
    local = source_from_string("nvr:http://h/p?s={start:%Y-%m-%d %H:%M:%S};tz=Asia/Ho_Chi_Minh", env={})
    assert local.coverage("cam", at(0), at(60), now=NOW).url == "http://h/p?s=2026-11-21 08:30:00"
