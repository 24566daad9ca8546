"""SQLModel tables of the equipment workflow (see storage/models.py for the shared ones).

Seed 003: items carry a code that never changes and are never deleted (Điều 6.3–6.5) — a disposed
or lost item keeps its record with a new ``status``; every change is kept with who reported it,
when it happened, its 10-working-day deadline (Điều 7.2) and the principal's monthly decision
(Điều 7.6). Only an approved change alters the catalogue (``quantity``, ``damaged``, ``room``).
Seed 004 Điều 8.3: repairs of IT equipment are requests confirmed by the principal."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from storage.models import UTCDateTime, utcnow


class ItemStatus(StrEnum):
    ACTIVE = "active"
    PROPOSED = "proposed"   # a new item whose "new stock" change waits for approval
    REJECTED = "rejected"   # a proposed item that was not approved (its code stays reserved)
    DISPOSED = "disposed"   # thanh lý: quantity 0, record kept
    LOST = "lost"           # mất: quantity 0, record kept


class ChangeKind(StrEnum):
    NEW = "new"             # nhập thêm / mới
    DAMAGED = "damaged"     # hỏng
    REPAIRED = "repaired"   # đã sửa
    MOVED = "moved"         # chuyển phòng
    LOST = "lost"           # mất
    DISPOSED = "disposed"   # thanh lý
    STOCKTAKE = "stocktake"  # điều chỉnh sau kiểm kê (the counted quantity)


class ChangeStatus(StrEnum):
    REPORTED = "reported"   # reported by a staff member; the equipment officer must record it
    PENDING = "pending"     # recorded; waits for the principal's monthly approval
    APPROVED = "approved"   # applied to the catalogue
    REJECTED = "rejected"


class EquipmentItem(SQLModel, table=True):
    """One line of the teaching-equipment catalogue. ``code`` is immutable; nothing is deleted."""

    __tablename__ = "equipment_item"
    __table_args__ = (UniqueConstraint("school_id", "code", name="uq_equipment_item_school_code"),)
    id: int | None = Field(default=None, primary_key=True)
    school_id: int = Field(foreign_key="school.id", index=True)
    code: str = Field(max_length=60)
    name: str = Field(max_length=200)
    category: str = Field(default="", max_length=120)
    room: str = Field(default="", max_length=120)
    quantity: int = 0
    damaged: int = 0  # of ``quantity``, how many are damaged
    status: str = Field(default=ItemStatus.ACTIVE, max_length=20, index=True)
    is_it: bool = False  # IT equipment: repairs need a request confirmed by the principal (004 Điều 8.3)
    acquired_on: date | None = None
    note: str = Field(default="", max_length=500)
    created_at: datetime = Field(sa_type=UTCDateTime, default_factory=utcnow)
    updated_at: datetime = Field(sa_type=UTCDateTime, default_factory=utcnow)


class EquipmentBatch(SQLModel, table=True):
    """The month's recorded changes put before the principal as one card (003 Điều 7.6)."""

    __tablename__ = "equipment_batch"
    __table_args__ = (UniqueConstraint("school_id", "period", name="uq_equipment_batch_period"),)
    id: int | None = Field(default=None, primary_key=True)
    school_id: int = Field(foreign_key="school.id", index=True)
    period: str = Field(max_length=20)  # "2026-11"
    status: str = Field(default="open", max_length=20, index=True)  # open | decided
    total: int = 0
    file_path: str = Field(default="", max_length=500)
    created_at: datetime = Field(sa_type=UTCDateTime, default_factory=utcnow)
    decided_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    decided_by: int | None = Field(default=None, foreign_key="person.id")
    by_delegation: bool = False


