"""The shared step pieces of ``bot/steps.py``: card-button payloads, the day and date-range
questions, picking a person and the confirm step — each as the workflows use it."""

from __future__ import annotations

import unicodedata
from datetime import UTC, date, datetime
from typing import Any, cast

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bot.core import Ctx, Inbound, Reply, Step
from bot.i18n import N_, Translator
from bot.steps import (
    FUTURE,
    PAST,
    REVERSED,
    TOO_LONG,
    TOO_OLD,
    UNREADABLE,
    Confirm,
    DayQuestion,
    Payload,
    PersonPicker,
    RangeQuestion,
    check_day,
    check_range,
    match_people,
    parse_payload,
    read_day,
)
from bot.text import MAX_ID
from storage.models import Person

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TODAY = date(2026, 11, 21)  # a Saturday
NOW = datetime(2026, 11, 21, 3, 0, tzinfo=UTC)  # 10:00 in Hà Nội


def msg(text: str | None = None, payload: str | None = None) -> Inbound:
    return Inbound(channel="test", user_id="1", chat_id="1", update_key="u", text=text, payload=payload)


def ctx_for(message: Inbound, locale: str = "en") -> Ctx:
    """A context with only what the pieces read: the translator, the clock and the draft data."""
    return Ctx(session=cast(Any, None), services=cast(Any, None), inbound=message, person=None, school=None,
               tr=Translator(locale), now=NOW)


def staff() -> list[Person]:
    return [Person(id=1, school_id=1, full_name="Lê Thị Hoa", unit="Tổ 1", roles=[]),
            Person(id=2, school_id=1, full_name="Đặng Minh Khoa", unit="Tổ 2", roles=[]),
            Person(id=3, school_id=1, full_name="Nguyễn Thị Hoà", unit="", roles=[]),
            Person(id=4, school_id=1, full_name="Trần Văn Đức", unit="Bảo vệ", roles=[])]


# -- payloads -------------------------------------------------------------------------------------
def test_a_card_button_payload_names_its_prefix_id_and_action() -> None:
    assert parse_payload("ic:12:ack", "ic", ("ack", "done")) == Payload("ic", 12, "ack")


def test_a_payload_with_the_action_first_is_read_the_same_way() -> None:
    assert parse_payload("acc:g:7", "acc", ("g", "m", "v"), action_first=True) == Payload("acc", 7, "g")


def test_forged_or_malformed_payloads_are_refused() -> None:
    for forged in ("", "ic", "ic:12", "ic:12:ack:more", "ic::ack", "ic:12:", "ic:12:delete", "ap:12:ack",
                   "IC:12:ack", "ic:-1:ack", "ic:+1:ack", "ic: 1:ack", "ic:1 :ack", "ic:1.0:ack", "ic:0x1:ack",
                   "ic:99999999999:ack", f"ic:{MAX_ID + 1}:ack", "ic:12:ACK", "ic:12:ack ", "c:ic:12:ack"):
        assert parse_payload(forged, "ic", ("ack", "done")) is None, forged


def test_unicode_digits_are_not_an_id() -> None:
    for forged in ("ic:²:ack", "ic:١٢:ack", "ic:１２:ack", "ic:1²:ack", "ic:𝟏:ack"):
        assert parse_payload(forged, "ic", ("ack",)) is None, forged


def test_a_payload_longer_than_a_button_can_carry_is_refused() -> None:
    assert parse_payload("ic:12:" + "a" * 80, "ic", ("a" * 80,)) is None


def test_no_payload_is_none() -> None:
    assert parse_payload(None, "ic", ("ack",)) is None


@FAST
@given(st.one_of(st.text(max_size=80),
                 st.builds(lambda i, a: f"eqr:{i}:{a}", st.text(alphabet="0123456789²١-+ ", max_size=14),
                           st.sampled_from(["ack", "done", "x", "", "ack:done"]))))
@example("eqr:²:ack")
@example("eqr:0:done")
def test_any_text_parses_to_a_valid_payload_or_none(raw: str) -> None:
    parsed = parse_payload(raw, "eqr", ("ack", "done"))
    assert parsed is None or (0 <= parsed.id <= MAX_ID and parsed.action in ("ack", "done")
                              and raw.startswith("eqr:") and raw.endswith(":" + parsed.action))


@FAST
@given(st.integers(0, MAX_ID), st.sampled_from(["ok", "no", "note"]))
def test_every_payload_a_card_makes_round_trips(i: int, action: str) -> None:
    raw = f"ap:{i}:{action}"
    assert len(raw.encode()) <= 64
    assert parse_payload(raw, "ap", ("ok", "no", "note")) == Payload("ap", i, action)


