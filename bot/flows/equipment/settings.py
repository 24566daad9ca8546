"""Per-school equipment settings (``School.settings["equipment"]``), declared once as
:class:`EquipmentSettings`; read them with ``EquipmentSettings.of(school)``."""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

from bot.i18n import N_
from bot.settings import WorkflowSettings

_MMDD = re.compile(r"(\d{1,2})-(\d{1,2})")


def month_day(value: str) -> tuple[int, int]:
    """``"08-01"`` → (8, 1); raises ValueError for anything that is not a day of every year."""
    m = _MMDD.fullmatch(value.strip())
    if not m:
        raise ValueError(value)
    month, day = int(m.group(1)), int(m.group(2))
    date(2001, month, day)  # a year without 29 February: the day must exist every year
    return month, day


def _check_mmdd(value: str) -> str:
    try:
        month, day = month_day(value)
    except ValueError:
        raise PydanticCustomError("setting", N_("must be a day of the year as MM-DD, for example 08-01")) from None
    return f"{month:02d}-{day:02d}"


#: A day of the year, ``MM-DD`` (every year has it: not 02-29).
MonthDay = Annotated[str, AfterValidator(_check_mmdd)]


class EquipmentSettings(WorkflowSettings):
    section = "equipment"

    deadline_days: int = Field(
        default=10, ge=0, le=60, strict=False, title=N_("Working days to record an equipment change"),
        description=N_("Counted from the day it happened (Article 7.2); later records are marked late."))
    remind_days: int = Field(
        default=3, ge=0, le=30, strict=False, title=N_("Working days before the deadline to remind"),
        description=N_("The reminder rule's own setting in the calendar, when given, wins."))
    year_start: MonthDay = Field(
        default="08-01", title=N_("First day of the school year (MM-DD)"),
        description=N_("Also the first day of semester 1, for the equipment reports."))
    hk2_start: MonthDay = Field(
        default="01-16", title=N_("First day of semester 2 (MM-DD)"))

    @property
    def year_start_md(self) -> tuple[int, int]:
        return month_day(self.year_start)

    @property
    def hk2_start_md(self) -> tuple[int, int]:
        return month_day(self.hk2_start)
