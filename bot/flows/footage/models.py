"""Footage tables (seeds 000/001 Điều 2–10): the school's cameras and the requests to use their
images, with each clip's chain of custody."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from storage.models import UTCDateTime, utcnow


class Camera(SQLModel, table=True):
    """A camera of the school; never deleted (``status`` instead). ``unit`` keeps it safe (Điều 6)."""

    __tablename__ = "camera"
    __table_args__ = (UniqueConstraint("school_id", "code", name="uq_camera_school_code"),)
    id: int | None = Field(default=None, primary_key=True)
    school_id: int = Field(foreign_key="school.id", index=True)
    code: str = Field(max_length=60)
    name: str = Field(max_length=200)
    unit: str = Field(default="", max_length=120)
    source: str = Field(default="", max_length=1000)
    status: str = Field(default="active", max_length=20)
    created_at: datetime = Field(sa_type=UTCDateTime, default_factory=utcnow)
    updated_at: datetime = Field(sa_type=UTCDateTime, default_factory=utcnow)


class FootageStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXTRACTING = "extracting"
    DELIVERED = "delivered"
    FAILED = "failed"


class FootageRequest(SQLModel, table=True):
    """A request to use camera images (Điều 4.2) and, once approved, its clip's chain of custody."""

    __tablename__ = "footage_request"
    id: int | None = Field(default=None, primary_key=True)
    school_id: int = Field(foreign_key="school.id", index=True)
    requester_id: int = Field(foreign_key="person.id", index=True)
    camera_id: int = Field(foreign_key="camera.id")
    start_at: datetime = Field(sa_type=UTCDateTime)
    duration_s: int
    purpose: str = Field(max_length=30)
    purpose_text: str = Field(default="", max_length=500)
    status: str = Field(default=FootageStatus.PENDING, max_length=20, index=True)
    archive: bool = False  # cut during the 15-day review (Điều 5.2), no approval needed
    approval_id: int | None = Field(default=None, foreign_key="approval.id")
    clip_path: str | None = Field(default=None, max_length=500)
    clip_sha256: str | None = Field(default=None, max_length=64)
    clip_size: int | None = None
    clip_duration: float | None = None
    clip_reencoded: bool = False
    segments: list[Any] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    error: str = Field(default="", max_length=200)
    attempts: int = 0  # cuts started (claims), retries included
    resumes: int = 0   # automatic restarts of a cut a crash interrupted, since the last approval or retry
    #: what the cut gave up to fit the size cap (``media.clips`` warnings: audio_lowered, audio_dropped …)
    clip_warnings: list[Any] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(sa_type=UTCDateTime, default_factory=utcnow, index=True)
    extracted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    delivered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    evidence: bool = False
    evidence_by: int | None = Field(default=None, foreign_key="person.id")
    evidence_reason: str = Field(default="", max_length=500)
    deleted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
