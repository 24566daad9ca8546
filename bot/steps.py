"""Reusable pieces of workflow steps: card-button payloads, a day question, a date range, picking a
person and the confirm step (``📨 Gửi`` / ``✏️ Sửa`` / ``Hủy``).

Each workflow keeps its own wording: the pieces take msgids (marked with ``N_`` where the workflow
declares them) and button values as parameters, so cards already sitting in people's chats keep
working. Validation is a pure function that returns an error key (``check_day``, ``check_range``);
the step maps the key to the workflow's catalogue message and asks again.

```python
DAY = DayQuestion(errors={UNREADABLE: N_("…"), FUTURE: N_("…"), TOO_OLD: N_("…")}, past_days=366)

def date_(ctx: Ctx, msg: Inbound) -> Step:
    d = DAY.answer(ctx, msg)
    if isinstance(d, Reply):
        return Step.stay(d)
    ...
```
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TYPE_CHECKING

from bot.core.dispatcher import choice, choice_value
from bot.core.flow import Step
from bot.core.messages import Button, Inbound, Keyboard, Reply, keyboard
from bot.i18n import N_
from bot.text import fold, parse_date, parse_date_range, parse_id

if TYPE_CHECKING:
    from bot.core.context import Ctx
    from storage.models import Person

# -- button payloads: ``prefix:id:action`` ----------------------------------------------------------
#: Telegram's limit on callback data; a longer payload was not made by us.
MAX_PAYLOAD_BYTES = 64


@dataclass(frozen=True, slots=True)
class Payload:
    """A parsed card button: ``ic:12:ack`` → ``Payload("ic", 12, "ack")``."""

    prefix: str
    id: int
    action: str


def parse_payload(payload: str | None, prefix: str, actions: Collection[str], *,
                  action_first: bool = False) -> Payload | None:
    """``prefix:id:action`` (or ``prefix:action:id`` with ``action_first``) → :class:`Payload`.

    None for anything else: another prefix, an unknown action, extra or missing parts, an id that
    is not plain ASCII digits (``²``, ``١``, ``-1``, `` 1``) or beyond a database id, or a payload
    longer than a button can carry. The payload only names a thing: the caller still checks the
    person's school, role and the thing's state on the server."""
    if not payload or len(payload) > MAX_PAYLOAD_BYTES or len(payload.encode()) > MAX_PAYLOAD_BYTES:
        return None
    parts = payload.split(":")
    if len(parts) != 3 or parts[0] != prefix:
        return None
    raw_id, action = (parts[2], parts[1]) if action_first else (parts[1], parts[2])
    if action not in actions:
        return None
    n = parse_id(raw_id)
    return Payload(prefix, n, action) if n is not None else None


# -- one day: ``Hôm nay`` / ``Hôm qua`` / ``21/11`` / ``21/11/2026`` --------------------------------------
UNREADABLE = "unreadable"
FUTURE = "future"
TOO_OLD = "too_old"
REVERSED = "reversed"
PAST = "past"
TOO_LONG = "too_long"

TODAY, YESTERDAY = "today", "yesterday"

DAY_ERRORS: Mapping[str, str] = {
    UNREADABLE: N_("I could not read that date. Type it like 21/11 or 21/11/2026."),
    FUTURE: N_("That day is in the future. Which day do you need?"),
    TOO_OLD: N_("{date} is too long ago. Please choose a later day."),
}


def read_day(msg: Inbound, *, today: date) -> date | None:
    """A tapped ``Today`` / ``Yesterday``, or a typed date (``21/11``, ``hôm qua``, ``hom nay``)."""
    value = choice_value(msg)
    if value == TODAY:
        return today
    if value == YESTERDAY:
        return today - timedelta(days=1)
    return parse_date(msg.text, today=today)


def check_day(d: date | None, *, today: date, past_days: int | None = None, future_days: int = 0) -> str | None:
    """None when ``d`` is a day the question accepts, else an error key: ``unreadable`` (no date),
    ``future`` (after today + ``future_days``), ``too_old`` (before today − ``past_days``)."""
    if d is None:
        return UNREADABLE
    if d > today + timedelta(days=future_days):
        return FUTURE
    if past_days is not None and d < today - timedelta(days=past_days):
        return TOO_OLD
    return None


def day_buttons(ctx: Ctx, *extra: Button) -> Keyboard:
    """``Hôm nay`` / ``Hôm qua`` (and the workflow's own extra buttons), two to a row."""
    return keyboard(choice(ctx.t("Today"), TODAY), choice(ctx.t("Yesterday"), YESTERDAY), *extra, per_row=2)


@dataclass(frozen=True)
class DayQuestion:
    """A workflow's question for one day: its error messages (msgids with ``{date}`` and ``{n}``,
    the bound in days) and its bounds (``past_days`` None: no lower bound)."""

    errors: Mapping[str, str] = field(default_factory=lambda: dict(DAY_ERRORS))
    past_days: int | None = None
    future_days: int = 0

    def ask(self, ctx: Ctx, state: str, text: str, *extra: Button) -> Step:
        """Go to ``state`` with the question and the day buttons."""
        return Step.goto(state, Reply(text, buttons=day_buttons(ctx, *extra)))

    def answer(self, ctx: Ctx, msg: Inbound, *, past_days: int | None = None) -> date | Reply:
        """The day, or the reply that asks again (``past_days`` overrides the bound for this call)."""
        today = ctx.today()
        past = self.past_days if past_days is None else past_days
        d = read_day(msg, today=today)
        error = check_day(d, today=today, past_days=past, future_days=self.future_days)
        if error is None and d is not None:
            return d
        n = past if error == TOO_OLD else self.future_days
        return Reply(ctx.t(self.errors.get(error or UNREADABLE) or DAY_ERRORS[error or UNREADABLE],
                           date=ctx.tr.date(d) if d else "", n=n))


# -- a date range: ``từ 24/11 đến 28/11`` or a preset button -------------------------------------------
RANGE_ERRORS: Mapping[str, str] = {
    UNREADABLE: N_("I could not read those dates. Type them like “từ 24/11 đến 28/11”."),
    REVERSED: N_("The end date is before the start date. Please type the range again."),
    PAST: N_("Those dates are in the past. Please choose dates from today on."),
    TOO_LONG: N_("A range can last at most {n} days."),
}


def range_presets(today: date) -> dict[str, tuple[date, date]]:
    """The preset buttons' ranges: today, the next 3 days, until Sunday, all of next week."""
    end_of_week = today + timedelta(days=6 - today.weekday())
    next_monday = today + timedelta(days=7 - today.weekday())
    return {"today": (today, today), "3d": (today, today + timedelta(days=2)), "week": (today, end_of_week),
            "next": (next_monday, next_monday + timedelta(days=6))}


def check_range(rng: tuple[date, date] | None, *, today: date, max_days: int | None = None) -> str | None:
    """None when the range is readable, ordered, not over and at most ``max_days`` long (counted from
    today when it started earlier); else an error key."""
    if rng is None:
        return UNREADABLE
    start, end = rng
    if end < start:
        return REVERSED
    if end < today:
        return PAST
    if max_days is not None and (end - max(start, today)).days + 1 > max_days:
        return TOO_LONG
    return None


@dataclass(frozen=True)
class RangeQuestion:
    """A workflow's question for a date range, from today on. The preset ranges are kept in the
    conversation (``data_key``) when asked, so a button tapped after midnight means what it said."""

    errors: Mapping[str, str] = field(default_factory=lambda: dict(RANGE_ERRORS))
    max_days: int | None = None
    data_key: str = "presets"

    def buttons(self, ctx: Ctx) -> Keyboard:
        return keyboard(choice(ctx.t("Today"), "today"), choice(ctx.t("Next 3 days"), "3d"),
                        choice(ctx.t("Until the end of this week"), "week"),
                        choice(ctx.t("All of next week"), "next"), per_row=2)

    def ask(self, ctx: Ctx, state: str, text: str) -> Step:
        """Remember the presets and go to ``state`` with the question and the preset buttons."""
        ctx.data[self.data_key] = {k: [a.isoformat(), b.isoformat()] for k, (a, b) in
                                   range_presets(ctx.today()).items()}
        return Step.goto(state, Reply(text, buttons=self.buttons(ctx)))

    def answer(self, ctx: Ctx, msg: Inbound) -> tuple[date, date] | Reply:
        """(start, end) — a start before today moves to today — or the reply that asks again."""
        today = ctx.today()
        value = choice_value(msg)
        presets: dict[str, list[str]] = ctx.data.get(self.data_key) or {}
        rng: tuple[date, date] | None = None
        if value and value in presets:
            rng = (date.fromisoformat(presets[value][0]), date.fromisoformat(presets[value][1]))
        elif msg.text:
            rng = parse_date_range(msg.text, today=today)
        error = check_range(rng, today=today, max_days=self.max_days)
        if error is not None or rng is None:
            key = error or UNREADABLE
            return Reply(ctx.t(self.errors.get(key) or RANGE_ERRORS[key], n=self.max_days or 0))
        return max(rng[0], today), rng[1]


# -- picking a person ---------------------------------------------------------------------------------
MAX_PEOPLE = 10
PERSON = "p"  # button value: ``p<id>``


def match_people(people: Iterable[Person], query: str) -> list[Person]:
    """People whose name matches what was typed (diacritics and case forgiven): those where every
    typed word starts a word of the name (``hoa`` finds Lê Thị Hoa, not Đặng Minh Khoa) when there
    are any, else those whose name contains the text."""
    q = fold(query)
    if not q:
        return []
    people = list(people)
    words = q.split()
    by_words = [p for p in people
                if all(any(w.startswith(x) for w in fold(p.full_name).split()) for x in words)]
    return by_words or [p for p in people if q in fold(p.full_name)]


def name_and_unit(p: Person) -> str:
    """``Lê Thị Hoa (Tổ 1)`` — how a person is shown on a button."""
    return p.full_name + (f" ({p.unit})" if p.unit else "")


def person_buttons(people: Sequence[Person], *, label: Callable[[Person], str] = name_and_unit,
                   limit: int = MAX_PEOPLE) -> Keyboard:
    """One button a person (``p<id>``), at most ``limit``."""
    return keyboard(*[choice(label(p), f"{PERSON}{p.id}") for p in people[:limit]], per_row=1)


@dataclass(frozen=True)
class PersonPicker:
    """A workflow's pick-a-person: buttons ``p<id>`` checked against ``people`` (never trusted),
    or part of a name typed. Messages are msgids: ``none`` (nobody matches), ``not_listed`` (a
    button naming someone not offered; ``none`` when empty), ``several``."""

    none: str = N_("Nobody matches. Type another part of the name, or /huy to stop.")
    several: str = N_("Several people match. Which one?")
    not_listed: str = ""
    label: Callable[[Person], str] = name_and_unit
    limit: int = MAX_PEOPLE

    def buttons(self, people: Sequence[Person]) -> Keyboard:
        return person_buttons(people, label=self.label, limit=self.limit)

    def answer(self, ctx: Ctx, msg: Inbound, people: Sequence[Person],
               also: Callable[[str], list[Person]] | None = None) -> Person | Reply:
        """The one person meant, or the reply that asks again (buttons when several match).
        ``also`` is asked for typed text that matches no name (e.g. an account's user name)."""
        value = choice_value(msg) or ""
        found: list[Person] = []
        if value.startswith(PERSON) and parse_id(value[len(PERSON):]) is not None:
            pid = parse_id(value[len(PERSON):])
            found = [p for p in people if p.id == pid]
            if not found and self.not_listed:
                return Reply(ctx.t(self.not_listed))
        elif msg.text:
            found = match_people(people, msg.text)
            if not found and also is not None:
                found = also(msg.text)
        if not found:
            return Reply(ctx.t(self.none))
        if len(found) > 1:
            return Reply(ctx.t(self.several), buttons=self.buttons(found))
        return found[0]


# -- the confirm step: 📨 Gửi / ✏️ Sửa / Hủy ------------------------------------------------------------
@dataclass(frozen=True)
class Confirm:
    """A workflow's confirm step. Labels and messages are msgids, values the button payloads
    (``c:<value>``); ``edit`` adds a third button (footage: ``🕘 Chọn giờ khác``)."""

    send: str = N_("📨 Send")
    cancel: str = N_("Cancel")
    cancelled: str = N_("Cancelled. Nothing was sent.")
    edit: str | None = None
    send_value: str = "send"
    cancel_value: str = "cancel"
    edit_value: str = "edit"
    state: str = "confirm"

    def buttons(self, ctx: Ctx, *, send: bool = True) -> Keyboard:
        """One row: send, edit (if any), cancel; ``send=False`` leaves only edit and cancel."""
        row = [choice(ctx.t(self.send), self.send_value)] if send else []
        if self.edit is not None:
            row.append(choice(ctx.t(self.edit), self.edit_value))
        row.append(choice(ctx.t(self.cancel), self.cancel_value))
        return keyboard(row)

    def ask(self, ctx: Ctx, text: str, *, send: bool = True) -> Step:
        """Go to the confirm state with the summary ``text`` and the buttons."""
        return Step.goto(self.state, Reply(text, buttons=self.buttons(ctx, send=send)))

    def step(self, on_send: Callable[[Ctx], Step],
             on_edit: Callable[[Ctx], Step] | None = None) -> Callable[[Ctx, Inbound], Step]:
        """The state's step: cancel ends the workflow, edit calls ``on_edit``, send calls
        ``on_send``; anything else asks for a button. It carries ``on_send``'s docstring."""

        def confirm(ctx: Ctx, msg: Inbound) -> Step:
            value = choice_value(msg)
            if value == self.cancel_value:
                return Step.done(Reply(ctx.t(self.cancelled)))
            if on_edit is not None and value == self.edit_value:
                return on_edit(ctx)
            if value != self.send_value:
                return Step.stay(Reply(ctx.t("Please choose one of the buttons.")))
            return on_send(ctx)

        confirm.__doc__ = on_send.__doc__
        return confirm


__all__ = [
    "DAY_ERRORS", "FUTURE", "MAX_PEOPLE", "PAST", "RANGE_ERRORS", "REVERSED", "TOO_LONG", "TOO_OLD", "UNREADABLE",
    "Confirm", "DayQuestion", "Payload", "PersonPicker", "RangeQuestion", "check_day", "check_range", "day_buttons",
    "match_people", "name_and_unit", "parse_payload", "person_buttons", "range_presets", "read_day",
]
