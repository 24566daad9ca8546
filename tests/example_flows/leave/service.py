"""Queries of the leave workflow: keyword-only, every one scoped by ``school_id`` (steps never write
``select(...)`` themselves)."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import update
from sqlmodel import Session, col, select

from tests.example_flows.leave.models import LeaveRequest, LeaveStatus


def overlapping(*, session: Session, school_id: int, requester_id: int, start: date, end: date) -> LeaveRequest | None:
    """A pending or approved request of the same person that shares a day with ``start``–``end``."""
    return session.exec(select(LeaveRequest).where(
        LeaveRequest.school_id == school_id, LeaveRequest.requester_id == requester_id,
        col(LeaveRequest.status).in_([LeaveStatus.PENDING, LeaveStatus.APPROVED]),
        col(LeaveRequest.start_date) <= end, col(LeaveRequest.end_date) >= start)).first()


def create(*, session: Session, school_id: int, requester_id: int, start: date, end: date, reason: str,
           now: datetime) -> LeaveRequest:
    req = LeaveRequest(school_id=school_id, requester_id=requester_id, start_date=start, end_date=end,
                       reason=reason, created_at=now)
    session.add(req)
    session.flush()
    return req


def for_approval(*, session: Session, school_id: int, approval_id: int) -> LeaveRequest | None:
    return session.exec(select(LeaveRequest).where(LeaveRequest.school_id == school_id,
                                                   LeaveRequest.approval_id == approval_id)).first()


def settle(*, session: Session, request: LeaveRequest, status: LeaveStatus, now: datetime) -> bool:
    """Pending → ``status`` with a conditional update: True only for the one call that changed it."""
    res = session.execute(update(LeaveRequest).where(
        col(LeaveRequest.id) == request.id, col(LeaveRequest.status) == LeaveStatus.PENDING)
        .values(status=status, decided_at=now).execution_options(synchronize_session=False))
    if res.rowcount != 1:  # type: ignore[attr-defined]
        return False
    session.refresh(request)
    return True
