"""PostgreSQL binary COPY rows built and read by numpy (app.storage.pg_copy), both directions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.storage.pg_copy import SAMPLE_COLUMNS, decode, encode

rows = st.lists(
    st.tuples(
        st.integers(1, 2**31 - 1),
        st.integers(-(2**62), 2**62),
        st.floats(allow_nan=False, width=64),
    ),
    max_size=40,
)


@given(rows)
def test_rows_read_back_as_written(table: list[tuple[int, int, float]]) -> None:
    sids, ts, values = (
        (np.array(column) for column in zip(*table, strict=True))
        if table
        else (
            np.empty(0, np.int64),
            np.empty(0, np.int64),
            np.empty(0, np.float64),
        )
    )
    parsed = decode(encode(SAMPLE_COLUMNS, [sids, ts, values]), SAMPLE_COLUMNS)
    assert parsed["value0"].tolist() == sids.tolist()
    assert parsed["value1"].tolist() == ts.tolist()
    assert parsed["value2"].tobytes() == values.astype(">f8").tobytes()  # every bit, -0.0 too


def test_data_of_another_shape_is_refused() -> None:
    data = encode(SAMPLE_COLUMNS, [np.array([1]), np.array([2]), np.array([3.0])])
    with pytest.raises(ValueError, match="does not match"):
        decode(data[:-3] + data[-2:], SAMPLE_COLUMNS)
    with pytest.raises(ValueError, match="not PostgreSQL binary COPY"):
        decode(b"id,ts,value\n", SAMPLE_COLUMNS)
