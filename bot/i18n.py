"""Catalogues (gettext via Babel) and locale-aware formatting of dates, times, numbers and money.

Message texts use a tiny safe-HTML convention: catalogue strings may contain ``<b>``/``<i>``/``<code>``
tags, and every placeholder value is HTML-escaped when it is filled in, so user text can never
inject markup. Telegram sends the result with ``parse_mode=HTML``; other channels render or strip
the same tags.

Source strings (msgids) are English; ``locales/vi`` is the default catalogue and must translate
every one of them (a test checks it)."""

from __future__ import annotations

import datetime as dt
import html
import io
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_date as _bd_date
from babel.dates import format_datetime as _bd_datetime
from babel.dates import format_time as _bd_time
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_currency, format_decimal
from babel.support import NullTranslations, Translations

LOCALES_DIR = Path(__file__).resolve().parent.parent / "locales"
DOMAIN = "messages"
SUPPORTED = ("vi", "en")


def N_(msgid: str) -> str:
    """Mark a string for extraction without translating it now (translated where displayed)."""
    return msgid


class Markup(str):
    """A string that is already safe HTML (not escaped again when used as a placeholder value)."""


def escape(value: object) -> str:
    if isinstance(value, Markup):
        return str(value)
    return html.escape(str(value), quote=False)


@lru_cache(maxsize=8)
def _translations(locale: str) -> NullTranslations:
    po = LOCALES_DIR / locale / "LC_MESSAGES" / f"{DOMAIN}.po"
    if not po.exists():
        return NullTranslations()
    with po.open("rb") as fh:
        catalog = read_po(fh, locale=locale)
    buf = io.BytesIO()
    write_mo(buf, catalog, use_fuzzy=False)
    buf.seek(0)
    return Translations(fp=buf, domain=DOMAIN)


@lru_cache(maxsize=8)
def _babel_locale(locale: str) -> Locale:
    """Parsed once per process (a Translator is made for every event and every recipient)."""
    return Locale.parse(locale)


def reload_catalogues() -> None:
    _translations.cache_clear()


class Translator:
    """Everything a message needs to be shown to one person: language and time zone."""

    __slots__ = ("locale", "tz", "_tr", "_babel_locale")

    def __init__(self, locale: str = "vi", tz: str | ZoneInfo = "Asia/Ho_Chi_Minh") -> None:
        self.locale = locale if locale in SUPPORTED else "vi"
        self.tz = tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz)
        self._tr = _translations(self.locale)
        self._babel_locale = _babel_locale(self.locale)

    # -- messages ------------------------------------------------------------------------------
    def t(self, msgid: str, /, **values: Any) -> str:
        """Translate, then fill named placeholders (values are HTML-escaped)."""
        text = self._tr.gettext(msgid)
        if not values:
            return text
        return text.format(**{k: escape(v) for k, v in values.items()})

    def tn(self, singular: str, plural: str, n: int, /, **values: Any) -> str:
        text = self._tr.ngettext(singular, plural, n)
        values.setdefault("n", self.number(n))
        return text.format(**{k: escape(v) for k, v in values.items()})

    # -- formatting ----------------------------------------------------------------------------
    def local(self, when: dt.datetime) -> dt.datetime:
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        return when.astimezone(self.tz)

    def date(self, d: dt.date | dt.datetime, fmt: str = "dd/MM/yyyy") -> str:
        if isinstance(d, dt.datetime):
            d = self.local(d).date()
        return _bd_date(d, format=fmt, locale=self._babel_locale)

    def long_date(self, d: dt.date | dt.datetime) -> str:
        """``Thứ Sáu, 21 tháng 11, 2026``."""
        if isinstance(d, dt.datetime):
            d = self.local(d).date()
        return _bd_date(d, format="full", locale=self._babel_locale)

    def time(self, t: dt.time | dt.datetime, fmt: str = "HH:mm") -> str:
        """``08:30`` in the school's time zone (``fmt="HH:mm:ss"`` when seconds matter)."""
        if isinstance(t, dt.datetime):
            t = self.local(t).time()
        return _bd_time(t, format=fmt, locale=self._babel_locale)

    def datetime(self, when: dt.datetime) -> str:
        """``08:30 21/11/2026`` in the school's time zone."""
        return _bd_datetime(self.local(when), format="HH:mm dd/MM/yyyy", tzinfo=self.tz,
                            locale=self._babel_locale)

    def number(self, n: int | float | Decimal) -> str:
        return format_decimal(n, locale=self._babel_locale)

    def money(self, amount: int | float | Decimal, currency: str = "VND") -> str:
        """``30.000 ₫``."""
        return format_currency(amount, currency, locale=self._babel_locale)


def translator(locale: str | None, tz: str | ZoneInfo = "Asia/Ho_Chi_Minh") -> Translator:
    return Translator(locale or "vi", tz)
