"""Property tests of the parsers of what people type (bot/text.py, bot/roles.py)."""

from __future__ import annotations

import re
import unicodedata
from datetime import date, time, timedelta

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bot.roles import Role, parse_role, parse_roles
from bot.text import clean, fold, mask_phone, normalize_email, normalize_phone, parse_date, parse_time

E164_VN = re.compile(r"^\+84[1-9][0-9]{8,9}$")
TODAY = date(2026, 11, 23)

# -- phone numbers ----------------------------------------------------------------------------
mobile = st.builds(lambda p, rest: p + rest, st.sampled_from(["3", "5", "7", "8", "9"]),
                   st.text(alphabet="0123456789", min_size=8, max_size=8))


def _grouped(digits: str, sep: str) -> str:
    return sep.join([digits[:4], digits[4:7], digits[7:]])


def _formats(national: str) -> list[str]:
    local = "0" + national
    full_width = "".join(chr(ord(c) + 0xFEE0) for c in local)
    return [
        local, "+84" + national, "84" + national, "0084" + national, "+84 " + national,
        _grouped(local, " "), _grouped(local, "."), _grouped(local, "-"),
        f"+84 {national[:3]} {national[3:6]} {national[6:]}", f"+84 (0) {national}", f"(+84) {national}",
        f"({local[:3]}) {local[3:6]}-{local[6:]}", f" {local}\t", national, national + ".0", full_width,
        "+84-" + national[:2] + "-" + national[2:],
    ]


@given(mobile)
@example("912345678")
def test_all_formats_of_a_number_normalise_equal(national: str) -> None:
    results = {f: normalize_phone(f) for f in _formats(national)}
    assert set(results.values()) == {"+84" + national}, results


@given(st.integers(min_value=300_000_000, max_value=999_999_999))
def test_spreadsheet_numbers_lost_their_zero(n: int) -> None:
    if str(n)[0] not in "35789":
        return
    assert normalize_phone(str(n)) == normalize_phone(str(float(n))) == "+84" + str(n)


@given(st.one_of(st.text(), st.text(alphabet="+0123456789 ().-/٠١٢٣٤٥٦٧٨٩²"), st.none()))
@example("+840")
@example("+84 (0)")
@example("0084")
@example("٠٩١٢٣٤٥٦٧٨")
@example("84٩١٢٣٤٥٦٧٨")
def test_phone_garbage_never_raises_and_output_is_e164(raw: str | None) -> None:
    result = normalize_phone(raw)
    assert result is None or E164_VN.match(result), result
    if result is not None:
        assert normalize_phone(result) == result  # idempotent
        assert result[3:] not in mask_phone(result)


@pytest.mark.parametrize("raw", ["", "abc", "12345", "+1 202 555 0100", "0012345678", "091234567890123",
                                 "+84 012 345 678", "09a2345678", "0912345678.5"])
def test_not_phone_numbers(raw: str) -> None:
    assert normalize_phone(raw) is None


def test_landline_and_mask() -> None:
    assert normalize_phone("024 3987 6543") == "+842439876543"
    assert mask_phone("+84912345678") == "+8491****678"
    assert mask_phone(None) == "-"


# -- times ------------------------------------------------------------------------------------
def _time_forms(h: int, m: int) -> list[str]:
    nfd_gio = unicodedata.normalize("NFD", "giờ")
    return [f"{h}h{m:02d}", f"{h}h{m}", f"{h}:{m:02d}", f"{h:02d}.{m:02d}", f"{h} giờ {m}", f"{h} gio {m}",
            f"{h} {nfd_gio} {m}", f"{h}H{m:02d}", f" {h} h {m:02d} ", f"{h} giờ {m} phút", f"{h}g{m:02d}"]


@given(st.integers(0, 23), st.integers(0, 59))
def test_time_forms(h: int, m: int) -> None:
    for form in _time_forms(h, m):
        assert parse_time(form) == time(h, m), form


