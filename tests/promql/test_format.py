"""Values formatted as Prometheus formats them (Go's strconv with MarshalFloat's switch to
exponents), and timestamps as seconds."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.promql.format import format_timestamps, format_values, go_float_f, go_float_json


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.0, "1"),
        (0.1, "0.1"),
        (-3.0, "-3"),
        (-0.0, "-0"),
        (1e15, "1000000000000000"),
        (1e20, "100000000000000000000"),
        (1e21, "1e+21"),
        (1.5e-7, "1.5e-07"),
        (1e-6, "0.000001"),
        (0.00001234, "0.00001234"),
        (123456789.125, "123456789.125"),
        (math.nan, "NaN"),
        (math.inf, "+Inf"),
        (-math.inf, "-Inf"),
    ],
)
def test_known_values(value: float, text: str) -> None:
    assert go_float_json(value) == text
    assert format_values(np.array([value])) == [text]


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_the_fast_path_agrees_and_round_trips(value: float) -> None:
    (text,) = format_values(np.array([value]))
    assert text == go_float_json(value)
    if math.isfinite(value):
        assert float(text) == value
        assert "e" not in go_float_f(value)


def test_timestamps_are_seconds_with_milliseconds() -> None:
    stamps = format_timestamps(np.array([1_700_000_000_000, 1_700_000_000_123, -1_500]))
    assert stamps == [1_700_000_000, 1_700_000_000.123, -1.5]
    assert isinstance(stamps[0], int)


@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=50))
def test_arrays_are_formatted_as_each_value_alone(values: list[float]) -> None:
    assert format_values(np.array(values, dtype=np.float64)) == [go_float_json(v) for v in values]
