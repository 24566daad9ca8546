"""Parsing of what people type: diacritic folding, phone numbers, roles, dates and times.

Everything here is pure and total: bad input gives ``None`` (or raises ``ValueError`` with a
catalogue key), never an unexpected exception."""

from __future__ import annotations

import re
import unicodedata
from datetime import date, time

_WS = re.compile(r"\s+")
_D_STROKE = str.maketrans({"đ": "d", "Đ": "D", "ð": "d", "Ð": "D"})


def nfc(s: str) -> str:
    return unicodedata.normalize("NFC", s)


# -- what comes in from outside ---------------------------------------------------------------
# Removed: C0 controls but tab and newline, DEL, C1 controls; the bidi embeddings, overrides and
# isolates (U+202A–U+202E, U+2066–U+2069) and marks (U+200E, U+200F, U+061C), which can make
# "abc\u202Egnp.exe" read "abcexe.png" on a card; the BOM / zero-width no-break space (U+FEFF);
# lone surrogates (a JSON body can carry "\ud800", which no database can store).
# Turned into "\n": CR LF, a lone CR, NEL (U+0085), LINE and PARAGRAPH SEPARATOR (U+2028, U+2029).
# Kept: tab, newline, every printable character, the zero-width joiner / non-joiner (emoji and
# some scripts need them).
_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ufeff\ud800-\udfff]")
_BREAK = re.compile(r"\r\n?|[\x85\u2028\u2029]")
_DROP = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff"
                   r"\ud800-\udfff]")


def sanitize(s: str) -> str:
    """Text from outside (a message, a caption, a button's data, a name, a spreadsheet cell) made
    safe to store and to show: control and bidi-override characters removed, line breaks made
    ``\\n``, NFC. Nothing is trimmed; an all-control string becomes ``""``.

    Runs on every update, so the usual case (nothing to remove, already NFC) is one regex scan and
    one NFC quick check."""
    if _UNSAFE.search(s) is not None:
        s = _DROP.sub("", _BREAK.sub("\n", s))
    if s.isascii() or unicodedata.is_normalized("NFC", s):
        return s
    return unicodedata.normalize("NFC", s)


def sanitize_line(s: str) -> str:
    """:func:`sanitize` for what is one line by nature (a name, a file name, an id, a button's data):
    line breaks and tabs become spaces, so a name cannot add lines of its own to a card."""
    s = sanitize(s)
    if "\n" in s or "\t" in s:
        s = s.replace("\n", " ").replace("\t", " ")
    return s


def clean(s: str) -> str:
    """NFC-normalise, trim and collapse inner whitespace."""
    return _WS.sub(" ", nfc(s)).strip()


def fold(s: str) -> str:
    """Lower-case, strip Vietnamese diacritics (đ → d) and collapse spaces, for forgiving matching."""
    # U+00D0/U+00F0 (Ð/ð) stand in for Đ/đ in text from old converters and Latin-1 files.
    s = unicodedata.normalize("NFD", s.translate(_D_STROKE))
    s = "".join(ch for ch in s if not unicodedata.combining(ch))
    return _WS.sub(" ", s.lower()).strip()


# -- phone numbers ----------------------------------------------------------------------------
_PHONE_STRIP = re.compile(r"[\s().\-/]")


def normalize_phone(raw: str | None) -> str | None:
    """Return a Vietnamese number in E.164 (``+84912345678``), or ``None`` if it is not one.

    Accepts ``0912 345 678``, ``+84 912 345 678``, ``84912345678``, ``0084912345678``,
    ``(091) 234-5678``."""
    if not raw:
        return None
    # NFKC turns full-width digits and plus signs (some phone keyboards) into ASCII.
    s = unicodedata.normalize("NFKC", str(raw)).strip()
    if s.endswith(".0") and s[:-2].isdigit():  # numbers read from spreadsheets as floats
        s = s[:-2]
    s = _PHONE_STRIP.sub("", s)
    if s.startswith("+"):
        s = s[1:]
        if not s.startswith("84"):
            return None
    elif s.startswith("0084"):
        s = s[2:]
    if not (s.isascii() and s.isdigit()):
        return None
    if s.startswith("840") and len(s) in (12, 13):  # "+84 (0) 912 345 678": trunk zero kept
        s = "84" + s[3:]
    if s.startswith("84") and len(s) in (11, 12) and s[2] != "0":
        national = s[2:]
    elif s.startswith("0") and len(s) in (10, 11):
        national = s[1:]
    elif len(s) == 9 and s[0] in "35789":  # leading zero lost in a spreadsheet
        national = s
    else:
        return None
    # Since 2018 mobiles are 9 digits after the 0 (03x 05x 07x 08x 09x) and landlines 10 (02x):
    # anything else is a typo (e.g. one digit too many), not a number.
    if not ((len(national) == 9 and national[0] in "35789") or (len(national) == 10 and national[0] == "2")):
        return None
    return "+84" + national


def mask_phone(phone: str | None) -> str:
    """For logs and other people's eyes: ``+84912345678`` → ``+8491****678``.

    Only an E.164 number (12 or more characters) shows its first five and last three; anything
    shorter (a number typed by hand, a foreign one) shows at most its last two, so at least half of
    it stays hidden whatever it is."""
    if not phone:
        return "-"
    if len(phone) < 12:
        return "***" + phone[-2:] if len(phone) >= 6 else "***"
    return phone[:5] + "****" + phone[-3:]


def display_phone(phone: str | None) -> str:
    """``+84912345678`` → ``0912 345 678`` (how people here write it)."""
    if not phone or not phone.startswith("+84"):
        return phone or ""
    n = "0" + phone[3:]
    return f"{n[:4]} {n[4:7]} {n[7:]}" if len(n) == 10 else n


