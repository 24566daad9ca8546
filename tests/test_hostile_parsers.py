"""Hostile input, part 1: property tests of every parser of what people type or tap.

Each parser must be total — any string (any Unicode, NFC or NFD, huge, garbage) gives a valid
value or ``None``, never an exception — and the forms people really type must round-trip.
``tests/test_text.py`` holds the everyday examples; this file pushes the same functions (and the
workflows' own small parsers: minutes, quantities, months, school-year periods, ids in button
payloads, reminder schedules) with adversarial input."""

from __future__ import annotations

import os
import re
import unicodedata
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from bot.engine import approvals
from bot.engine.reminders import Continuous, DailyAt, EveryNDays, Monthly, Quarterly, Weekly
from bot.flows import calendar as calendar_flow
from bot.flows.accounts.email_names import NameEntry, assign, local_part
from bot.flows.articles.service import parse_month
from bot.flows.equipment import changes as equipment_flow
from bot.flows.equipment.xlsx import parse_period
from bot.flows.footage import steps as footage_flow
from bot.flows.incidents.report import parse_when
from bot.i18n import Translator
from bot.text import (
    MAX_ID,
    clean,
    display_phone,
    fold,
    mask_phone,
    normalize_email,
    normalize_phone,
    parse_date,
    parse_date_range,
    parse_id,
    parse_time,
)

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TZ = ZoneInfo("Asia/Ho_Chi_Minh")
VI = Translator("vi")
E164_VN = re.compile(r"^\+84[1-9][0-9]{8,9}$")

# Anything a person (or an attacker) can send: every code point class, combining marks, digits of
# other scripts (٣ ३ ８) and "digits" that are not decimal at all (² ①), long runs of spaces.
ODD = "²³①١٢٣٤٥٦٧٨٩०३８９\u0301\u0303\u0309\u0323\u00a0\u200b\u202e\ufeffĐđÐð"
hostile_text = st.one_of(
    st.text(),
    st.text(alphabet=st.sampled_from(list("0123456789 :.,/-hgHGpP'") + list(ODD)), max_size=40),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1000, max_size=3000),
)
realistic_days = st.dates(min_value=date(2000, 1, 1), max_value=date(2098, 12, 31))


def nfd(s: str) -> str:
    return unicodedata.normalize("NFD", s)


def nfc(s: str) -> str:
    return unicodedata.normalize("NFC", s)


# -- times ------------------------------------------------------------------------------------
@FAST
@given(hostile_text)
@example("８h３０")
@example("²h30")
@example("8h" + "0" * 5000)
@example("chiều sáng tối trưa")
def test_time_total_and_normalisation_blind(raw: str) -> None:
    result = parse_time(raw)
    assert result is None or isinstance(result, time)
    assert parse_time(nfd(raw)) == parse_time(nfc(raw)) == result


@FAST
@given(st.times(), st.sampled_from(["{h}h{m:02d}", "{h}:{m:02d}", "{h:02d}.{m:02d}", "{h} giờ {m}",
                                    "{h} gio {m} phut", "{h}g{m:02d}", "{h}H{m:02d}P", " {h} GIỜ {m} PHÚT "]))
def test_time_round_trip(t: time, form: str) -> None:
    text = form.format(h=t.hour, m=t.minute)
    expected = t.replace(second=0, microsecond=0)
    assert parse_time(text) == expected
    assert parse_time(nfd(text)) == expected
    assert parse_time(VI.time(t)) == expected  # what the bot itself shows parses back


@FAST
@given(st.integers(1, 11), st.integers(0, 59), st.sampled_from(["chiều", "chieu", "tối", "toi", "CHIỀU"]))
def test_time_afternoon_and_evening(h: int, m: int, part: str) -> None:
    assert parse_time(f"{h}h{m:02d} {part}") == time(h + 12, m)
    assert parse_time(nfd(f"{h} giờ {m} {part}")) == time(h + 12, m)
    assert parse_time(f"{h}h{m:02d} sáng") == time(h, m)


