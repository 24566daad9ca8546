"""The camera source check ("Kiểm tra" on the console, ``main.py cameras check``) against real
synthetic recordings (ffmpeg + ffprobe), a missing folder, and NVR sources on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import main
from bot.config import load_settings
from bot.flows.footage.check import CameraRef, Gap, check_camera, check_camera_async, describe
from bot.flows.footage.models import Camera
from bot.i18n import Translator
from media.synth import make_archive
from tests.helpers import make_school

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)     # 09:00 in Hà Nội
HOUR_AGO = NOW - timedelta(hours=1)
TR = Translator("vi")


@dataclass
class SchoolSettings:
    timezone: str = "Asia/Ho_Chi_Minh"
    recording_retention_days: int = 30


SETTINGS = SchoolSettings()


def at(minutes: float) -> datetime:
    return HOUR_AGO + timedelta(minutes=minutes)


def hour_of_recordings(root: Path, camera: str = "cong", start: datetime = HOUR_AGO) -> list[Path]:
    """Six ten-minute Frigate segments covering the hour before NOW."""
    return make_archive(root, camera, start, 3600, 600, layout="frigate", fps=1, size="64x48", gop=10)


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def listening_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(4)
        yield int(s.getsockname()[1])


def nvr(port: int) -> str:
    return (f"nvr:rtsp://{{user}}:{{password}}@127.0.0.1:{port}/Streaming/tracks/101"
            f"?starttime={{start:%Y%m%dT%H%M%SZ}}&endtime={{end:%Y%m%dT%H%M%SZ}};user_env=NVR_USER;password_env=NVR_PASSWORD")


def test_a_complete_hour_is_reported_as_complete(tmp_path: Path) -> None:
    hour_of_recordings(tmp_path)
    report = check_camera(CameraRef("cong", "Cổng chính", f"frigate:{tmp_path}"), SETTINGS, NOW)
    assert report.ok and report.content_checked and report.kind == "folder"
    assert report.segments == 6 and report.first_start == HOUR_AGO and report.last_end == NOW
    assert report.recorded_seconds == pytest.approx(3600) and report.gaps == ()
    text = describe(report, TR)
    assert "Camera cong — Cổng chính: từ 08:00 đến 09:00 ngày 23/11/2026" in text
    assert "6 tệp bản ghi, từ 08:00:00 đến 09:00:00; đã ghi 1 giờ trên 1 giờ." in text
    assert "✅ Bản ghi đầy đủ trong giờ này." in text


def test_a_missing_segment_and_a_damaged_file_show_as_gaps(tmp_path: Path) -> None:
    paths = hour_of_recordings(tmp_path)
    paths[2].unlink()                                   # 08:20–08:30 was never recorded
    paths[5].write_bytes(b"\x00not a video" * 64)        # 08:50–09:00 is unreadable
    report = check_camera(CameraRef("cong", "Cổng chính", f"frigate:{tmp_path}"), SETTINGS, NOW)
    assert report.gaps[-1] == Gap(at(50), at(60)) and report.writing is None  # not "being written"
    paths[4].write_bytes(paths[4].read_bytes()[:300])   # 08:40–08:50 lost its tail (ffprobe still reads it)
    report = check_camera(CameraRef("cong", "Cổng chính", f"frigate:{tmp_path}"), SETTINGS, NOW)
    assert not report.ok and report.keys == ("segment_corrupt",)
    assert report.segments == 3 and report.recorded_seconds == pytest.approx(1800)
    assert report.gaps == (Gap(at(20), at(30)), Gap(at(40), at(60)))
    assert report.damaged == ("2026-11-23/01/cong/40.00.mp4", "2026-11-23/01/cong/50.00.mp4")
    text = describe(report, TR)
    assert "3 tệp bản ghi, từ 08:00:00 đến 08:40:00; đã ghi 30 phút trên 1 giờ." in text
    assert "• 08:20:00 – 08:30:00 (10 phút)" in text and "• 08:40:00 – 09:00:00 (20 phút)" in text
    assert "• 2026-11-23/01/cong/40.00.mp4" in text and "• 2026-11-23/01/cong/50.00.mp4" in text
    assert "⚠️ Có tệp bản ghi không đọc được (bị hỏng hoặc ghi dở)." in text
    assert "✅" not in text


def test_the_file_being_written_at_the_end_of_the_hour_is_not_a_gap(tmp_path: Path) -> None:
    hour_of_recordings(tmp_path, start=HOUR_AGO - timedelta(seconds=30))   # the last file ended at 08:59:30
    report = check_camera(CameraRef("cong", "Cổng chính", f"frigate:{tmp_path}"), SETTINGS, NOW)
    assert report.ok and report.gaps == ()
    assert report.writing == Gap(NOW - timedelta(seconds=30), NOW)
    text = describe(report, TR)
    assert "Từ 08:59:30 tệp hiện tại vẫn đang được ghi (30 giây)." in text
    assert "✅ Bản ghi đầy đủ trong giờ này." in text


def test_a_camera_with_nothing_in_the_hour_says_so(tmp_path: Path) -> None:
    hour_of_recordings(tmp_path, camera="cong_sau")     # another camera records; this one does not
    report = check_camera(CameraRef("cong", "Cổng chính", f"frigate:{tmp_path}"), SETTINGS, NOW)
    assert report.keys == ("no_recordings",) and report.segments == 0
    assert "⚠️ Không có bản ghi nào trong giờ này." in describe(report, TR)


def test_a_missing_recordings_folder_is_named(tmp_path: Path) -> None:
    gone = tmp_path / "frigate" / "recordings"
    report = check_camera(CameraRef("cong", "Cổng chính", f"pattern:{gone}:{{camera}}/%Y%m%d/%H%M%S.mp4"),
                          SETTINGS, NOW)
    assert report.keys == ("folder_missing",) and not report.content_checked
    assert f"⚠️ Thư mục bản ghi không tồn tại: {gone}" in describe(report, TR)


def test_a_camera_without_source_or_with_a_wrong_one(tmp_path: Path) -> None:
    assert check_camera(CameraRef("x", "X", ""), SETTINGS, NOW).keys == ("no_source",)
    report = check_camera(CameraRef("x", "X", "ftp://cam/rec"), SETTINGS, NOW)
    assert report.keys == ("bad_source",)
    assert "frigate:, pattern: hoặc nvr:" in describe(report, TR)


def test_an_unreachable_recorder_is_reported_without_pulling_video(closed_port: int) -> None:
    env = {"NVR_USER": "admin", "NVR_PASSWORD": "s3cr3t-pw"}
    report = check_camera(CameraRef("san", "Sân trường", nvr(closed_port)), SETTINGS, NOW, env=env,
                          connect_timeout=1)
    assert report.kind == "nvr" and not report.content_checked and report.credentials is True
    assert report.reachable is False and report.keys == ("source_unreachable",)
    assert report.host == f"127.0.0.1:{closed_port}"
    text = describe(report, TR)
    assert "không kiểm tra được nội dung bản ghi với loại nguồn này" in text
    assert f"⚠️ Đầu ghi 127.0.0.1:{closed_port} không phản hồi." in text
    assert "s3cr3t-pw" not in text + repr(report) and "admin" not in text + repr(report)


def test_missing_recorder_credentials_are_named_even_when_it_answers(listening_port: int) -> None:
    report = check_camera(CameraRef("san", "Sân trường", nvr(listening_port)), SETTINGS, NOW,
                          env={"NVR_USER": "admin"})
    assert report.reachable is True and report.credentials is False
    assert report.keys == ("missing_credentials",)
    text = describe(report, TR)
    assert f"Đầu ghi 127.0.0.1:{listening_port} nhận kết nối." in text
    assert "⚠️ Chưa đặt tên đăng nhập hoặc mật khẩu của đầu ghi (biến môi trường NVR_PASSWORD)." in text


async def test_from_async_code_the_check_runs_off_the_event_loop(tmp_path: Path) -> None:
    hour_of_recordings(tmp_path)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    report = await check_camera_async(CameraRef("cong", "Cổng chính", f"frigate:{tmp_path}"), SETTINGS, NOW)
    task.cancel()
    assert report.ok and report.segments == 6
    assert ticks > 10  # the loop kept running while ffprobe read the six files


def test_cli_checks_one_camera_or_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str], closed_port: int) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("NVR_USER", "admin")
    monkeypatch.delenv("NVR_PASSWORD", raising=False)
    now = datetime.now(UTC)
    rec = tmp_path / "rec"
    # A little more than the hour before now (the check starts a moment later).
    make_archive(rec, "cong", now - timedelta(seconds=3660), 3720, 620, layout="frigate", fps=1, size="64x48",
                 gop=10)
    db = main.open_db(load_settings())

    def seed(s):  # type: ignore[no-untyped-def]
        school = make_school(s)
        s.add(Camera(school_id=school.id or 0, code="cong", name="Cổng chính", source=f"frigate:{rec}"))
        s.add(Camera(school_id=school.id or 0, code="san", name="Sân trường", source=nvr(closed_port)))
        s.add(Camera(school_id=school.id or 0, code="cu", name="Camera cũ", source="", status="retired"))

    db.run_sync(seed)
    db.dispose()

    assert main.main(["cameras", "check", "cong"]) == 0
    out = capsys.readouterr().out
    assert "Camera cong — Cổng chính" in out and "✅ Bản ghi đầy đủ trong giờ này." in out
    assert "Sân trường" not in out

    assert main.main(["cameras", "check", "--school", "TH Ngọc Thụy"]) == 1
    out = capsys.readouterr().out
    assert "Camera cong — Cổng chính" in out and "Camera san — Sân trường" in out
    assert "biến môi trường NVR_PASSWORD" in out and "không phản hồi" in out
    assert "Camera cũ" not in out       # a retired camera is not checked unless named

    assert main.main(["cameras", "check", "khong_co"]) == 2
    assert "Không có camera mã khong_co." in capsys.readouterr().err


def test_the_cameras_to_check_are_the_schools_cameras_in_use(db) -> None:  # type: ignore[no-untyped-def]
    from bot.flows.footage.check import cameras_to_check

    def seed(s):  # type: ignore[no-untyped-def]
        ours, other = make_school(s), make_school(s, "Trường THCS Khác", short_name="THCS Khác")
        s.add(Camera(school_id=ours.id or 0, code="cong", name="Cổng chính"))
        s.add(Camera(school_id=ours.id or 0, code="cu", name="Camera cũ", status="retired"))
        s.add(Camera(school_id=other.id or 0, code="cong", name="Cổng trường khác"))
        return ours.id or 0

    school_id = db.run_sync(seed)
    names = db.run_sync(lambda s: [c.name for c in cameras_to_check(s, school_id=school_id)])
    assert names == ["Cổng chính"]
    assert db.run_sync(lambda s: [c.name for c in cameras_to_check(s, school_id=school_id, code="cu")]) == ["Camera cũ"]
    assert db.run_sync(lambda s: cameras_to_check(s, school_id=school_id, code="khong_co")) == []
