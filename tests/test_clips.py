"""Clip extraction with the real ffmpeg on tiny synthetic recordings."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web

from media.clips import ClipError, ClipOptions, Watermark, cut_clip
from media.recordings import CoverageStatus, DurationCache, FolderSource, source_from_string
from media.synth import make_archive

T0 = datetime(2026, 11, 21, 1, 30, tzinfo=UTC)
NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
FPS, GOP = 5, 5            # one key frame per second
GOP_S = GOP / FPS


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def probe_duration(path: Path) -> float:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "json", str(path)],
                         capture_output=True, check=True).stdout
    return float(json.loads(out)["format"]["duration"])


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def archive(tmp_path: Path) -> tuple[FolderSource, list[Path]]:
    paths = make_archive(tmp_path / "rec", "cam", T0, 12, 4, layout="frigate", fps=FPS, size="160x90", gop=GOP)
    return FolderSource(tmp_path / "rec", tz="UTC", cache=DurationCache()), paths


def leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir()] if folder.exists() else []


async def test_cut_inside_one_segment(archive: tuple[FolderSource, list[Path]], tmp_path: Path) -> None:
    src, paths = archive
    cov = src.coverage("cam", at(4.5), at(7.5), now=NOW)
    assert len(cov.segments) == 1
    res = await cut_clip(cov, tmp_path / "out" / "one.mp4")
    assert res.path == tmp_path / "out" / "one.mp4" and res.path.exists()
    assert not res.reencoded and res.warnings == ()
    assert res.segments_used == (str(paths[1]),)
    assert abs(probe_duration(res.path) - 3.0) <= GOP_S
    assert res.sha256 == sha256(res.path) and res.size == res.path.stat().st_size
    assert leftovers(tmp_path / "out") == [res.path]          # no temp files left behind


async def test_cut_across_two_segments_with_progress(archive: tuple[FolderSource, list[Path]],
                                                     tmp_path: Path) -> None:
    src, paths = archive
    cov = src.coverage("cam", at(2.5), at(7), now=NOW)
    seen: list[tuple[str, float]] = []
    res = await cut_clip(cov, tmp_path / "two.mp4", progress=lambda phase, f: seen.append((phase, f)))
    assert res.segments_used == (str(paths[0]), str(paths[1]))
    assert abs(probe_duration(res.path) - 4.5) <= GOP_S
    assert abs(res.duration_s - 4.5) <= GOP_S
    assert res.sha256 == sha256(res.path) and not res.reencoded
    assert seen and seen[-1] == ("cut", 1.0)


async def test_partial_coverage_is_refused_unless_allowed(archive: tuple[FolderSource, list[Path]],
                                                          tmp_path: Path) -> None:
    src, paths = archive
    paths[1].unlink()
    cov = src.coverage("cam", at(2), at(10), now=NOW)
    assert cov.status == CoverageStatus.PARTIAL
    with pytest.raises(ClipError) as err:
        await cut_clip(cov, tmp_path / "p.mp4")
    assert err.value.key == "partial_coverage" and not (tmp_path / "p.mp4").exists()
    res = await cut_clip(cov, tmp_path / "p.mp4", ClipOptions(allow_partial=True))
    assert "partial_coverage" in res.warnings and "gaps_removed" in res.warnings
    assert abs(res.duration_s - 4.0) <= GOP_S                 # 2 s + 2 s actually recorded


async def test_no_recordings_and_future_windows(archive: tuple[FolderSource, list[Path]], tmp_path: Path) -> None:
    src, _ = archive
    for cov, key in ((src.coverage("cam", at(600), at(660), now=NOW), "no_recordings"),
                     (src.coverage("cam", NOW + timedelta(hours=1), NOW + timedelta(hours=2), now=NOW), "future")):
        with pytest.raises(ClipError) as err:
            await cut_clip(cov, tmp_path / "x.mp4")
        assert err.value.key == key
    assert not (tmp_path / "x.mp4").exists()


async def test_reencode_to_fit_a_tiny_cap(tmp_path: Path) -> None:
    paths = make_archive(tmp_path / "rec", "cam", T0, 8, 4, layout="frigate", fps=10, size="480x270", gop=10)
    cov = FolderSource(tmp_path / "rec", tz="UTC", cache=DurationCache()).coverage("cam", at(0), at(8), now=NOW)
    copied = sum(p.stat().st_size for p in paths)
    cap = 300_000
    assert copied > cap * 1.5                                  # the stream copy cannot be delivered
    res = await cut_clip(cov, tmp_path / "fit.mp4", ClipOptions(size_cap=cap))
    assert res.reencoded and "reencoded_for_size" in res.warnings
    assert 0.85 * cap <= res.size <= cap
    assert res.size == res.path.stat().st_size and res.sha256 == sha256(res.path)
    assert abs(probe_duration(res.path) - 8.0) <= 1.0


async def test_watermark_with_vietnamese_and_hostile_text(archive: tuple[FolderSource, list[Path]],
                                                          tmp_path: Path) -> None:
    src, _ = archive
    cov = src.coverage("cam", at(1), at(5), now=NOW)
    hostile = "Nguyễn Thị Hằng ': \\ % { } \" ' ; [x] %{pts} $(rm -rf /) -y /etc/passwd\n đơn số"
    mark = Watermark(requester=hostile, request_no="42", at=NOW)
    res = await cut_clip(cov, tmp_path / "wm.mp4", ClipOptions(watermark=mark))
    assert res.reencoded and "watermarked" in res.warnings and "font_missing" not in res.warnings
    assert abs(probe_duration(res.path) - 4.0) <= GOP_S
    plain = await cut_clip(cov, tmp_path / "plain.mp4")
    assert plain.sha256 != res.sha256
    # A raw string works too, and text-expansion syntax is not expanded (it would fail on bad syntax).
    res2 = await cut_clip(cov, tmp_path / "wm2.mp4", ClipOptions(watermark="%{eif:1/0:d} %{localtime:%"))
    assert res2.reencoded


async def test_corrupt_segment_gives_an_error_and_no_file(archive: tuple[FolderSource, list[Path]],
                                                          tmp_path: Path) -> None:
    src, paths = archive
    cov = src.coverage("cam", at(2), at(10), now=NOW)         # probed while still good
    data = bytearray(paths[1].read_bytes())
    data[:] = b"\x00" * len(data)                            # then destroyed on disk
    paths[1].write_bytes(bytes(data))
    out = tmp_path / "out"
    with pytest.raises(ClipError) as err:
        await cut_clip(cov, out / "bad.mp4")
    assert err.value.key == "segment_corrupt"
    assert leftovers(out) == []
    # Found corrupt when listing: refused before ffmpeg runs.
    cov2 = FolderSource(paths[0].parents[3], tz="UTC", cache=DurationCache()).coverage(
        "cam", at(2), at(10), now=NOW)
    assert cov2.corrupt
    with pytest.raises(ClipError) as err2:
        await cut_clip(cov2, out / "bad.mp4")
    assert err2.value.key == "segment_corrupt" and leftovers(out) == []


async def test_missing_segment(archive: tuple[FolderSource, list[Path]], tmp_path: Path) -> None:
    src, paths = archive
    cov = src.coverage("cam", at(2), at(10), now=NOW)
    paths[2].unlink()
    with pytest.raises(ClipError) as err:
        await cut_clip(cov, tmp_path / "m.mp4")
    assert err.value.key == "segment_missing" and not (tmp_path / "m.mp4").exists()


# -- NVR over HTTP -------------------------------------------------------------------------------

async def _nvr_server(recording: Path, hits: list[dict[str, str]]) -> tuple[web.AppRunner, int]:
    expected_auth = "Basic " + base64.b64encode(b"admin:s3cr3t&x").decode()

    async def playback(request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != expected_auth:
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="nvr"'})
        hits.append(dict(request.query))
        start = datetime.strptime(request.query["starttime"], "%Y%m%dT%H%M%SZ")
        end = datetime.strptime(request.query["endtime"], "%Y%m%dT%H%M%SZ")
        if end <= start:
            return web.Response(status=400)
        return web.FileResponse(recording, headers={"Content-Type": "video/mp4"})

    app = web.Application()
    app.router.add_get("/ISAPI/playback/101", playback)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, port


async def test_nvr_source_over_http(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The "NVR" holds a 6-second recording of exactly the requested window.
    rec = make_archive(tmp_path / "nvr", "cam", at(60), 6, 6, layout="frigate", fps=FPS, size="160x90", gop=GOP)[0]
    hits: list[dict[str, str]] = []
    runner, port = await _nvr_server(rec, hits)
    try:
        monkeypatch.setenv("TEST_NVR_USER", "admin")
        monkeypatch.setenv("TEST_NVR_PASS", "s3cr3t&x")
        src = source_from_string(
            f"nvr:http://{{user}}:{{password}}@127.0.0.1:{port}/ISAPI/playback/101?"
            "starttime={start:%Y%m%dT%H%M%SZ}&endtime={end:%Y%m%dT%H%M%SZ}"
            ";user_env=TEST_NVR_USER;password_env=TEST_NVR_PASS")
        cov = src.coverage("cam", at(60), at(66), now=NOW)
        seen: list[float] = []
        res = await cut_clip(cov, tmp_path / "nvr.mp4", progress=lambda _p, f: seen.append(f))
        assert hits and hits[-1] == {"starttime": "20261121T013100Z", "endtime": "20261121T013106Z"}
        assert abs(probe_duration(res.path) - 6.0) <= GOP_S
        assert res.sha256 == sha256(res.path) and seen and seen[-1] == 1.0
        assert all("s3cr3t" not in s for s in res.segments_used)
    finally:
        await runner.cleanup()
    # The NVR is gone: a clear error whose detail holds no password.
    with pytest.raises(ClipError) as err:
        await cut_clip(cov, tmp_path / "gone.mp4", ClipOptions(io_timeout_s=3, timeout_s=20))
    assert err.value.key == "source_unreachable"
    assert "s3cr3t" not in str(err.value) and not (tmp_path / "gone.mp4").exists()


async def test_in_process_mp4_reader_agrees_with_ffprobe(archive: tuple[FolderSource, list[Path]],
                                                        tmp_path: Path) -> None:
    from media.clips import _probe
    from media.mp4info import mp4_info

    src, paths = archive
    res = await cut_clip(src.coverage("cam", at(2.5), at(9), now=NOW), tmp_path / "c.mp4")
    for path in (res.path, paths[0]):
        mine, theirs = mp4_info(path), await _probe(path)
        assert mine is not None and theirs is not None
        assert abs(mine.duration - theirs.duration) < 0.05
        assert (mine.width, mine.height, mine.has_video) == (theirs.width, theirs.height, True)
        assert abs(mine.fps - theirs.fps) < 0.01 and mine.gop == pytest.approx(theirs.gop, abs=0.01)
    # what it does not understand, it says so (the caller then asks ffprobe)
    (tmp_path / "junk.mp4").write_bytes(b"\x00\x00\x00\x08junk" * 10)
    (tmp_path / "cut.mp4").write_bytes(res.path.read_bytes()[:200])
    assert mp4_info(tmp_path / "junk.mp4") is None and mp4_info(tmp_path / "cut.mp4") is None
    assert mp4_info(tmp_path / "missing.mp4") is None
