"""Dates as chat exporters write them in their users' locales.

``1/6/2023 2:22 PM``, ``06/01/2023 14:22``, ``06-Jan-23 02:22 PM``, ``2023-01-06 14:22``, ISO,
``05.05.23, 15:48:11``, ``01/01/2019, 11:25 a. m.``, ``13. 6. 2018``. Whether ``1/6`` is January 6 or June 1 is
decided from the whole file (a part above 12 can only be a day), never guessed: a file that
cannot tell is an error that asks for the date order (``date_format``: dmy, mdy or ymd).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import orjson

from ..errors import SourceParamError

_NUMERIC = re.compile(r"^(\d{1,4})[./-] ?(\d{1,2})[./-] ?(\d{1,4})$")  # "13. 6. 2018" (hr, hu, cs) too
_MONTH_NAME = re.compile(r"^(\d{1,2})[ -]([A-Za-z]{3,9})\.?[ -](\d{2,4})$")
# A time as written ("14.22" too: fi-FI, da-DK), odd spaces included ("\s" takes U+202F and U+00A0; "_" is seen too): the
# same times as ``clean_time`` then a plain pattern, without making the cleaned copy first.
_TIME = re.compile(r"[\s_]*(\d{1,2})[:.](\d{2})(?:[:.](\d{2})(?:\.\d+)?)?[\s_]*(?:([AaPp])\.?[\s_]?[Mm]\.?)?[\s_]*")
_MONTHS = {m: i for i, m in enumerate(["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1)}


def iso(when: datetime) -> str:
    """``when.isoformat()``, for a third of its cost: orjson writes the same text (tested), except
    for a UTC offset with seconds (no chat app's), which it rounds; those go to isoformat."""
    zone = when.tzinfo
    if zone is not None and zone is not UTC and (when.utcoffset() or timedelta()).seconds % 60:
        return when.isoformat()
    return orjson.dumps(when)[1:-1].decode()


def clean_time(text: str) -> str:
    """Exporters put odd spaces in times: U+202F, U+00A0, '_' (seen in WhatsApp exports)."""
    return text.replace("\u202f", " ").replace("\u00a0", " ").replace("_", " ").strip()


def detect_order(dates: Iterable[str], forced: str | None, *, file: str) -> str:
    """``dmy``, ``mdy`` or ``ymd`` for the numeric dates of a whole file."""
    day_first = month_first = False
    year_first = numeric = False
    for d in dates:
        m = _NUMERIC.match(d)
        if not m:
            continue
        numeric = True
        a, b = int(m[1]), int(m[2])
        if len(m[1]) == 4:
            year_first = True
        elif a > 12:
            day_first = True
        elif b > 12:
            month_first = True
    if day_first and month_first and forced not in ("dmy", "mdy"):
        raise SourceParamError("dates are day-first on some lines and month-first on others; pass {date_format} dmy or mdy", file=file)
    if forced:
        if forced == "mdy" and day_first and not month_first:
            raise SourceParamError("{date_format} mdy, but the dates are day-first (a first part above 12); pass {date_format} dmy", file=file)
        if forced == "dmy" and month_first and not day_first:
            raise SourceParamError("{date_format} dmy, but the dates are month-first (a second part above 12); pass {date_format} mdy", file=file)
        return forced
    if day_first:
        return "dmy"
    if month_first:
        return "mdy"
    if year_first or not numeric:
        return "ymd"
    raise SourceParamError(
        "cannot tell whether dates are day-first or month-first (no day above 12 in the whole file); "
        "pass {date_format} dmy or mdy",
        file=file,
    )


def _year(y: int) -> int:
    return y + 2000 if y < 100 else y


def _clock(time: str) -> tuple[int, int, int]:
    t = _TIME.fullmatch(time)
    if t is None:
        raise ValueError(f"unreadable time '{clean_time(time)}'")
    h, m, s, half = t.groups()
    hour, minute, second = int(h), int(m), int(s) if s else 0
    if half:
        if hour > 12:  # "25:13 AM" is no time (it read as 1:13)
            raise ValueError(f"unreadable time '{clean_time(time)}'")
        hour = hour % 12 + (12 if half in "pP" else 0)
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError(f"unreadable time '{clean_time(time)}'")
    return hour, minute, second


def seconds_of_day(time: str) -> int:
    """``'9:12:43 PM'`` → 76363: a time of day in any of the layouts ``parse`` reads."""
    hour, minute, second = _clock(time)
    return hour * 3600 + minute * 60 + second


def parse(date: str, time: str, order: str) -> datetime:
    """One date and time (no zone: a naive local time, as the exporter wrote it)."""
    hour, minute, second = _clock(time)
    m = _NUMERIC.match(date)
    if m:
        parts = [int(m[1]), int(m[2]), int(m[3])]
        if len(m[1]) == 4:
            y, mo, d = parts
        elif order == "dmy":
            d, mo, y = parts
        elif order == "mdy":
            mo, d, y = parts
        else:
            y, mo, d = parts
        try:
            return datetime(_year(y), mo, d, hour, minute, second)
        except ValueError:
            read_as = "year-first" if len(m[1]) == 4 or order == "ymd" else {"dmy": "day-first", "mdy": "month-first"}[order]
            raise ValueError(f"impossible date '{date}' (read {read_as})") from None
    m = _MONTH_NAME.match(date)
    if m and m[2][:3].lower() in _MONTHS:
        return datetime(_year(int(m[3])), _MONTHS[m[2][:3].lower()], int(m[1]), hour, minute, second)
    raise ValueError(f"unreadable date '{date}'")


def split_datetime(text: str) -> tuple[str, str]:
    """``'1/6/2023 2:22 PM'`` → (``'1/6/2023'``, ``'2:22 PM'``); ISO stays whole in the date part."""
    text = clean_time(text).replace(",", " ")
    date, _, time = text.partition(" ")
    return date, time.strip()


def parse_any(text: str, order: str) -> datetime:
    """A full timestamp: ISO 8601 first, else a locale date and time."""
    try:
        return datetime.fromisoformat(text.strip())
    except ValueError:
        date, time = split_datetime(text)
        if not time:
            raise ValueError(f"unreadable date and time '{text.strip()}'") from None
        try:
            return parse(date, time, order)
        except ValueError as err:
            if str(err).startswith("unreadable") and not _NUMERIC.match(date) and not _MONTH_NAME.match(date):
                raise ValueError(f"unreadable date and time '{text.strip()}'") from None
            raise
