"""Time parsing and formatting. Storage and arithmetic use integer milliseconds since the epoch."""

from __future__ import annotations

import math
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Literal

import numpy as np

MS_PER_SECOND = 1000
MIN_MS, MAX_MS = -62_135_596_800_000, 253_402_300_799_999  # years 1 to 9999
Precision = Literal["s", "ms", "us", "ns"]
PRECISIONS: tuple[Precision, ...] = ("s", "ms", "us", "ns")
PRECISION_NAMES = {"s": "seconds", "ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds"}
# Numbers per millisecond in each precision, and milliseconds per number.
_PER_MS = {"us": 1000, "ns": 1_000_000}
_MS_PER = {"s": 1000, "ms": 1}
# Where a misread precision is plausible: the result lands between 1970 and 2200.
_PLAUSIBLE_MS = (0, 7_258_118_400_000)


def to_ms(delta: timedelta) -> int:
    """A duration in whole milliseconds."""
    return round(delta.total_seconds() * 1000)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class TimeParseError(ValueError):
    """A value that is neither RFC 3339 nor a number of epoch seconds."""


def parse_time_ms(value: object, precision: Precision = "s") -> int:
    """RFC 3339 / ISO 8601 (no offset means UTC) or an epoch number (a JSON number or numeric
    text) in `precision` -> ms. Fractions of a millisecond are dropped (rounded for s and ms)."""
    if isinstance(value, bool):
        raise TimeParseError("expected an RFC 3339 time or an epoch number, got a boolean")
    if isinstance(value, int | float):
        return number_to_ms(value, precision)
    if not isinstance(value, str):
        raise TimeParseError("expected an RFC 3339 time or an epoch number")
    text = value.strip()
    number = _numeric_text(text)
    if number is not None:
        return number_to_ms(number, precision)
    return _iso_to_ms(text, value)


def _numeric_text(text: str) -> int | float | None:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return None


