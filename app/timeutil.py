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
    base = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}Z" if millis == 0 else f"{base}.{millis:03d}Z"


def format_ms_array(ms: np.ndarray) -> list[str]:
    """Vectorized `format_ms` for an int64 array."""
    if ms.size == 0:
        return []
    ms = ms.astype(np.int64, copy=False)
    whole = np.datetime_as_string(ms.astype("datetime64[ms]").astype("datetime64[s]"), unit="s")
    millis = ms % 1000
    if not millis.any():
        return [f"{text}Z" for text in whole.tolist()]
    return [
        f"{text}Z" if m == 0 else f"{text}.{m:03d}Z"
        for text, m in zip(whole.tolist(), millis.tolist(), strict=True)
    ]
