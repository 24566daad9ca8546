"""Per-school settings of leave requests (``School.settings["leave"]``), declared once as
:class:`LeaveSettings`: defaults and bounds in the model, titles as msgids; the console and
``main.py settings`` render and validate them from it. Read them with ``LeaveSettings.of(school)``."""

from __future__ import annotations

from pydantic import Field

from bot.i18n import N_
from bot.settings import WorkflowSettings


class LeaveSettings(WorkflowSettings):
    section = "leave"

    max_days: int = Field(default=30, ge=1, le=92, title=N_("Longest leave that can be asked for, in days"))
    min_reason: int = Field(default=5, ge=1, le=100, title=N_("Shortest reason, in characters"))