def test_time_parts_of_day_examples() -> None:
    assert parse_time("12h trưa") == time(12, 0)
    assert parse_time("1 giờ trưa") == time(13, 0)
    assert parse_time("8 giờ tối") == time(20, 0)
    assert parse_time("20h sáng") is None
    assert parse_time("8h sáng chiều") is None
    assert parse_time("٨h٣٠") == time(8, 30)  # Arabic-Indic digits are decimal digits
    assert parse_time("²h30") is None  # a superscript is not


# -- dates ------------------------------------------------------------------------------------
@FAST
@given(hostile_text, realistic_days)
@example("٢١/١١", date(2026, 11, 23))
@example("21/11/0000", date(2026, 11, 23))
@example("29/2", date(2027, 1, 1))
def test_date_total_and_normalisation_blind(raw: str, today: date) -> None:
    result = parse_date(raw, today=today)
    assert result is None or isinstance(result, date)
    assert parse_date(nfd(raw), today=today) == parse_date(nfc(raw), today=today) == result


@FAST
@given(realistic_days, realistic_days)
def test_date_round_trip(d: date, today: date) -> None:
    assert parse_date(VI.date(d), today=today) == d  # the bot's own dd/MM/yyyy
    assert parse_date(nfd(f" {d.day}-{d.month}-{d.year % 100:02d} "), today=today) == d
    if not (d.month == 2 and d.day == 29):
        assert parse_date(f"{d.day}/{d.month}", today=today) == d.replace(year=today.year)


@pytest.mark.parametrize(("word", "shift"), [("hôm nay", 0), ("Hôm Nay", 0), ("hom nay", 0), ("hôm qua", -1),
                                             ("ngày mai", 1), ("HÔM KIA", -2)])
def test_date_words_in_any_form(word: str, shift: int) -> None:
    today = date(2026, 11, 23)
    for form in (word, nfd(word), fold(word), f"  {word}  "):
        assert parse_date(form, today=today) == today + timedelta(days=shift), form


# -- date ranges ------------------------------------------------------------------------------
@FAST
@given(hostile_text, realistic_days)
@example("28/12 đến", date(2026, 11, 23))
@example("31/12/9999 - 1/1", date(2026, 11, 23))
def test_date_range_total(raw: str, today: date) -> None:
    result = parse_date_range(raw, today=today)
    assert result is None or (isinstance(result[0], date) and isinstance(result[1], date))
    assert parse_date_range(nfd(raw), today=today) == result
    if result is not None and result[1] < result[0]:
        # Only an end with its own year stays before the start (the caller refuses it); an end
        # without one rolls into the next year.
        assert re.search(r"\d\s*[/\-.]\s*\d+\s*[/\-.]\s*\d+\s*$", fold(raw)), (raw, result)


@FAST
@given(realistic_days, st.integers(0, 400),
       st.sampled_from(["từ {a} đến {b}", "tu {a} den {b}", "{a} - {b}", "{a}–{b}", "{a} — {b}", "{a} tới {b}",
                        "từ ngày {a} đến ngày {b}", "{a} -> {b}", "{a}-{b}"]))
def test_date_range_round_trip(start: date, days: int, form: str) -> None:
    end = start + timedelta(days=days)
    text = form.format(a=VI.date(start), b=VI.date(end))
    today = date(2026, 11, 23)
    assert parse_date_range(text, today=today) == (start, end), text
    assert parse_date_range(nfd(text), today=today) == (start, end), text


@FAST
@given(st.dates(min_value=date(2026, 1, 1), max_value=date(2026, 12, 31)), st.integers(0, 300))
def test_date_range_without_years_rolls_into_next_year(start: date, days: int) -> None:
    end = start + timedelta(days=days)
    assume(not (end.month == 2 and end.day == 29))
    for text in (f"từ {start.day}/{start.month} đến {end.day}/{end.month}",
                 f"{start.day:02d}/{start.month:02d} - {end.day:02d}/{end.month:02d}"):  # "20/12 - 05/01"
        assert parse_date_range(text, today=date(2026, 6, 1)) == (start, end), text


