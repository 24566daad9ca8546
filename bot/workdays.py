"""Vietnamese working days: Monday–Friday, minus public holidays (Tết included) and the days off
in lieu that the ``holidays`` package knows for Vietnam.

A school may add its own days off (``School.settings["days_off"]``, ISO dates) — for example the
extra days the government announces for Tết each year."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta
from functools import lru_cache

import holidays


@lru_cache(maxsize=64)
def _vn(year: int) -> frozenset[date]:
    return frozenset(holidays.country_holidays("VN", years=year).keys())


def is_holiday(d: date, extra: Iterable[date] = ()) -> bool:
    return d in _vn(d.year) or d in set(extra)


def holiday_name(d: date) -> str | None:
    """The holiday's name as the package gives it (English), or None."""
    name = holidays.country_holidays("VN", years=d.year).get(d)
    return str(name) if name else None


def is_working_day(d: date, extra_days_off: Iterable[date] = ()) -> bool:
    return d.weekday() < 5 and not is_holiday(d, extra_days_off)


def add_working_days(start: date, n: int, extra_days_off: Iterable[date] = ()) -> date:
    """The date ``n`` working days after ``start`` (``start`` itself does not count).

    ``add_working_days(friday, 1)`` is the next Monday when that Monday is not a holiday."""
    if n < 0:
        raise ValueError("n must be >= 0")
    extra = frozenset(extra_days_off)
    d = start
    left = n
    while left:
        d += timedelta(days=1)
        if is_working_day(d, extra):
            left -= 1
    return d


def working_days_between(start: date, end: date, extra_days_off: Iterable[date] = ()) -> int:
    """Working days in (start, end] — how many working days have passed since ``start``."""
    if end <= start:
        return 0
    extra = frozenset(extra_days_off)
    return sum(1 for i in range(1, (end - start).days + 1)
               if is_working_day(start + timedelta(days=i), extra))


def school_days_off(settings: dict[str, object] | None) -> frozenset[date]:
    """The extra days off a school configured (``settings["days_off"]``: ISO date strings)."""
    raw = (settings or {}).get("days_off") or []
    out: set[date] = set()
    if isinstance(raw, list):
        for v in raw:
            try:
                out.add(date.fromisoformat(str(v)))
            except ValueError:
                continue
    return frozenset(out)
