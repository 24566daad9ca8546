"""SQLModel tables. Every row that belongs to a school carries ``school_id``.

People, cameras and equipment are never deleted: their ``status`` changes instead (seed 003
Điều 6.3–6.5). Timestamps are stored in UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from datetime import date as date_type
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Index, Text, UniqueConstraint
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class PersonStatus(StrEnum):
    ACTIVE = "active"
    TRANSFERRED = "transferred"
    RETIRED = "retired"
    LEFT = "left"


class School(SQLModel, table=True):
    __tablename__ = "school"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True, max_length=200)
    short_name: str = Field(default="", max_length=60)
    email_suffix: str = Field(default="", max_length=120)
    settings: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(sa_type=UTCDateTime, default_factory=utcnow)


class Person(SQLModel, table=True):
    __tablename__ = "person"
    __table_args__ = (UniqueConstraint("school_id", "phone", name="uq_person_school_phone"),)
    id: int | None = Field(default=None, primary_key=True)
    school_id: int = Field(foreign_key="school.id", index=True)
    full_name: str = Field(max_length=200)
    phone: str | None = Field(default=None, max_length=20, index=True)
    roles: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    unit: str = Field(default="", max_length=120)
    email: str | None = Field(default=None, max_length=254)
    status: str = Field(default=PersonStatus.ACTIVE, max_length=20, index=True)
    status_changed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    locale: str = Field(default="vi", max_length=5)
    preferred_channel: str | None = Field(default=None, max_length=20)
    created_at: datetime = Field(sa_type=UTCDateTime, default_factory=utcnow)
    updated_at: datetime = Field(sa_type=UTCDateTime, default_factory=utcnow)

    @property
    def is_active(self) -> bool:
        return self.status == PersonStatus.ACTIVE

    def has_role(self, *roles: str) -> bool:
        return any(r in self.roles for r in roles)


class ChannelIdentity(SQLModel, table=True):
    """A person's account on one channel (Telegram user id, Zalo id, web chat)."""

    __tablename__ = "channel_identity"
    __table_args__ = (UniqueConstraint("channel", "external_id", name="uq_identity_channel_ext"),)
    id: int | None = Field(default=None, primary_key=True)
    person_id: int = Field(foreign_key="person.id", index=True)
    channel: str = Field(max_length=20)
    external_id: str = Field(max_length=100)
    chat_id: str = Field(max_length=100)
    display_name: str = Field(default="", max_length=200)
    active: bool = Field(default=True)
    linked_at: datetime = Field(sa_type=UTCDateTime, default_factory=utcnow)
    last_seen_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class InviteCode(SQLModel, table=True):
    """Single-use, expiring code that links a channel account to a person. Only its hash is kept."""

    __tablename__ = "invite_code"
    id: int | None = Field(default=None, primary_key=True)
    code_hash: str = Field(max_length=64, unique=True)
    person_id: int = Field(foreign_key="person.id", index=True)
    created_at: datetime = Field(sa_type=UTCDateTime, default_factory=utcnow)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    used_by: str | None = Field(default=None, max_length=140)


class Conversation(SQLModel, table=True):
    """The state of one chat's active workflow; lives in the database so restarts resume it."""

    __tablename__ = "conversation"
    __table_args__ = (UniqueConstraint("channel", "chat_id", name="uq_conversation_chat"),)
    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=20)
    chat_id: str = Field(max_length=100)
    person_id: int | None = Field(default=None, foreign_key="person.id", index=True)
    flow: str | None = Field(default=None, max_length=40)
    state: str | None = Field(default=None, max_length=60)
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    updated_at: datetime = Field(sa_type=UTCDateTime, default_factory=utcnow)
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class ProcessedUpdate(SQLModel, table=True):
    """One row per platform update handled, so a redelivered update is processed once."""

    __tablename__ = "processed_update"
    __table_args__ = (UniqueConstraint("channel", "update_key", name="uq_processed_update"),)
    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=20)
    update_key: str = Field(max_length=120)
    processed_at: datetime = Field(sa_type=UTCDateTime, default_factory=utcnow, index=True)


