"""SQLModel tables of the accounts workflow (see storage/models.py for the shared ones).

Only user names are kept, never a password (002 Điều 10.1.a, 003 Điều 5.2): there is no column
for one anywhere. Accounts, like people, are never deleted — they are locked or revoked
(003 Điều 6.3–6.5); the audit log holds who did what when."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from storage.models import UTCDateTime, utcnow


class AccountStatus(StrEnum):
    ACTIVE = "active"
    LOCKED = "locked"    # locked by IT on a security problem (004 Điều 10.3)
    REVOKED = "revoked"  # revoked when its owner left (002 Điều 10.1.c)


class Account(SQLModel, table=True):
    """One person's account on one system of the school (the user name only)."""

    __tablename__ = "account"
    __table_args__ = (UniqueConstraint("school_id", "system", "username", name="uq_account_school_system_user"),)
    id: int | None = Field(default=None, primary_key=True)
    school_id: int = Field(foreign_key="school.id", index=True)
    person_id: int = Field(foreign_key="person.id", index=True)
    system: str = Field(max_length=40)
    username: str = Field(max_length=120)
    status: str = Field(default=AccountStatus.ACTIVE, max_length=20, index=True)
    locked_reason: str = Field(default="", max_length=300)
    locked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    locked_by: int | None = Field(default=None, foreign_key="person.id")
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_by: int | None = Field(default=None, foreign_key="person.id")
    created_at: datetime = Field(sa_type=UTCDateTime, default_factory=utcnow)
    updated_at: datetime = Field(sa_type=UTCDateTime, default_factory=utcnow)


class ResetStatus(StrEnum):
    APPROVAL = "approval"    # a sensitive system: waiting for BGH
    WAITING = "waiting"      # waiting for the IT team
    DONE = "done"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


class AccountReset(SQLModel, table=True):
    """A password reset asked by the account's owner. ``method`` says how IT did it
    (``temporary``: a temporary password from the bot; ``manual``: by other means)."""

    __tablename__ = "account_reset"
    id: int | None = Field(default=None, primary_key=True)
    school_id: int = Field(foreign_key="school.id", index=True)
    account_id: int = Field(foreign_key="account.id", index=True)
    person_id: int = Field(foreign_key="person.id", index=True)
    status: str = Field(default=ResetStatus.WAITING, max_length=20, index=True)
    approval_id: int | None = Field(default=None, foreign_key="approval.id")
    method: str = Field(default="", max_length=20)
    handled_by: int | None = Field(default=None, foreign_key="person.id")
    handled_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(sa_type=UTCDateTime, default_factory=utcnow, index=True)


class Revocation(SQLModel, table=True):
    """The checklist opened when a person transfers, retires or leaves (002 Điều 10.1.c)."""

    __tablename__ = "account_revocation"
    id: int | None = Field(default=None, primary_key=True)
    school_id: int = Field(foreign_key="school.id", index=True)
    person_id: int = Field(foreign_key="person.id", index=True)
    new_status: str = Field(max_length=20)
    source: str = Field(default="chat", max_length=20)  # chat | import
    opened_by: int | None = Field(default=None, foreign_key="person.id")
    opened_at: datetime = Field(sa_type=UTCDateTime, default_factory=utcnow)
    closed_at: datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)


class RevocationItem(SQLModel, table=True):
    """One account to revoke; ticked by IT with ``Đã thu hồi``."""

    __tablename__ = "account_revocation_item"
    __table_args__ = (UniqueConstraint("revocation_id", "account_id", name="uq_revocation_item"),)
    id: int | None = Field(default=None, primary_key=True)
    school_id: int = Field(foreign_key="school.id", index=True)
    revocation_id: int = Field(foreign_key="account_revocation.id", index=True)
    account_id: int = Field(foreign_key="account.id")
    done_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    done_by: int | None = Field(default=None, foreign_key="person.id")
