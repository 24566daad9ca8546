"""The leave workflow's table (the shared ones, ``school``, ``person``, ``approval``, are in
``storage/models.py``). Importing this module registers it with the metadata; discovery imports it."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from sqlmodel import Field, SQLModel

from storage.models import UTCDateTime, utcnow


class LeaveStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


class LeaveRequest(SQLModel, table=True):
    """A teacher's request for days off, decided by the principal through the approval engine."""

    __tablename__ = "leave_request"
    id: int | None = Field(default=None, primary_key=True)
    school_id: int = Field(foreign_key="school.id", index=True)
    requester_id: int = Field(foreign_key="person.id", index=True)
    start_date: date
    end_date: date
    reason: str = Field(max_length=500)
    status: str = Field(default=LeaveStatus.PENDING, max_length=20, index=True)
    approval_id: int | None = Field(default=None, foreign_key="approval.id", index=True)
    created_at: datetime = Field(sa_type=UTCDateTime, default_factory=utcnow)
    decided_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