class SentMessage(SQLModel, table=True):
    """Where a tracked message went (approval cards to edit later, secrets to delete later)."""

    __tablename__ = "sent_message"
    __table_args__ = (Index("ix_sent_message_ref", "ref_kind", "ref_id"),)
    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=20)
    chat_id: str = Field(max_length=100)
    message_id: str = Field(max_length=100)
    person_id: int | None = Field(default=None, foreign_key="person.id")
    ref_kind: str = Field(max_length=40)
    ref_id: str = Field(max_length=60)
    sent_at: datetime = Field(sa_type=UTCDateTime, default_factory=utcnow)
    delete_at: datetime | None = Field(sa_type=UTCDateTime, default=None, index=True)
    deleted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class OutboxMessage(SQLModel, table=True):
    """A message an event or a scheduled unit decided to send, written in the same transaction as
    the decision and deleted once it went out. Rows left behind by a crash are sent at the next
    start (or, on a shared PostgreSQL, once they are ``OUTBOX_STALE`` old), so a committed decision
    never loses its messages."""

    __tablename__ = "outbox"
    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=20)
    chat_id: str = Field(max_length=120)
    person_id: int | None = Field(default=None)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    claimed_at: datetime = Field(sa_type=UTCDateTime, default_factory=utcnow, index=True)
    attempts: int = 0


class AuditEvent(SQLModel, table=True):
    """Append-only; each row's ``hash`` covers its content and the previous row's hash."""

    __tablename__ = "audit_event"
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(sa_type=UTCDateTime, default_factory=utcnow, index=True)
    school_id: int | None = Field(default=None, index=True)
    actor_id: int | None = Field(default=None)
    channel: str = Field(default="", max_length=20)
    action: str = Field(max_length=60, index=True)
    subject: str = Field(default="", max_length=120)
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64, unique=True)


class KeyValue(SQLModel, table=True):
    """Small pieces of process state that must survive restarts (e.g. the bot's username)."""

    __tablename__ = "key_value"
    key: str = Field(primary_key=True, max_length=120)
    value: str = Field(default="", sa_column=Column(Text, nullable=False))
    updated_at: datetime = Field(sa_type=UTCDateTime, default_factory=utcnow)


# ---------------------------------------------------------------------------------------------
# Approvals (bot/engine/approvals.py)
# ---------------------------------------------------------------------------------------------
class ApprovalStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


class StageStatus(StrEnum):
    WAITING = "waiting"  # a later stage, not started yet
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    SKIPPED = "skipped"


class Approval(SQLModel, table=True):
    """A decision some workflow needs. ``title``/``fields`` hold catalogue msgids and display values so
    every approver sees the card in their own language."""

    __tablename__ = "approval"
    id: int | None = Field(default=None, primary_key=True)
    school_id: int = Field(foreign_key="school.id", index=True)
    kind: str = Field(max_length=40, index=True)
    subject: str = Field(default="", max_length=120, index=True)
    requester_id: int | None = Field(default=None, foreign_key="person.id")
    title: str = Field(max_length=200)
    fields: list[Any] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    status: str = Field(default=ApprovalStatus.PENDING, max_length=20, index=True)
    current_stage: int = 0
    created_at: datetime = Field(sa_type=UTCDateTime, default_factory=utcnow, index=True)
    decided_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    decided_by: int | None = Field(default=None, foreign_key="person.id")
    note: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))


