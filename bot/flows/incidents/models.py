"""SQLModel tables of the incidents workflow (see storage/models.py for the shared ones).

An incident is numbered per school and year (``SC-2026-0001``) from :class:`IncidentCounter`
(a conditional ``UPDATE … SET last = last + 1`` so two reports at once never share a number; the
unique constraint on ``(school_id, year, seq)`` is the last line of defence). Nothing is deleted:
an incident moves ``open → acknowledged → resolved``."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from storage.models import UTCDateTime, utcnow


class IncidentStatus(StrEnum):
    OPEN = "open"                  # reported, nobody has acknowledged it yet
    ACKNOWLEDGED = "acknowledged"  # an owner took it (🆗 Tiếp nhận)
    RESOLVED = "resolved"          # ✔ Đã xử lý, with a note


class Incident(SQLModel, table=True):
    """One reported incident (seeds 000/001 Điều 7, 002 Điều 11.4.c, 13, 19.3; 004 Điều 8)."""

    __tablename__ = "incident"
    __table_args__ = (UniqueConstraint("school_id", "year", "seq", name="uq_incident_number"),)
    id: int | None = Field(default=None, primary_key=True)
    school_id: int = Field(foreign_key="school.id", index=True)
    year: int
    seq: int
    number: str = Field(max_length=20, index=True)
    reporter_id: int = Field(foreign_key="person.id", index=True)
    kind: str = Field(max_length=30)          # security, camera, it_malware, …, equipment, other
    urgent: bool = False
    place: str = Field(default="", max_length=200)
    latitude: float | None = None
    longitude: float | None = None
    camera_id: int | None = Field(default=None, foreign_key="camera.id")
    occurred_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    account: str = Field(default="", max_length=200)  # the misused account, for account misuse
    description: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    status: str = Field(default=IncidentStatus.OPEN, max_length=20, index=True)
    #: who received a card (routing, escalation, “Chuyển cấp trên”): they may act on it
    recipient_ids: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    cards_sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)  # None: held (quiet hours)
    owner_id: int | None = Field(default=None, foreign_key="person.id")
    acknowledged_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    resolved_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    resolved_by: int | None = Field(default=None, foreign_key="person.id")
    resolution_note: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    escalation_level: int = 0                 # 0 none, 1 principal, 2 all of BGH
    escalated_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    reported_up_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    reported_up_by: int | None = Field(default=None, foreign_key="person.id")
    report_up_note: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    report_path: str | None = Field(default=None, max_length=500)
    lock_ordered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    lock_ordered_by: int | None = Field(default=None, foreign_key="person.id")
    created_at: datetime = Field(sa_type=UTCDateTime, default_factory=utcnow, index=True)
    updated_at: datetime = Field(sa_type=UTCDateTime, default_factory=utcnow)


class IncidentAttachment(SQLModel, table=True):
    """A photo, video or voice note of an incident, kept in the media store (sha256 for custody)."""

    __tablename__ = "incident_attachment"
    id: int | None = Field(default=None, primary_key=True)
    incident_id: int = Field(foreign_key="incident.id", index=True)
    school_id: int = Field(foreign_key="school.id", index=True)
    kind: str = Field(max_length=20)          # photo | video | voice | audio | document | video_note
    path: str = Field(max_length=500)
    mime: str = Field(default="", max_length=100)
    size: int = 0
    sha256: str = Field(default="", max_length=64)
    file_name: str = Field(default="", max_length=200)
    added_by: int | None = Field(default=None, foreign_key="person.id")
    created_at: datetime = Field(sa_type=UTCDateTime, default_factory=utcnow)


class IncidentCounter(SQLModel, table=True):
    """The last number given per school and year."""

    __tablename__ = "incident_counter"
    school_id: int = Field(foreign_key="school.id", primary_key=True)
    year: int = Field(primary_key=True)
    last: int = 0


class Outage(SQLModel, table=True):
    """A planned interruption announced by IT to everyone (004 Điều 7.10, 10.4, 15.3)."""

    __tablename__ = "outage"
    id: int | None = Field(default=None, primary_key=True)
    school_id: int = Field(foreign_key="school.id", index=True)
    system: str = Field(max_length=200)
    starts_at: datetime = Field(sa_type=UTCDateTime)
    ends_at: datetime = Field(sa_type=UTCDateTime)
    reason: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    announced_by: int | None = Field(default=None, foreign_key="person.id")
    recipients: int = 0
    created_at: datetime = Field(sa_type=UTCDateTime, default_factory=utcnow)