def test_date_range_examples() -> None:
    today = date(2026, 11, 23)
    assert parse_date_range("20/12 - 05/01", today=today) == (date(2026, 12, 20), date(2027, 1, 5))
    assert parse_date_range("từ 15/12 đến 10/10", today=today) == (date(2026, 12, 15), date(2027, 10, 10))
    assert parse_date_range("28/12/2026 - 3/1/27", today=today) == (date(2026, 12, 28), date(2027, 1, 3))
    # an end with its own year is taken as written (the caller refuses an end before the start)
    assert parse_date_range("28/11/2026 - 3/11/2026", today=today) == (date(2026, 11, 28), date(2026, 11, 3))


# -- phone numbers ----------------------------------------------------------------------------
national = st.one_of(
    st.builds(lambda p, r: p + r, st.sampled_from("35789"), st.text(alphabet="0123456789", min_size=8, max_size=8)),
    st.builds(lambda r: "2" + r, st.text(alphabet="0123456789", min_size=9, max_size=9)),  # landlines
)


@FAST
@given(st.one_of(hostile_text, st.text(alphabet="+0123456789 ().-/８٠١٢²", max_size=20)))
@example("+84 (0) 912 345 678")
@example("０９１２３４５６７８")
def test_phone_total_idempotent_and_e164(raw: str) -> None:
    result = normalize_phone(raw)
    assert result is None or E164_VN.match(result), result
    if result is not None:
        assert normalize_phone(result) == result
        assert normalize_phone(display_phone(result)) == result  # what the bot shows parses back


@FAST
@given(national)
def test_phone_every_written_form_is_one_number(n: str) -> None:
    local = "0" + n
    forms = [local, "+84" + n, "84" + n, "0084" + n, f"{local[:4]} {local[4:7]} {local[7:]}", nfd(f" {local} "),
             "".join(chr(ord(c) + 0xFEE0) for c in local), f"(+84) {n}", display_phone("+84" + n)]
    assert {normalize_phone(f) for f in forms} == {"+84" + n}


def _revealed(original: str, masked: str) -> int:
    """How many characters of ``original`` the mask shows (the common head and tail; no ``*`` in it)."""
    head = len(os.path.commonprefix([original, masked]))
    tail = len(os.path.commonprefix([original[::-1], masked[::-1]]))
    return min(len(original), head + tail)


@FAST
@given(national)
def test_mask_of_a_number_hides_most_of_it(n: str) -> None:
    phone = "+84" + n
    masked = mask_phone(phone)
    assert n not in masked and n[2:-3] not in masked
    assert sum(c.isdigit() for c in masked) <= 2 + 2 + 3  # "84", two national digits, the last three
    assert masked.endswith(n[-3:])  # still recognisable by its owner


@FAST
@given(st.one_of(st.text(alphabet=st.characters(exclude_characters="*"), max_size=30),
                 st.text(alphabet="0123456789+", max_size=14)))
@example("12345678")
@example("+1234567")
@example("0912345678")
def test_mask_of_anything_never_shows_more_than_half(raw: str) -> None:
    masked = mask_phone(raw)
    if not raw:
        assert masked == "-"
        return
    assert "*" in masked
    shown = _revealed(raw, masked)
    assert shown <= max(0, len(raw) - 4) and shown <= 8, (raw, masked)
    if len(raw) < 12:
        assert shown * 2 <= len(raw), (raw, masked)


# -- names and e-mail -------------------------------------------------------------------------
VI_NAME_LETTERS = ("aăâbcdđeêghiklmnoôơpqrstuưvxyĐ"
                   "áàảãạắằẳẵặấầẩẫậéèẻẽẹếềểễệíìỉĩịóòỏõọốồổỗộớờởỡợúùủũụứừửữựýỳỷỹỵ")
vi_word = st.text(alphabet=VI_NAME_LETTERS, min_size=1, max_size=8)
vi_name = st.lists(vi_word, min_size=1, max_size=5).map(lambda ws: " ".join(w.capitalize() for w in ws))


@FAST
@given(st.one_of(vi_name, hostile_text))
def test_fold_is_total_nfc_nfd_blind_and_idempotent(raw: str) -> None:
    f = fold(raw)
    assert f == fold(nfd(raw)) == fold(nfc(raw)) == fold(f)
    assert not any(unicodedata.combining(c) for c in f)
    assert "đ" not in f and "Đ" not in f
    assert clean(clean(raw)) == clean(raw) == clean(nfd(raw))