@pytest.mark.parametrize(("raw", "expected"), [
    ("8h30", time(8, 30)), ("8:30", time(8, 30)), ("08.30", time(8, 30)), ("8 giờ 30", time(8, 30)),
    ("8 gio 30", time(8, 30)), ("20h", time(20, 0)), ("8h", time(8, 0)), ("20h15", time(20, 15)),
    ("8 giờ", time(8, 0)), ("2 giờ chiều", time(14, 0)), ("0h00", time(0, 0)), ("23:59", time(23, 59)),
    ("25h", None), ("8h75", None), ("24:00", None), ("", None), (None, None), ("tám giờ", None),
    ("8h30h", None), ("-1h", None),
])
def test_time_examples(raw: str | None, expected: time | None) -> None:
    assert parse_time(raw) == expected


@given(st.integers(24, 99), st.integers(0, 59))
def test_invalid_hours(h: int, m: int) -> None:
    assert parse_time(f"{h}h{m:02d}") is None
    assert parse_time(f"{h}:{m:02d}") is None


@given(st.integers(0, 23), st.integers(60, 99))
def test_invalid_minutes(h: int, m: int) -> None:
    assert parse_time(f"{h}h{m}") is None


@given(st.text())
def test_time_garbage_never_raises(raw: str) -> None:
    result = parse_time(raw)
    assert result is None or isinstance(result, time)


# -- dates ------------------------------------------------------------------------------------
@given(st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31)))
def test_date_forms(d: date) -> None:
    for form in (f"{d.day}/{d.month}/{d.year}", f"{d.day:02d}/{d.month:02d}/{d.year}",
                 f"{d.day}-{d.month}-{d.year % 100:02d}", f"{d.day}.{d.month}.{d.year}",
                 f" {d.day} / {d.month} / {d.year} "):
        assert parse_date(form, today=TODAY) == d, form
    if not (d.month == 2 and d.day == 29):
        assert parse_date(f"{d.day}/{d.month}", today=TODAY) == d.replace(year=TODAY.year)


@pytest.mark.parametrize(("raw", "expected"), [
    ("21/11", date(2026, 11, 21)), ("21/11/2026", date(2026, 11, 21)), ("21-11-26", date(2026, 11, 21)),
    ("hôm nay", TODAY), ("Hôm nay", TODAY), (unicodedata.normalize("NFD", "hôm qua"), TODAY - timedelta(days=1)),
    ("hom qua", TODAY - timedelta(days=1)), ("ngày mai", TODAY + timedelta(days=1)),
    ("29/02/2024", date(2024, 2, 29)),
    ("31/02", None), ("31/02/2026", None), ("29/02/2025", None), ("32/1", None), ("0/1", None), ("1/13", None),
    ("21/11/202", None), ("", None), (None, None), ("hôm xưa", None), ("21/11/2026/1", None),
])
def test_date_examples(raw: str | None, expected: date | None) -> None:
    assert parse_date(raw, today=TODAY) == expected


@given(st.text(), st.dates())
def test_date_garbage_never_raises(raw: str, today: date) -> None:
    result = parse_date(raw, today=today)
    assert result is None or isinstance(result, date)


# -- folding and cleaning ---------------------------------------------------------------------
VI_LETTERS = ("aăâbcdđeêghiklmnoôơpqrstuưvxyAĂÂBCDĐEÊGHIKLMNOÔƠPQRSTUƯVXY"
              "áàảãạắằẳẵặấầẩẫậéèẻẽẹếềểễệíìỉĩịóòỏõọốồổỗộớờởỡợúùủũụứừửữựýỳỷỹỵ"
              "ÁÀẢÃẠẮẰẲẴẶẤẦẨẪẬÉÈẺẼẸẾỀỂỄỆÍÌỈĨỊÓÒỎÕỌỐỒỔỖỘỚỜỞỠỢÚÙỦŨỤỨỪỬỮỰÝỲỶỸỴ ")
vi_text = st.text(alphabet=VI_LETTERS, max_size=40)


@given(st.text())
@example("Nguyễn Thị Vân")
def test_fold_nfc_equals_nfd(s: str) -> None:
    assert fold(unicodedata.normalize("NFC", s)) == fold(unicodedata.normalize("NFD", s))


@given(vi_text)
def test_fold_vietnamese_is_plain_ascii_and_idempotent(s: str) -> None:
    folded = fold(s)
    assert folded.isascii()
    assert fold(folded) == folded
    assert folded == folded.lower().strip()
    assert "  " not in folded