class EquipmentChange(SQLModel, table=True):
    """A change to one item: what, how many, when it happened, its deadline and its decision."""

    __tablename__ = "equipment_change"
    id: int | None = Field(default=None, primary_key=True)
    school_id: int = Field(foreign_key="school.id", index=True)
    item_id: int = Field(foreign_key="equipment_item.id", index=True)
    kind: str = Field(max_length=20)
    quantity: int = 0
    room_from: str = Field(default="", max_length=120)
    room_to: str = Field(default="", max_length=120)
    happened_on: date
    due_on: date
    late: bool = False
    status: str = Field(default=ChangeStatus.PENDING, max_length=20, index=True)
    reporter_id: int = Field(foreign_key="person.id", index=True)
    reported_at: datetime = Field(sa_type=UTCDateTime, default_factory=utcnow)
    recorder_id: int | None = Field(default=None, foreign_key="person.id")
    recorded_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    note: str = Field(default="", max_length=500)
    photo_path: str = Field(default="", max_length=500)
    photo_sha256: str = Field(default="", max_length=64)
    batch_id: int | None = Field(default=None, foreign_key="equipment_batch.id", index=True)
    decided_by: int | None = Field(default=None, foreign_key="person.id")
    decided_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    by_delegation: bool = False
    reason: str = Field(default="", max_length=1000)
    applied_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    state_before: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    state_after: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class EquipmentUse(SQLModel, table=True):
    """The use log: who borrowed which item, for which class, when, and when it came back."""

    __tablename__ = "equipment_use"
    id: int | None = Field(default=None, primary_key=True)
    school_id: int = Field(foreign_key="school.id", index=True)
    item_id: int = Field(foreign_key="equipment_item.id", index=True)
    person_id: int = Field(foreign_key="person.id", index=True)
    class_name: str = Field(default="", max_length=40)
    quantity: int = 1
    borrowed_at: datetime = Field(sa_type=UTCDateTime, default_factory=utcnow, index=True)
    returned_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    returned_by: int | None = Field(default=None, foreign_key="person.id")
    return_ok: bool | None = None
    return_note: str = Field(default="", max_length=500)


class RepairStatus(StrEnum):
    PENDING = "pending"          # waiting for the principal
    APPROVED = "approved"        # confirmed: the IT team has the task
    IN_PROGRESS = "in_progress"  # someone of the IT team took it
    RESOLVED = "resolved"
    REJECTED = "rejected"


class RepairRequest(SQLModel, table=True):
    """A request to repair, change components of, disconnect or reconfigure IT equipment (004 Điều 8.3)."""

    __tablename__ = "equipment_repair"
    id: int | None = Field(default=None, primary_key=True)
    school_id: int = Field(foreign_key="school.id", index=True)
    item_id: int = Field(foreign_key="equipment_item.id", index=True)
    requester_id: int = Field(foreign_key="person.id", index=True)
    action: str = Field(max_length=20)
    description: str = Field(default="", max_length=1000)
    photo_path: str = Field(default="", max_length=500)
    status: str = Field(default=RepairStatus.PENDING, max_length=20, index=True)
    approval_id: int | None = Field(default=None, foreign_key="approval.id")
    assignee_id: int | None = Field(default=None, foreign_key="person.id")
    acknowledged_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    resolved_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    resolved_by: int | None = Field(default=None, foreign_key="person.id")
    resolution: str = Field(default="", max_length=1000)
    created_at: datetime = Field(sa_type=UTCDateTime, default_factory=utcnow)


class EquipmentReport(SQLModel, table=True):
    """An archived report file, kept by period and school year (003 Điều 12.2)."""

    __tablename__ = "equipment_report"
    id: int | None = Field(default=None, primary_key=True)
    school_id: int = Field(foreign_key="school.id", index=True)
    period: str = Field(max_length=40)  # "2026-2027/HK1", "2026-2027/CN"
    start_on: date
    end_on: date
    path: str = Field(max_length=500)
    sha256: str = Field(default="", max_length=64)
    created_by: int | None = Field(default=None, foreign_key="person.id")
    created_at: datetime = Field(sa_type=UTCDateTime, default_factory=utcnow)
