"""Demo cameras with synthetic recordings (ffmpeg ``testsrc2`` with a burned-in clock), so a
newcomer can run the whole footage loop in the web chat: ask → approve → receive the clip."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlmodel import Session, select

from bot.flows.footage.models import Camera
from bot.flows.footage.settings import FootageSettings
from bot.settings import save
from storage.models import School

log = logging.getLogger(__name__)

DEMO_CAMERAS = (
    ("cong_chinh", "Cổng chính", "Tổ bảo vệ"),
    ("san_truong", "Sân trường", "Tổ bảo vệ"),
    ("hanh_lang_t2", "Hành lang tầng 2", "Tổ 2"),
)
#: How much of the recent past the demo archive holds.
DEMO_MINUTES = 30


def recordings_root(data_dir: Path) -> Path:
    return data_dir / "demo-recordings"


def seed_cameras(session: Session, school: School, *, data_dir: Path) -> None:
    """Register the demo cameras (idempotent), all recording into the demo Frigate folder."""
    source = f"frigate:{recordings_root(data_dir).resolve()}"
    for code, name, unit in DEMO_CAMERAS:
        cam = session.exec(select(Camera).where(Camera.school_id == school.id, Camera.code == code)).first()
        if cam is None:
            cam = Camera(school_id=school.id or 0, code=code, name=name)
        cam.name, cam.unit, cam.source, cam.status = name, unit, source, "active"
        session.add(cam)
    conf = FootageSettings.of(school)
    if "direct_extract" not in conf.model_fields_set:
        save(school, conf.updated(direct_extract=False))
    session.add(school)


def make_recordings(data_dir: Path, *, now: datetime | None = None, minutes: int = DEMO_MINUTES) -> int:
    """Render the last ``minutes`` of every demo camera that is not there yet; returns segments made."""
    from media.synth import make_archive

    now = (now or datetime.now(UTC)).replace(second=0, microsecond=0)
    start = now - timedelta(minutes=minutes)
    root = recordings_root(data_dir)
    made = 0
    for code, name, _unit in DEMO_CAMERAS:
        # Frigate layout, named in UTC: skip when the window of this camera already exists.
        probe = root / start.strftime("%Y-%m-%d/%H") / code
        if probe.exists() and any(probe.iterdir()):
            continue
        made += len(make_archive(root, code, start, minutes * 60, segment_seconds=60, fps=2,
                                 size="320x180", label=name, crf=38))
    return made
