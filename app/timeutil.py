"""Time parsing and formatting. Storage and arithmetic use integer milliseconds since the epoch."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta

import numpy as np

MS_PER_SECOND = 1000


def to_ms(delta: timedelta) -> int:
    """A duration in whole milliseconds."""
    return round(delta.total_seconds() * 1000)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class TimeParseError(ValueError):
    """A value that is neither RFC 3339 nor a number of epoch seconds."""


def parse_time_ms(value: object) -> int:
    """RFC 3339 / ISO 8601 (no offset means UTC) or epoch seconds (number or numeric text) -> ms."""
    if isinstance(value, bool):
        raise TimeParseError("expected an RFC 3339 time or epoch seconds, got a boolean")
    if isinstance(value, int | float):
        return _seconds_to_ms(float(value))
    if not isinstance(value, str):
        raise TimeParseError("expected an RFC 3339 time or epoch seconds")
    text = value.strip()
    try:
        return _seconds_to_ms(float(text))
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise TimeParseError(f"{value!r} is not an RFC 3339 time or epoch seconds") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    delta = parsed - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def _seconds_to_ms(seconds: float) -> int:
    if not math.isfinite(seconds):
        raise TimeParseError("epoch seconds must be a finite number")
    if not -62_135_596_800 <= seconds <= 253_402_300_799:
        raise TimeParseError("time is outside the years 1 to 9999")
    return round(seconds * 1000)


def format_ms(ms: int) -> str:
    """RFC 3339 in UTC with a Z suffix; milliseconds only where there are some."""
    seconds, millis = divmod(int(ms), 1000)
    base = datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None).isoformat()  # 4-digit year
    return f"{base}Z" if millis == 0 else f"{base}.{millis:03d}Z"


def format_ms_array(ms: np.ndarray) -> list[str]:
    """Vectorized `format_ms` for an int64 array (years 1 to 9999).

    The calendar date comes from integer arithmetic on day numbers (the proleptic Gregorian
    calendar, as `datetime` uses) and every character is written into one byte matrix, so a raw
    answer of 10,000 points costs no Python object per character or per field."""
    if ms.size == 0:
        return []
    ms = ms.astype(np.int64, copy=False)
    seconds, millis = np.divmod(ms, 1000)
    days, second_of_day = np.divmod(seconds, 86_400)
    year, month, day = _civil_from_days(days)
    hour, rest = np.divmod(second_of_day, 3600)
    minute, second = np.divmod(rest, 60)
    text = np.zeros((ms.size, 24), dtype=np.uint8)  # "YYYY-MM-DDTHH:MM:SS.mmmZ", NUL-padded
    for column, (value, width) in zip(
        (0, 5, 8, 11, 14, 17, 20),
        ((year, 4), (month, 2), (day, 2), (hour, 2), (minute, 2), (second, 2), (millis, 3)),
        strict=True,
    ):
        _digits(text, column, value, width)
    for column, char in ((4, "-"), (7, "-"), (10, "T"), (13, ":"), (16, ":"), (19, ".")):
        text[:, column] = ord(char)
    text[:, 23] = ord("Z")
    whole = millis == 0
    text[whole, 19] = ord("Z")  # no milliseconds: "...:SSZ", the rest stays NUL and is dropped
    text[whole, 20:] = 0
    return text.view("S24").ravel().astype("U24").tolist()


def _digits(text: np.ndarray, column: int, value: np.ndarray, width: int) -> None:
    for place in range(width - 1, -1, -1):
        value, digit = np.divmod(value, 10)
        text[:, column + place] = digit + ord("0")


def _civil_from_days(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Year, month, day of days since 1970-01-01 (H. Hinnant's civil_from_days, vectorized)."""
    z = days + 719_468
    era = z // 146_097
    day_of_era = z - era * 146_097
    year_of_era = (
        day_of_era - day_of_era // 1460 + day_of_era // 36_524 - day_of_era // 146_096
    ) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    shifted_month = (5 * day_of_year + 2) // 153  # March = 0
    day = day_of_year - (153 * shifted_month + 2) // 5 + 1
    month = np.where(shifted_month < 10, shifted_month + 3, shifted_month - 9)
    year = year_of_era + era * 400 + (month <= 2)
    return year, month, day


civil_from_days = _civil_from_days  # public: the PromQL date functions use it too