# -- ids in button payloads -------------------------------------------------------------------
MAX_ID = 2_147_483_647  # primary keys are PostgreSQL ``integer`` columns


def parse_id(raw: str | None) -> int | None:
    """``"12"`` → 12; anything else → ``None``: empty, signs, spaces, non-ASCII digits (``str.isdigit``
    accepts ``²`` and ``١``, which ``int()`` refuses or reads) and numbers beyond a database id (a
    forged ``ap:99999999999:ok`` must not reach PostgreSQL, which refuses it with an error)."""
    if not raw or len(raw) > 10 or not (raw.isascii() and raw.isdigit()):
        return None
    n = int(raw)
    return n if n <= MAX_ID else None


# -- e-mail -----------------------------------------------------------------------------------
_EMAIL = re.compile(r"^[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9\-]+(\.[A-Za-z0-9\-]+)+$")


def normalize_email(raw: str | None) -> str | None:
    if not raw:
        return None
    s = nfc(raw).strip().lower()
    if len(s) > 254 or not _EMAIL.match(s) or ".." in s:
        return None
    return s


# -- dates and times --------------------------------------------------------------------------
_TIME = re.compile(
    r"^\s*(\d{1,2})\s*(?:h|g|gio|:|\.|giờ)\s*(\d{1,2})?\s*(?:p|ph|phut|phút|')?\s*$", re.IGNORECASE)
_TIME_HOUR_ONLY = re.compile(r"^\s*(\d{1,2})\s*$")


_PART_OF_DAY = re.compile(r"\s*(sang|chieu|toi|trua)\s*")


def parse_time(raw: str | None) -> time | None:
    """``8h30``, ``8:30``, ``08.30``, ``8 giờ 30``, ``8h``, ``20h15``, ``8 giờ``, ``2 giờ chiều``,
    ``8 giờ tối``, ``12 giờ trưa`` → :class:`time`."""
    if not raw:
        return None
    s = fold(raw)
    parts = _PART_OF_DAY.findall(s)
    if len(set(parts)) > 1:
        return None  # "8h sáng chiều"
    part = parts[0] if parts else ""
    s = _PART_OF_DAY.sub(" ", s).strip()
    m = _TIME.match(s) or _TIME_HOUR_ONLY.match(s)
    if not m:
        return None
    hour = int(m.group(1))
    minute = int(m.group(2)) if m.lastindex and m.lastindex >= 2 and m.group(2) else 0
    if part == "sang" and hour > 12:
        return None  # "20h sáng"
    if part in ("chieu", "toi") and hour < 12:
        hour += 12
    elif part == "trua" and hour <= 2:  # "1 giờ trưa" is 13:00; "11h trưa" and "12h trưa" stay
        hour += 12
    if not (0 <= hour <= 23 and 0 <= minute <= 59):
        return None
    return time(hour, minute)


_DATE = re.compile(r"^\s*(\d{1,2})\s*[/\-.]\s*(\d{1,2})(?:\s*[/\-.]\s*(\d{2}|\d{4}))?\s*$")


def parse_date(raw: str | None, *, today: date) -> date | None:
    """``21/11``, ``21/11/2026``, ``21-11-26``, ``hôm nay``, ``hôm qua``, ``ngày mai`` → date."""
    if not raw:
        return None
    s = fold(raw)
    from datetime import timedelta

    words = {"hom nay": 0, "homnay": 0, "hnay": 0, "hom qua": -1, "homqua": -1, "ngay mai": 1, "mai": 1,
             "hom kia": -2}
    if s in words:
        return today + timedelta(days=words[s])
    m = _DATE.match(s)
    if not m:
        return None
    day, month = int(m.group(1)), int(m.group(2))
    year = today.year
    if m.group(3):
        year = int(m.group(3))
        if year < 100:
            year += 2000
    try:
        return date(year, month, day)
    except ValueError:
        return None


_RANGE_SPLIT = re.compile(r"\s+(?:den|toi|->|–|—|-)\s+|\s*(?:den|->|–|—)\s*")


def parse_date_range(raw: str | None, *, today: date) -> tuple[date, date] | None:
    """``từ 24/11 đến 28/11``, ``24/11 - 28/11``, ``24/11–28/11/2026``, or one date → (start, end).

    A range whose end is earlier than its start but would fit next year (``28/12 đến 3/1``) rolls
    the end into the next year."""
    if not raw:
        return None
    s = fold(raw)
    for word in ("tu ngay", "tu", "ngay"):
        if s.startswith(word + " "):
            s = s[len(word) + 1:]
            break
    s = s.replace("den ngay", "den")
    parts = [p.strip() for p in _RANGE_SPLIT.split(s, maxsplit=1) if p and p.strip()]
    if len(parts) == 1:
        m = re.match(r"^(\d{1,2}/\d{1,2}(?:/\d{2,4})?)\s*-\s*(\d{1,2}/\d{1,2}(?:/\d{2,4})?)$", parts[0])
        if m:
            parts = [m.group(1), m.group(2)]
    if len(parts) == 1:
        d = parse_date(parts[0], today=today)
        return (d, d) if d else None
    if len(parts) != 2:
        return None
    start = parse_date(parts[0], today=today)
    end = parse_date(parts[1], today=today)
    if start is None or end is None:
        return None
    m_end = _DATE.match(parts[1])
    if end < start and not (m_end and m_end.group(3)):  # an end without its own year rolls over
        try:
            end = end.replace(year=end.year + 1)
        except ValueError:
            return None
    return start, end