@FAST
@given(vi_name)
def test_name_matching_ignores_diacritics_case_and_d_stroke(name: str) -> None:
    plain = fold(name)
    variants = [name.upper(), name.lower(), nfd(name), name.replace("Đ", "Ð").replace("đ", "ð"),
                "  " + name.replace(" ", "   ") + " "]
    assert all(fold(v) == plain for v in variants)
    assert plain.isascii()


@FAST
@given(st.one_of(vi_name, hostile_text))
@example("Trần Văn Đức")
@example("Ðặng   Minh  Khoa")
def test_email_local_part_total_and_blind_to_form(name: str) -> None:
    lp = local_part(name)
    assert lp is None or re.fullmatch(r"[a-z]+", lp)
    assert local_part(nfd(name)) == lp
    if lp is not None and len(lp) <= 64:  # an e-mail local part has at most 64 characters
        assert normalize_email(lp + "@ngocthuy.edu.vn") == lp + "@ngocthuy.edu.vn"


def test_email_local_part_examples() -> None:
    assert local_part("Trần Văn Đức") == local_part("TRAN VAN DUC") == local_part("Ðức Văn Trần".split()[::-1][0]
                                                                                   + " Văn Đức") == "ductv"


@FAST
@given(st.lists(st.one_of(vi_name, st.sampled_from(["Nguyễn Thị Vân", nfd("Nguyễn Thị Vân"), "NGUYEN THI VAN"])),
                max_size=12),
       st.lists(st.sampled_from(["vannt@x.vn", "vannt1@x.vn", "ductv@x.vn"]), max_size=3))
def test_email_assignment_unique_and_never_taken(names: list[str], taken: list[str]) -> None:
    out = assign([NameEntry(i, n) for i, n in enumerate(names)], suffix="x.vn", taken=taken)
    addresses = list(out.values())
    assert len(addresses) == len(set(addresses))
    assert not set(addresses) & set(taken)
    assert all(normalize_email(a) == a for a in addresses)


@FAST
@given(hostile_text)
def test_email_total_and_idempotent(raw: str) -> None:
    e = normalize_email(raw)
    assert e is None or (normalize_email(e) == e and e.isascii() and len(e) <= 254)


# -- ids in button payloads -------------------------------------------------------------------
@FAST
@given(hostile_text)
@example("²")
@example("١٢")
@example("99999999999")
@example("-1")
@example(" 12")
def test_parse_id_total(raw: str) -> None:
    n = parse_id(raw)
    assert n is None or (0 <= n <= MAX_ID and raw.isascii() and int(raw) == n)


@FAST
@given(st.integers(0, MAX_ID))
def test_parse_id_round_trip(n: int) -> None:
    assert parse_id(str(n)) == n
    assert parse_id(str(n + MAX_ID + 1)) is None


@FAST
@given(st.one_of(hostile_text, st.builds(lambda i, a: f"ap:{i}:{a}", st.text(alphabet="0123456789²١", max_size=14),
                                         st.sampled_from(["ok", "no", "note", "x", ""]))))
@example("ap:²:ok")
@example("ap:99999999999:ok")
def test_approval_payload_total(raw: str) -> None:
    parsed = approvals.parse_payload(raw)
    assert parsed is None or (0 <= parsed[0] <= MAX_ID and parsed[1] in approvals.ACTIONS)


@FAST
@given(st.integers(1, MAX_ID), st.sampled_from(approvals.ACTIONS))
def test_approval_payload_round_trip(i: int, action: str) -> None:
    p = approvals.payload(i, action)
    assert len(p.encode()) <= 64
    assert approvals.parse_payload(p) == (i, action)


def test_incident_payload_refuses_superscript_digits() -> None:
    from bot.flows.incidents.service import parse_payload

    assert parse_payload("ic:²:ack") is None


def test_article_review_payload_refuses_superscript_digits() -> None:
    from bot.flows.articles.review import PREFIX, parse_payload

    assert parse_payload(f"{PREFIX}:²:fwd") is None