class ApprovalStage(SQLModel, table=True):
    """One ordered step. Decided by ``person_id`` if set, else by anyone active holding ``role``
    (the principal's stage goes to the delegate when a delegation covers the creation date)."""

    __tablename__ = "approval_stage"
    __table_args__ = (UniqueConstraint("approval_id", "idx", name="uq_stage_idx"),)
    id: int | None = Field(default=None, primary_key=True)
    approval_id: int = Field(foreign_key="approval.id", index=True)
    idx: int = 0
    role: str | None = Field(default=None, max_length=40)
    person_id: int | None = Field(default=None, foreign_key="person.id")
    delegate_id: int | None = Field(default=None, foreign_key="person.id")
    delegation_id: int | None = Field(default=None, foreign_key="delegation.id")
    extra_ids: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    status: str = Field(default=StageStatus.WAITING, max_length=20, index=True)
    started_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    decided_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    decided_by: int | None = Field(default=None, foreign_key="person.id")
    by_delegation: bool = False
    note: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    reminded_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    escalated_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class Delegation(SQLModel, table=True):
    """The principal hands their approvals to a vice principal for a date range (004 Điều 12.1)."""

    __tablename__ = "delegation"
    id: int | None = Field(default=None, primary_key=True)
    school_id: int = Field(foreign_key="school.id", index=True)
    principal_id: int = Field(foreign_key="person.id")
    delegate_id: int = Field(foreign_key="person.id")
    start_date: date_type
    end_date: date_type
    created_at: datetime = Field(sa_type=UTCDateTime, default_factory=utcnow)
    ended_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class WaitingCard(SQLModel, table=True):
    """A card (an approval, an incident) addressed to a person who had no linked channel when it was
    sent: kept, and delivered once when they link (:mod:`bot.engine.waiting`). ``delivered_at`` is
    set by a conditional update, so two processes never both deliver it."""

    __tablename__ = "waiting_card"
    __table_args__ = (UniqueConstraint("person_id", "ref_kind", "ref_id", name="uq_waiting_card"),)
    id: int | None = Field(default=None, primary_key=True)
    school_id: int = Field(foreign_key="school.id", index=True)
    person_id: int = Field(foreign_key="person.id")
    ref_kind: str = Field(max_length=40)
    ref_id: str = Field(max_length=60)
    prefix: str = Field(default="", max_length=200)  # msgid shown above the card (escalation …)
    created_at: datetime = Field(sa_type=UTCDateTime, default_factory=utcnow)
    delivered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


# ---------------------------------------------------------------------------------------------
# Compliance calendar (bot/engine/reminders.py)
# ---------------------------------------------------------------------------------------------
class NoticeStatus(StrEnum):
    QUEUED = "queued"          # waiting in the outbox for the fan-out worker
    SENT = "sent"
    HELD = "held"              # the person cannot be reached now (e.g. Zalo window closed)
    UNREACHABLE = "unreachable"  # no linked channel at all
    DONE = "done"              # marker: a rule's period was handled completely


class Notice(SQLModel, table=True):
    """One reminder to one person, identified by its idempotency key ``rule|person|period``.

    The row is written in the same transaction as the decision to send, so a restart (even after
    ``kill -9``) never repeats a notice, and a notice that fell due while the bot was down is sent
    once when it starts."""

    __tablename__ = "notice"
    # a person's held notices are looked up on every message they send (Dispatcher._resolve)
    __table_args__ = (Index("ix_notice_person_status", "person_id", "status"),)
    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=240, unique=True)
    school_id: int | None = Field(default=None, foreign_key="school.id", index=True)
    rule: str = Field(max_length=60, index=True)
    person_id: int | None = Field(default=None, foreign_key="person.id", index=True)
    period: str = Field(default="", max_length=80)
    status: str = Field(default=NoticeStatus.SENT, max_length=20, index=True)
    channel: str = Field(default="", max_length=20)
    chat_id: str = Field(default="", max_length=120)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    attempts: int = 0
    not_before: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(sa_type=UTCDateTime, default_factory=utcnow)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class RuleSetting(SQLModel, table=True):
    """A school's overrides of one reminder rule (enabled, day, hour, recipients …)."""

    __tablename__ = "rule_setting"
    school_id: int = Field(foreign_key="school.id", primary_key=True)
    rule: str = Field(max_length=60, primary_key=True)
    enabled: bool = True
    params: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    updated_by: int | None = Field(default=None, foreign_key="person.id")
    updated_at: datetime = Field(sa_type=UTCDateTime, default_factory=utcnow)



# ---------------------------------------------------------------------------------------------
# The web console (bot/channels/admin): one-time login links and sessions, both stored as SHA-256 hashes
# ---------------------------------------------------------------------------------------------
class ConsoleLogin(SQLModel, table=True):
    """A single-use login link sent in the chat (``/dangnhap``); only its hash is kept."""

    __tablename__ = "console_login"
    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64, unique=True)
    person_id: int = Field(foreign_key="person.id", index=True)
    school_id: int = Field(foreign_key="school.id", index=True)
    created_at: datetime = Field(sa_type=UTCDateTime, default_factory=utcnow)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    ip: str = Field(default="", max_length=64)


class ConsoleSession(SQLModel, table=True):
    """A logged-in browser; ``id`` is the SHA-256 of the cookie's value."""

    __tablename__ = "console_session"
    id: str = Field(primary_key=True, max_length=64)
    person_id: int = Field(foreign_key="person.id", index=True)
    created_at: datetime = Field(sa_type=UTCDateTime, default_factory=utcnow)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
