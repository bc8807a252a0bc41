"""Time formatting: the vectorized formatter against `datetime`, over the whole supported range."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from app.timeutil import format_ms, format_ms_array, parse_time_ms

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FIRST_MS, LAST_MS = -62_135_596_800_000, 253_402_300_799_999  # 0001-01-01 .. 9999-12-31


def reference(ms: int) -> str:
    """RFC 3339 by datetime alone: four-digit year, milliseconds only where there are some."""
    moment = EPOCH + timedelta(milliseconds=ms)
    text = f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment:%H:%M:%S}"
    millis = moment.microsecond // 1000
    return f"{text}.{millis:03d}Z" if millis else f"{text}Z"


EDGES = [
    FIRST_MS,
    LAST_MS,
    0,
    -1,
    999,
    -1000,
    951_782_400_000,  # 2000-02-29 (a leap day in a century year)
    4_107_542_400_000,  # 2100-03-01 (2100 is not a leap year)
    -2_203_891_200_000,  # 1900-03-01
    -59_011_459_200_000,  # 0100-01-01: years below 1000 keep four digits
    1_764_763_200_250,
]


def test_edges_match_datetime() -> None:
    expected = [reference(ms) for ms in EDGES]
    assert format_ms_array(np.array(EDGES, dtype=np.int64)) == expected
    assert [format_ms(ms) for ms in EDGES] == expected


@given(st.lists(st.integers(FIRST_MS, LAST_MS), max_size=50))
def test_any_times_match_datetime(stamps: list[int]) -> None:
    expected = [reference(ms) for ms in stamps]
    assert format_ms_array(np.array(stamps, dtype=np.int64)) == expected
    assert [format_ms(ms) for ms in stamps] == expected
    assert [parse_time_ms(text) for text in expected] == stamps  # and they read back


@given(st.lists(st.integers(0, 10**6), max_size=50))
def test_whole_seconds_have_no_fraction(seconds: list[int]) -> None:
    stamps = np.array(seconds, dtype=np.int64) * 1000 + 1_700_000_000_000
    assert all(len(text) == 20 for text in format_ms_array(stamps))