# -- one day --------------------------------------------------------------------------------------
def test_the_today_and_yesterday_buttons_give_those_days() -> None:
    assert read_day(msg(payload="c:today"), today=TODAY) == TODAY
    assert read_day(msg(payload="c:yesterday"), today=TODAY) == date(2026, 11, 20)


def test_a_typed_day_and_month_is_in_this_year() -> None:
    assert read_day(msg("21/11"), today=TODAY) == date(2026, 11, 21)


def test_a_typed_full_date_is_read() -> None:
    assert read_day(msg("21/11/2026"), today=TODAY) == date(2026, 11, 21)


def test_hom_nay_is_read_with_or_without_diacritics_and_in_nfd() -> None:
    for typed in ("hôm nay", "Hôm nay", "hom nay", unicodedata.normalize("NFD", "Hôm nay"), "HÔM NAY"):
        assert read_day(msg(typed), today=TODAY) == TODAY, typed
    assert read_day(msg(unicodedata.normalize("NFD", "hôm qua")), today=TODAY) == date(2026, 11, 20)


def test_a_day_in_the_future_is_refused() -> None:
    assert check_day(date(2026, 11, 22), today=TODAY) == FUTURE


def test_a_day_within_the_allowed_days_ahead_is_accepted() -> None:
    assert check_day(date(2026, 12, 1), today=TODAY, future_days=30) is None
    assert check_day(date(2027, 1, 1), today=TODAY, future_days=30) == FUTURE


def test_a_day_before_the_past_bound_is_refused() -> None:
    assert check_day(date(2026, 10, 21), today=TODAY, past_days=30) == TOO_OLD
    assert check_day(date(2026, 10, 22), today=TODAY, past_days=30) is None


def test_no_date_is_unreadable() -> None:
    assert check_day(None, today=TODAY) == UNREADABLE


def test_the_day_question_answers_with_the_day() -> None:
    assert DayQuestion().answer(ctx_for(msg("20/11")), msg("20/11")) == date(2026, 11, 20)


def test_the_day_question_explains_a_refusal_in_the_workflows_words() -> None:
    q = DayQuestion(errors={TOO_OLD: N_("Recordings are kept for {n} days only, so {date} is no longer available.")},
                    past_days=30)
    reply = q.answer(ctx_for(msg("1/1/2026")), msg("1/1/2026"))
    assert isinstance(reply, Reply) and "30" in reply.text and "2026" in reply.text


def test_the_day_question_refuses_tomorrow_with_its_default_message() -> None:
    reply = DayQuestion().answer(ctx_for(msg("22/11"), "vi"), msg("22/11"))
    assert isinstance(reply, Reply) and reply.text == "Ngày này chưa đến. Anh/chị cần xem ngày nào?"


def test_the_day_question_offers_today_and_yesterday() -> None:
    step = DayQuestion().ask(ctx_for(msg(), "vi"), "date", "Ngày nào?")
    assert step.next == "date"
    assert [b.payload for row in step.replies[0].buttons for b in row] == ["c:today", "c:yesterday"]
    assert [b.label for row in step.replies[0].buttons for b in row] == ["Hôm nay", "Hôm qua"]


# -- a date range ---------------------------------------------------------------------------------
def test_a_range_ending_before_it_starts_is_refused() -> None:
    assert check_range((date(2026, 11, 28), date(2026, 11, 24)), today=TODAY) == REVERSED


def test_a_range_already_over_is_refused() -> None:
    assert check_range((date(2026, 11, 1), date(2026, 11, 5)), today=TODAY) == PAST


def test_a_range_longer_than_allowed_is_refused() -> None:
    assert check_range((date(2026, 11, 21), date(2027, 3, 1)), today=TODAY, max_days=92) == TOO_LONG


def test_a_typed_range_is_read_and_starts_today_at_the_earliest() -> None:
    m = msg("từ 20/11 đến 28/11")
    assert RangeQuestion(max_days=92).answer(ctx_for(m), m) == (TODAY, date(2026, 11, 28))


def test_a_preset_button_means_the_days_it_offered() -> None:
    ctx = ctx_for(msg())
    RangeQuestion().ask(ctx, "range", "Which days?")
    tap = msg(payload="c:next")
    assert RangeQuestion().answer(ctx, tap) == (date(2026, 11, 23), date(2026, 11, 29))


def test_an_unreadable_range_asks_again() -> None:
    m = msg("sometime")
    assert isinstance(RangeQuestion().answer(ctx_for(m), m), Reply)


# -- picking a person -----------------------------------------------------------------------------
def test_part_of_a_name_finds_the_person_without_diacritics() -> None:
    assert [p.id for p in match_people(staff(), "duc")] == [4]