def _iso_to_ms(text: str, original: str) -> int:
    if text.endswith("z"):  # RFC 3339 allows a lower-case z; Python 3.11 does not
        text = text[:-1] + "Z"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        hint = _plus_hint(text)
        raise TimeParseError(
            f"{original!r} is not an RFC 3339 time or an epoch number{hint}"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    delta = parsed - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


_SPACED_OFFSET = re.compile(r"^\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d(\.\d+)?)? \d\d(:?\d\d)?$")


def _plus_hint(text: str) -> str:
    """A time whose '+' offset arrived as a space (an unencoded '+' in a URL query)."""
    if _SPACED_OFFSET.match(text):
        fixed = text[::-1].replace(" ", "+", 1)[::-1]
        return (
            f"; it looks like {fixed!r} with its '+' turned into a space, which is what an"
            " unencoded '+' in a URL query becomes: URL-encode it as %2B (or write the time in"
            " UTC with a Z)"
        )
    return ""


def number_to_ms(number: int | float, precision: Precision = "s") -> int:
    """An epoch number in `precision` -> ms, checked to lie within the years 1 to 9999."""
    if isinstance(number, float) and not math.isfinite(number):
        raise TimeParseError("an epoch time must be a finite number")
    if isinstance(number, int):
        ms = number * _MS_PER[precision] if precision in _MS_PER else number // _PER_MS[precision]
    else:
        scale = precision in _MS_PER
        scaled = number * _MS_PER[precision] if scale else number / _PER_MS[precision]
        if not -1e300 < scaled < 1e300:  # beyond any time: no int conversion of infinity
            raise TimeParseError(out_of_range_message(number, precision))
        ms = round(scaled) if scale else math.floor(scaled)
    if not MIN_MS <= ms <= MAX_MS:
        raise TimeParseError(out_of_range_message(number, precision))
    return int(ms)


def out_of_range_message(number: float, precision: Precision, parameter: bool = False) -> str:
    """Why `number` is no time in `precision`, and which precision would make it one."""
    text = f"{number!r} is outside the years 1 to 9999 as epoch {PRECISION_NAMES[precision]}"
    for other in PRECISIONS[PRECISIONS.index(precision) + 1 :]:
        try:
            ms = number_to_ms(number, other)
        except TimeParseError:
            continue
        if _PLAUSIBLE_MS[0] <= ms < _PLAUSIBLE_MS[1]:
            as_other = f"as epoch {PRECISION_NAMES[other]} it is {format_ms(ms)}"
            if parameter:
                return f"{text}; {as_other}: send epoch seconds or an RFC 3339 time"
            return f"{text} (precision={precision}); {as_other}: send precision={other}"
    return text


def parse_query_time_ms(value: str) -> int:
    """A time query parameter: RFC 3339 or epoch seconds, with hints for the usual mistakes (a
    number in milliseconds, a '+' offset that URL decoding turned into a space)."""
    text = value.strip()
    number = _numeric_text(text)
    if number is None:
        return _iso_to_ms(text, value)
    try:
        return number_to_ms(number, "s")
    except TimeParseError:
        raise TimeParseError(out_of_range_message(number, "s", parameter=True)) from None


def numbers_to_ms(numbers: np.ndarray, precision: Precision = "s") -> np.ndarray | None:
    """Vectorized `number_to_ms` for float64 or int64 arrays; None when any number is out of
    range (the caller then names it through `number_to_ms`)."""
    if numbers.dtype.kind == "f":
        if precision in _MS_PER:
            ms_f = np.round(numbers * _MS_PER[precision])
        else:
            ms_f = np.floor(numbers / _PER_MS[precision])
        if not ((ms_f >= MIN_MS) & (ms_f <= MAX_MS)).all():  # also false for NaN
            return None
        return ms_f.astype(np.int64)
    ints = numbers.astype(np.int64, copy=False)
    if precision in _MS_PER:
        factor = _MS_PER[precision]
        if ints.size and not ((ints >= MIN_MS // factor) & (ints <= MAX_MS // factor)).all():
            return None
        return ints * factor
    ms = ints // _PER_MS[precision]
    if ms.size and not ((ms >= MIN_MS) & (ms <= MAX_MS)).all():
        return None
    return ms


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


# -- RFC 3339 in bulk -----------------------------------------------------------------------

_DIGITS = np.zeros(256, dtype=bool)
_DIGITS[ord("0") : ord("9") + 1] = True
_DAYS_BEFORE_MONTH = np.array([0, 0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334])
_DAYS_IN_MONTH = np.array([0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])


def parse_rfc3339_array(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Milliseconds of many RFC 3339 times at once, and which ones were read.

    The usual layouts, `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM|)`, are read with numpy
    from one byte matrix per text length, with exactly `parse_time_ms`' result (fractions beyond
    milliseconds dropped). Everything else (other layouts, impossible dates, non-ASCII text) is
    left unread (`ok` False) for `parse_time_ms` to read or to name."""
    n = len(texts)
    ms = np.zeros(n, dtype=np.int64)
    ok = np.zeros(n, dtype=bool)
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=n)
    for length in np.unique(lengths).tolist():
        if not 19 <= length <= 35:
            continue
        rows = np.flatnonzero(lengths == length)
        joined = "".join([texts[i] for i in rows.tolist()]).encode("utf-8", "replace")
        if len(joined) != rows.size * length:  # non-ASCII somewhere: leave the group alone
            continue
        matrix = np.frombuffer(joined, dtype=np.uint8).reshape(rows.size, length)
        group_ms, group_ok = _read_layout(matrix)
        ms[rows], ok[rows] = group_ms, group_ok
    return ms, ok


def _number(matrix: np.ndarray, start: int, width: int) -> np.ndarray:
    value = np.zeros(matrix.shape[0], dtype=np.int64)
    for column in range(start, start + width):
        value = value * 10 + (matrix[:, column].astype(np.int64) - 48)
    return value


def _read_layout(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    length = m.shape[1]
    digits = _DIGITS[m]
    ok = digits[:, [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18]].all(axis=1)
    ok &= (m[:, 4] == 45) & (m[:, 7] == 45) & (m[:, 13] == 58) & (m[:, 16] == 58)
    ok &= np.isin(m[:, 10], (84, 116, 32))  # T, t, space
    last = m[:, length - 1]
    zulu = (last == 90) | (last == 122)  # Z, z
    offset = np.zeros(m.shape[0], dtype=bool)
    if length >= 25:
        offset = np.isin(m[:, length - 6], (43, 45)) & (m[:, length - 3] == 58)
        offset &= digits[:, [length - 5, length - 4, length - 2, length - 1]].all(axis=1)
    tail = np.where(zulu, 1, np.where(offset, 6, 0))
    ok &= zulu | offset | digits[:, length - 1]
    fraction_len = length - 19 - tail  # '.' and digits, or nothing
    has_fraction = fraction_len > 0
    if length > 19:
        dot = m[:, 19] == 46
        ok &= ~has_fraction | (dot & (fraction_len >= 2) & (fraction_len <= 10))
    columns = np.arange(20, length)
    in_fraction = columns[None, :] < (19 + fraction_len)[:, None]
    ok &= (~in_fraction | digits[:, 20:]).all(axis=1)
    year, month, day = _number(m, 0, 4), _number(m, 5, 2), _number(m, 8, 2)
    hour, minute, second = _number(m, 11, 2), _number(m, 14, 2), _number(m, 17, 2)
    month_index = np.clip(month, 0, 12)
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    month_days = _DAYS_IN_MONTH[month_index] - ((month_index == 2) & ~leap)
    ok &= (year >= 1) & (month >= 1) & (month <= 12) & (day >= 1) & (day <= month_days)
    ok &= (hour <= 23) & (minute <= 59) & (second <= 59)
    millis = np.zeros(m.shape[0], dtype=np.int64)
    for place, column in enumerate(range(20, min(23, length))):
        present = in_fraction[:, column - 20]
        millis += np.where(present, m[:, column].astype(np.int64) - 48, 0) * 10 ** (2 - place)
    shift = np.zeros(m.shape[0], dtype=np.int64)
    if length >= 25:
        sign = np.where(m[:, length - 6] == 45, -1, 1)
        off_h, off_m = _number(m, length - 5, 2), _number(m, length - 2, 2)
        ok &= ~offset | ((off_h <= 23) & (off_m <= 59))
        shift = np.where(offset, sign * (off_h * 3600 + off_m * 60), 0)
    days = _days_from_civil(year, month_index, day, leap)
    seconds = days * 86_400 + hour * 3600 + minute * 60 + second - shift
    return np.where(ok, seconds * 1000 + millis, 0), ok


def _days_from_civil(
    year: np.ndarray, month: np.ndarray, day: np.ndarray, leap: np.ndarray
) -> np.ndarray:
    """Days since 1970-01-01 of proleptic Gregorian dates."""
    y = year - 1
    before_year = y * 365 + y // 4 - y // 100 + y // 400
    day_of_year = _DAYS_BEFORE_MONTH[month] + ((month > 2) & leap) + day - 1
    days: np.ndarray = before_year + day_of_year - 719_162
    return days