def test_fold_examples() -> None:
    assert fold("  Trần   ĐỨC  ") == "tran duc"
    assert fold("Ðinh Văn Ðức") == "dinh van duc"  # U+00D0 from old converters
    assert fold("Uỷ viên") == fold("Ủy viên") == "uy vien"


@given(vi_text)
def test_clean_is_nfc_and_trimmed(s: str) -> None:
    c = clean(unicodedata.normalize("NFD", "  " + s + "\u00a0"))
    assert c == unicodedata.normalize("NFC", c)
    assert c == c.strip() and "  " not in c


def test_email() -> None:
    assert normalize_email(" VanNT@ThuongThanh.edu.vn ") == "vannt@thuongthanh.edu.vn"
    for bad in ("", "van", "van@", "@x.vn", "van@x", "van..nt@x.vn", "văn@x.vn", "a b@x.vn"):
        assert normalize_email(bad) is None, bad


# -- roles ------------------------------------------------------------------------------------
VI_TITLES: dict[Role, str] = {
    Role.PRINCIPAL: "Hiệu trưởng", Role.VICE_PRINCIPAL: "Phó hiệu trưởng",
    Role.BOARD_HEAD: "Trưởng ban biên tập", Role.BOARD_MEMBER: "Ủy viên ban quản trị",
    Role.SECRETARY: "Thư ký ban biên tập", Role.DEPT_HEAD: "Tổ trưởng chuyên môn", Role.TEACHER: "Giáo viên",
    Role.GUARD: "Bảo vệ", Role.GUARD_LEAD: "Trưởng phòng bảo vệ", Role.IT: "Nhân viên CNTT",
    Role.EQUIPMENT: "Nhân viên thiết bị", Role.ACCOUNTANT: "Kế toán", Role.CLERK: "Văn thư", Role.NURSE: "Y tế",
    Role.STAFF: "Nhân viên",
}


def _role_forms(role: Role) -> list[str]:
    title = VI_TITLES[role]
    return [role.value, role.value.upper(), role.value.replace("_", " "), role.value.replace("_", "-"),
            title, title.upper(), title.lower(), unicodedata.normalize("NFD", title), fold(title),
            f"  {title}  "]


def test_every_role_has_a_title_here() -> None:
    assert set(VI_TITLES) == set(Role)


@given(st.lists(st.tuples(st.sampled_from(list(Role)), st.integers(0, 9)), min_size=1, max_size=6),
       st.sampled_from([",", ";", ", ", " ; ", "\n", "/", ";\n"]))
def test_parse_roles_any_form_any_separator(picks: list[tuple[Role, int]], sep: str) -> None:
    raw = sep.join(_role_forms(role)[i] for role, i in picks)
    roles, unknown = parse_roles(raw)
    assert unknown == []
    expected: list[Role] = []
    for role, _ in picks:
        if role not in expected:
            expected.append(role)
    assert roles == expected


@pytest.mark.parametrize(("raw", "roles", "unknown"), [
    ("Giáo viên; Tổ trưởng", [Role.TEACHER, Role.DEPT_HEAD], []),
    ("giao vien, to truong", [Role.TEACHER, Role.DEPT_HEAD], []),
    ("GVCN, Giáo viên", [Role.TEACHER], []),
    ("Hiệu trưởng, Phù thủy", [Role.PRINCIPAL], ["Phù thủy"]),
    (" ; , ", [], []),
    ("", [], []),
    ("principal;vice_principal", [Role.PRINCIPAL, Role.VICE_PRINCIPAL], []),
])
def test_parse_roles_examples(raw: str, roles: list[Role], unknown: list[str]) -> None:
    assert parse_roles(raw) == (roles, unknown)


@given(st.text())
@settings(max_examples=200)
def test_parse_roles_never_raises(raw: str) -> None:
    roles, unknown = parse_roles(raw)
    assert all(isinstance(r, Role) for r in roles)
    assert all(u and u == u.strip() for u in unknown)
    assert parse_role(raw) is None or isinstance(parse_role(raw), Role)
