"""The users' language (PM_ORDER_LANGUAGE): its gettext catalog, and dates,
numbers and durations written as its readers write them.

English is the source language: the messages in the code are the msgids, so `en`
needs no catalog. Every other language is one catalog,
`language/locale/<code>/LC_MESSAGES/pm_order.po`, compiled to `.mo` by
`make install`: a third language is a new catalog, not a code change. Only what
people read is translated: the REST contract's strings never pass through here.
"""

from __future__ import annotations

import gettext
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cache
from pathlib import Path
from typing import Final

from babel import Locale
from babel.dates import format_date, format_datetime
from babel.numbers import format_decimal

DOMAIN: Final = "pm_order"
LOCALE_DIR: Final = Path(__file__).resolve().parent / "locale"
SOURCE: Final = "en"


def N_(message: str) -> str:
    """Marks `message` for the catalog where it is defined; translated where shown."""
    return message


class LanguageUnknown(ValueError):
    """PM_ORDER_LANGUAGE names a language that has no catalog."""


def available() -> list[str]:
    """The source language and every language with a compiled catalog."""
    compiled = (
        path.parents[1].name for path in LOCALE_DIR.glob(f"*/LC_MESSAGES/{DOMAIN}.mo")
    )
    return sorted({SOURCE, *compiled})


@dataclass(frozen=True)
class Language:
    """One language: its messages, and its way with dates, numbers, durations."""

    code: str
    catalog: gettext.NullTranslations = field(repr=False, compare=False)
    locale: Locale = field(repr=False, compare=False)

    @staticmethod
    @cache
    def named(code: str) -> Language:
        """The language `code` (`en`, `zh_CN`); LanguageUnknown without a catalog."""
        known = available()
        if code not in known:
            raise LanguageUnknown(
                f"{code!r} is not a language of pm-order: {', '.join(known)}"
            )
        catalog = (
            gettext.NullTranslations()
            if code == SOURCE
            else gettext.translation(DOMAIN, LOCALE_DIR, [code])
        )
        return Language(code, catalog, Locale.parse(code))

    @property
    def tag(self) -> str:
        """The BCP 47 tag, for `<html lang>`: zh-CN, en."""
        return self.code.replace("_", "-")

    def gettext(self, message: str, **values: object) -> str:
        """`message` in this language, its {placeholders} filled with `values`."""
        return self.catalog.gettext(message).format(**values)

    def ngettext(self, singular: str, plural: str, count: int, **values: object) -> str:
        """The form of `singular`/`plural` for `count`, which fills {count}."""
        chosen = self.catalog.ngettext(singular, plural, count)
        return chosen.format(count=self.number(count), **values)

    def number(self, value: int) -> str:
        """A whole number with this language's digit grouping: 1,234."""
        return format_decimal(value, locale=self.locale)

    def moment(self, when: datetime) -> str:
        """A date and time to the second, in `when`'s own zone."""
        pattern = self.gettext(N_("yyyy-MM-dd HH:mm:ss"))
        return format_datetime(when, pattern, tzinfo=when.tzinfo, locale=self.locale)

    def minute(self, when: datetime) -> str:
        """A date and time to the minute, with the zone's short name."""
        pattern = self.gettext(N_("yyyy-MM-dd HH:mm z"))
        return format_datetime(when, pattern, tzinfo=when.tzinfo, locale=self.locale)

    def day(self, day: date) -> str:
        """A day of the month, short, for a chart's axis: 4 Dec, 12月4日."""
        return format_date(day, self.gettext(N_("d MMM")), locale=self.locale)

    def duration(self, seconds: float | None) -> str:
        """A time to decision: 45s, 12m 30s, 2h 05m, 3d 04h (two units at most)."""
        if seconds is None:
            return "-"
        whole = round(seconds)
        if whole < 60:
            return self.gettext(N_("{seconds}s"), seconds=whole)
        if whole < 3600:
            return self.gettext(
                N_("{minutes}m {seconds}s"),
                minutes=whole // 60,
                seconds=f"{whole % 60:02d}",
            )
        if whole < 86400:
            return self.gettext(
                N_("{hours}h {minutes}m"),
                hours=whole // 3600,
                minutes=f"{whole % 3600 // 60:02d}",
            )
        return self.gettext(
            N_("{days}d {hours}h"),
            days=whole // 86400,
            hours=f"{whole % 86400 // 3600:02d}",
        )


ENGLISH: Final = Language.named(SOURCE)


def width(text: str) -> int:
    """Columns `text` takes in a terminal or a monospaced mail: CJK counts two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def ljust(text: str, columns: int) -> str:
    """`text` padded on the right to `columns` terminal columns."""
    return text + " " * (columns - width(text))


def rjust(text: str, columns: int) -> str:
    """`text` padded on the left to `columns` terminal columns."""
    return " " * (columns - width(text)) + text