# -- the workflows' own small parsers: minutes, quantities, day numbers, months, periods, "when" --
@FAST
@given(st.integers(0, 999), st.sampled_from(["{n}", "{n}p", "{n} phút", "{n} phut", "{n} ph", "{n} min",
                                            " {n} MINUTES ", "{n}'"]))
def test_footage_minutes(n: int, form: str) -> None:
    text = fold(form.format(n=n))
    m = footage_flow._MINUTES.match(text)
    if form == "{n}'":
        assert m is None
    else:
        assert m is not None and int(m.group(1)) == n


@FAST
@given(st.integers(0, 999_999), st.sampled_from(["{n}", "{n} cái", "{n} chiếc", "{n} bộ", "{n} máy", "{n} units",
                                                " {n} PCS", "-{n}", "− {n} cái"]))
def test_equipment_quantity(n: int, form: str) -> None:
    text = fold(form.format(n=n))
    m = equipment_flow._NUMBER.match(text)
    assert m is not None and int(m.group(2)) == n
    assert bool(m.group(1)) == form.lstrip().startswith(("-", "−"))


@FAST
@given(hostile_text)
def test_quantity_minute_day_patterns_read_only_numbers(raw: str) -> None:
    for pattern, group in ((footage_flow._MINUTES, 1), (equipment_flow._NUMBER, 2), (calendar_flow._NUM, 1)):
        m = pattern.match(fold(raw))
        if m is not None:
            assert 0 <= int(m.group(group)) <= 999_999  # \d only takes decimal digits: int() cannot fail


@FAST
@given(hostile_text, realistic_days)
def test_month_and_period_total(raw: str, today: date) -> None:
    ym = parse_month(raw, today=today)
    assert ym is None or (2000 <= ym[0] <= 2100 and 1 <= ym[1] <= 12)
    assert parse_month(nfd(raw), today=today) == ym
    period = parse_period(raw, today=today, settings={})
    assert period is None or period.start <= period.end


@FAST
@given(st.integers(2000, 2100), st.integers(1, 12),
       st.sampled_from(["{m}/{y}", "{m:02d}-{y}", "tháng {m}/{y}", "THÁNG {m} / {y}", "{y}-{m:02d}", "thang {m}.{y}"]))
def test_month_round_trip(y: int, m: int, form: str) -> None:
    text = form.format(m=m, y=y)
    assert parse_month(text, today=date(2026, 11, 23)) == (y, m)
    assert parse_month(nfd(text), today=date(2026, 11, 23)) == (y, m)


@FAST
@given(st.integers(2000, 2098), st.sampled_from(["HK1 {a}-{b}", "hk 2 {a}-{bb}", "Học kỳ II {a}–{b}", "cả năm {a}/{b}",
                                                "{a}-{b}"]))
def test_period_round_trip(a: int, form: str) -> None:
    text = form.format(a=a, b=a + 1, bb=f"{(a + 1) % 100:02d}")
    p = parse_period(text, today=date(2026, 11, 23), settings={})
    assert p is not None and p.year == a and p.start <= p.end
    assert parse_period(nfd(text), today=date(2026, 11, 23), settings={}) == p


@FAST
@given(hostile_text, realistic_days)
def test_incident_when_total(raw: str, today: date) -> None:
    when = parse_when(raw, today=today, tz=TZ)
    assert when is None or when.tzinfo is TZ
    assert parse_when(nfd(raw), today=today, tz=TZ) == when


@FAST
@given(st.dates(min_value=date(2026, 1, 1), max_value=date(2026, 12, 31)), st.times(),
       st.sampled_from(["{d} {t}", "{t} {d}", "lúc {t} ngày {d}", "{t} ngay {d}"]))
def test_incident_when_round_trip(d: date, t: time, form: str) -> None:
    text = form.format(d=f"{d.day}/{d.month}", t=f"{t.hour}h{t.minute:02d}")
    expected = datetime.combine(d, time(t.hour, t.minute), tzinfo=TZ)
    assert parse_when(text, today=date(2026, 6, 1), tz=TZ) == expected
    assert parse_when(nfd(text), today=date(2026, 6, 1), tz=TZ) == expected


