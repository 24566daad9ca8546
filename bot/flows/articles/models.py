"""SQLModel tables of the articles workflow (seed 001 Điều 12–22; see storage/models.py for the shared ones).

* :class:`Article` — one news item / article for the school portal, from the first draft to its
  publication (``status``); drafts live here too, so they survive restarts and can be resumed.
* :class:`ArticleVersion` — every text that was submitted, resubmitted or edited by the secretary
  (nothing is overwritten without a trace).
* :class:`ArticleVoteRound` / :class:`ArticleBallot` — the monthly best-article vote (Điều 21):
  one ballot row per board member, changed in place until the round closes.
"""

from __future__ import annotations

from datetime import date as date_type
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from storage.models import UTCDateTime, utcnow


class ArticleStatus(StrEnum):
    DRAFT = "draft"            # being written by its author
    SUBMITTED = "submitted"    # waiting for the secretary (edit, forward or return)
    RETURNED = "returned"      # sent back to the author with a note
    IN_REVIEW = "in_review"    # forwarded; the approval engine waits for the approver
    APPROVED = "approved"      # waiting for the secretary to publish it
    PUBLISHED = "published"
    REJECTED = "rejected"      # the approver refused it (the author may still revise and resubmit)
    WITHDRAWN = "withdrawn"    # a draft the author threw away (kept, never deleted)


class Article(SQLModel, table=True):
    __tablename__ = "article"
    id: int | None = Field(default=None, primary_key=True)
    school_id: int = Field(foreign_key="school.id", index=True)
    author_id: int = Field(foreign_key="person.id", index=True)
    title: str = Field(default="", max_length=300)
    category: str = Field(default="", max_length=30)
    unit: str = Field(default="", max_length=120)  # on behalf of this organisation / unit; "" = personal
    origin: str = Field(default="", max_length=20)  # own | collected
    source: str = Field(default="", max_length=500)  # required when collected (Điều 15.2)
    event_date: date_type | None = None
    deadline: date_type | None = None  # event date + 3 days (Điều 22.1.1)
    body: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    photos: list[Any] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    progress: list[Any] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    status: str = Field(default=ArticleStatus.DRAFT, max_length=20, index=True)
    version: int = 0
    in_plan: bool = True
    approval_id: int | None = Field(default=None, foreign_key="approval.id")
    note: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    returned_by: int | None = Field(default=None, foreign_key="person.id")
    forwarded_by: int | None = Field(default=None, foreign_key="person.id")
    approved_by: int | None = Field(default=None, foreign_key="person.id")
    published_by: int | None = Field(default=None, foreign_key="person.id")
    published_url: str = Field(default="", max_length=500)
    late: bool = False
    created_at: datetime = Field(sa_type=UTCDateTime, default_factory=utcnow)
    updated_at: datetime = Field(sa_type=UTCDateTime, default_factory=utcnow)
    submitted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    approved_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    published_at: datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)


class ArticleVersion(SQLModel, table=True):
    """A snapshot of an article's text each time it was submitted, resubmitted or edited."""

    __tablename__ = "article_version"
    __table_args__ = (UniqueConstraint("article_id", "n", name="uq_article_version_n"),)
    id: int | None = Field(default=None, primary_key=True)
    article_id: int = Field(foreign_key="article.id", index=True)
    school_id: int = Field(foreign_key="school.id", index=True)
    n: int
    kind: str = Field(max_length=20)  # submitted | resubmitted | edited
    editor_id: int | None = Field(default=None, foreign_key="person.id")
    title: str = Field(default="", max_length=300)
    body: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    photos: list[Any] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    source: str = Field(default="", max_length=500)
    note: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    created_at: datetime = Field(sa_type=UTCDateTime, default_factory=utcnow)


class VoteStatus(StrEnum):
    OPEN = "open"
    TIE = "tie"              # closed with a tie: the board head breaks it
    DECIDED = "decided"      # winners known, announcement pending
    ANNOUNCED = "announced"
    EMPTY = "empty"          # closed without a single vote


class ArticleVoteRound(SQLModel, table=True):
    """The best-article vote of one month (Điều 21) among that month's published articles."""

    __tablename__ = "article_vote_round"
    __table_args__ = (UniqueConstraint("school_id", "month", name="uq_article_vote_month"),)
    id: int | None = Field(default=None, primary_key=True)
    school_id: int = Field(foreign_key="school.id", index=True)
    month: str = Field(max_length=7)  # "2026-10"
    status: str = Field(default=VoteStatus.OPEN, max_length=20, index=True)
    candidates: list[Any] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    winners: list[Any] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    tie_broken_by: int | None = Field(default=None, foreign_key="person.id")
    opened_at: datetime = Field(sa_type=UTCDateTime, default_factory=utcnow)
    closes_at: datetime = Field(sa_type=UTCDateTime)
    closed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    announced_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class ArticleBallot(SQLModel, table=True):
    """One board member's vote in a round; changed in place until the round closes."""

    __tablename__ = "article_ballot"
    __table_args__ = (UniqueConstraint("round_id", "voter_id", name="uq_article_ballot_voter"),)
    id: int | None = Field(default=None, primary_key=True)
    round_id: int = Field(foreign_key="article_vote_round.id", index=True)
    school_id: int = Field(foreign_key="school.id", index=True)
    voter_id: int = Field(foreign_key="person.id")
    article_id: int = Field(foreign_key="article.id")
    created_at: datetime = Field(sa_type=UTCDateTime, default_factory=utcnow)
    updated_at: datetime = Field(sa_type=UTCDateTime, default_factory=utcnow)