def test_part_of_a_name_finds_the_person_with_diacritics() -> None:
    assert [p.id for p in match_people(staff(), "Đức")] == [4]


def test_a_typed_word_must_start_a_word_of_the_name() -> None:
    assert [p.id for p in match_people(staff(), "hoa")] == [1, 3]  # Hoa and Hoà, not Khoa


def test_nfd_text_finds_the_same_people_as_nfc() -> None:
    people = staff()
    assert match_people(people, unicodedata.normalize("NFD", "Hoà")) == match_people(people, "Hoà")


def test_the_picker_answers_with_the_one_person_meant() -> None:
    m = msg("khoa")
    found = PersonPicker().answer(ctx_for(m), m, staff())
    assert isinstance(found, Person) and found.id == 2


def test_the_picker_offers_buttons_when_several_match() -> None:
    m = msg("thi")
    reply = PersonPicker().answer(ctx_for(m), m, staff())
    assert isinstance(reply, Reply)
    assert [b.payload for row in reply.buttons for b in row] == ["c:p1", "c:p3"]
    assert reply.buttons[0][0].label == "Lê Thị Hoa (Tổ 1)"


def test_the_pickers_buttons_are_capped() -> None:
    many = [Person(id=i, school_id=1, full_name=f"Nguyễn Văn {i}", roles=[]) for i in range(1, 30)]
    m = msg("nguyen")
    reply = PersonPicker(limit=5).answer(ctx_for(m), m, many)
    assert isinstance(reply, Reply) and len([b for row in reply.buttons for b in row]) == 5


def test_a_button_naming_someone_not_offered_is_refused() -> None:
    m = msg(payload="c:p99")
    reply = PersonPicker(not_listed=N_("That person is not in service at your school.")).answer(ctx_for(m), m,
                                                                                                 staff())
    assert isinstance(reply, Reply) and reply.text == "That person is not in service at your school."


def test_a_forged_person_button_finds_nobody() -> None:
    for forged in ("c:p²", "c:p-1", "c:p", "c:p1 "):
        m = msg(payload=forged)
        assert isinstance(PersonPicker().answer(ctx_for(m), m, staff()), Reply), forged


def test_the_picker_asks_the_workflows_own_search_when_no_name_matches() -> None:
    m = msg("vannt")
    found = PersonPicker().answer(ctx_for(m), m, staff(), also=lambda text: [staff()[1]] if text == "vannt" else [])
    assert isinstance(found, Person) and found.id == 2


# -- the confirm step -----------------------------------------------------------------------------
def _sent(ctx: Ctx) -> Step:
    """Records the request."""
    return Step.done(Reply("sent"))


def test_the_confirm_buttons_keep_the_workflows_labels_and_values() -> None:
    confirm = Confirm(send=N_("💾 Save"), send_value="save")
    buttons = confirm.buttons(ctx_for(msg(), "vi"))
    assert [(b.label, b.payload) for row in buttons for b in row] == [("💾 Lưu", "c:save"), ("Hủy", "c:cancel")]


def test_an_edit_button_sits_between_send_and_cancel() -> None:
    confirm = Confirm(edit=N_("🕘 Another time"), edit_value="retime")
    assert [b.payload for row in confirm.buttons(ctx_for(msg())) for b in row] == ["c:send", "c:retime", "c:cancel"]
    assert [b.payload for row in confirm.buttons(ctx_for(msg()), send=False) for b in row] == ["c:retime",
                                                                                                "c:cancel"]


def test_send_runs_the_workflows_action() -> None:
    step = Confirm().step(_sent)
    assert step(ctx_for(msg(payload="c:send")), msg(payload="c:send")).replies[0].text == "sent"


def test_cancel_ends_the_workflow_with_its_message() -> None:
    step = Confirm(cancelled=N_("Nothing was changed."), cancel_value="no").step(_sent)
    result = step(ctx_for(msg(payload="c:no")), msg(payload="c:no"))
    assert result.end and result.replies[0].text == "Nothing was changed."


def test_anything_else_asks_for_a_button() -> None:
    step = Confirm().step(_sent)
    result = step(ctx_for(msg("ok")), msg("ok"))
    assert not result.end and result.next is None and result.replies[0].text == "Please choose one of the buttons."


def test_the_edit_button_goes_back_to_the_workflows_step() -> None:
    step = Confirm(edit=N_("🕘 Another time"), edit_value="retime").step(
        _sent, on_edit=lambda ctx: Step.goto("time", Reply("when?")))
    assert step(ctx_for(msg(payload="c:retime")), msg(payload="c:retime")).next == "time"


def test_the_confirm_step_carries_the_actions_docstring() -> None:
    assert Confirm().step(_sent).__doc__ == "Records the request."