# -- reminder schedules -----------------------------------------------------------------------
local_moments = st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2040, 12, 31)).map(
    lambda d: d.replace(tzinfo=TZ))
days_off = st.frozensets(st.dates(min_value=date(2026, 1, 1), max_value=date(2041, 1, 31)), max_size=20)
hours = st.integers(-3, 30)  # a school's override may hold anything an old version stored
# Every schedule, with and without the working-day shift (Monthly and Weekly move back inside their
# month or week when the next working day would leave it), with random school days off.
schedules = st.one_of(
    st.builds(lambda d, h: (Monthly(day=d, hour=h, working_days=False), {}), st.integers(1, 28), st.integers(0, 23)),
    st.builds(lambda d, h: (Monthly(working_days=False), {"day": d, "hour": h}), st.integers(-5, 40), hours),
    st.builds(lambda d, h, w: (Quarterly(day=d, hour=h, working_days=w), {}), st.integers(1, 28), st.integers(0, 23),
              st.booleans()),
    st.builds(lambda d, h: (Quarterly(), {"day": d, "hour": h}), st.integers(-5, 40), hours),
    st.builds(lambda n, h, w: (EveryNDays(days=n, hour=h, working_days=w), {}), st.integers(1, 90),
              st.integers(0, 23), st.booleans()),
    st.builds(lambda n, h: (EveryNDays(), {"days": n, "hour": h}), st.integers(-3, 120), hours),
    st.builds(lambda hs, w: (DailyAt(working_days=w), {"hours": hs}), st.lists(hours, max_size=5), st.booleans()),
    st.builds(lambda wd, h: (Weekly(working_days=False), {"weekday": wd, "hour": h}), st.integers(-2, 9), hours),
    st.builds(lambda d, h: (Monthly(), {"day": d, "hour": h}), st.integers(1, 28), hours),
    st.builds(lambda wd, h: (Weekly(), {"weekday": wd, "hour": h}), st.integers(0, 6), hours),
    st.just((Continuous(), {})),
)


@FAST
@given(schedules, local_moments, days_off, st.floats(0, 1))
def test_schedule_occurrence_is_past_next_is_future_and_period_is_stable(
        sched_p: tuple[object, dict[str, object]], now: datetime, off: frozenset[date], frac: float) -> None:
    sched, p = sched_p
    assert isinstance(sched, Monthly | Quarterly | EveryNDays | DailyAt | Weekly | Continuous)
    occ = sched.occurrence(now, p, off)
    nxt = sched.next_at(now, p, off)
    if occ is not None:
        assert occ.at <= now
        # any moment between the start of this occurrence and now belongs to the same period
        mid = occ.at + (now - occ.at) * frac
        again = sched.occurrence(mid, p, off)
        if sched.periodic:
            assert again is not None and again.period == occ.period, (occ, mid, again)
        assert sched.occurrence(now, p, off) == occ  # deterministic
    if nxt is not None:
        assert nxt > now
        if sched.periodic:
            # the next occurrence really happens then: nothing is announced that never fires
            at_next = sched.occurrence(nxt, p, off)
            assert at_next is not None and at_next.at == nxt, (now, nxt, at_next)
            assert at_next.period != (occ.period if occ else None)
    else:
        assert not sched.periodic or isinstance(sched, DailyAt)


def test_weekly_rule_on_saturday_fires() -> None:
    w = Weekly(weekday=5, hour=8)
    start = datetime(2026, 11, 23, 0, tzinfo=TZ)
    periods = {o.period for i in range(0, 24 * 28) if (o := w.occurrence(start + timedelta(hours=i), {}, frozenset()))}
    assert len(periods) >= 3


def test_monthly_rule_on_28th_fires_in_february_2026() -> None:
    m = Monthly(day=28, hour=8)
    start = datetime(2026, 2, 1, 0, tzinfo=TZ)
    periods = {o.period for i in range(0, 24 * 40) if (o := m.occurrence(start + timedelta(hours=i), {}, frozenset()))}
    assert "2026-02" in periods
