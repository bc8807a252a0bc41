"""Raw blocks: every timestamp and float64 bit pattern comes back exactly; bad input refused."""

from __future__ import annotations

import numpy as np
import pytest
from block_strategies import NAMED_BITS, STALE, as_floats, timestamps, value_arrays
from hypothesis import given, settings
from hypothesis import strategies as st

from app.storage.blocks import column, pco
from app.storage.blocks.codec import VERSION, block_size, decode_block, encode_block


def assert_same_bits(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == want.dtype
    assert got.view(np.int64).tolist() == want.view(np.int64).tolist()


@st.composite
def blocks(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    values = draw(value_arrays())
    return draw(timestamps(values.size)), values


@settings(max_examples=300)
@given(blocks())
def test_round_trip_is_bit_exact(block: tuple[np.ndarray, np.ndarray]) -> None:
    ts, values = block
    payload = encode_block(ts, values)
    got_ts, got_values = decode_block(payload)
    assert got_ts.tolist() == ts.tolist()
    assert_same_bits(got_values, values)
    assert block_size(payload) == ts.size


@settings(max_examples=100)
@given(st.lists(st.sampled_from(NAMED_BITS), min_size=1, max_size=50), st.data())
def test_pcodec_keeps_nan_payloads(bits: list[int], data: st.DataObject) -> None:
    """The fact the doubles column relies on: pcodec's float64 chunks, in whatever mode it picks
    among decimals, keep every bit pattern."""
    ints = data.draw(st.lists(st.integers(-(10**6), 10**6), min_size=0, max_size=400))
    values = np.concatenate([np.array(ints) / 1000.0, as_floats(bits)])
    order = data.draw(st.permutations(range(values.size)))
    values = values[np.array(order, dtype=np.int64)]
    header = pco.file_header()
    payload = pco.chunk(values, 8, "auto")
    got, end = pco.read_chunk(payload, 0, header, values.size, "f64")
    assert end == len(payload)
    assert_same_bits(got, values)


def kinds(values: np.ndarray) -> int:
    out = bytearray()
    column.put_floats(out, values)
    return out[0]


def test_decimals_with_a_stale_marker_stay_decimals() -> None:
    values = np.round(np.linspace(10, 90, 720), 3)
    values[100] = as_floats([STALE])[0]
    values[200] = -0.0
    assert kinds(values) == column.FLOAT_DECIMALS
    ts = np.arange(720, dtype=np.int64) * 10_000
    assert_same_bits(decode_block(encode_block(ts, values))[1], values)


def test_the_column_kinds() -> None:
    rng = np.random.default_rng(7)
    assert kinds(np.full(10, 2.5)) == column.FLOAT_CONSTANT
    assert kinds(rng.random(100)) == column.FLOAT_DOUBLES
    assert kinds(np.arange(100.0)) == column.FLOAT_DECIMALS
    many_nans = np.arange(100.0)
    many_nans[::10] = np.nan  # 10 exceptions > 100 / 64 + 1
    assert kinds(many_nans) == column.FLOAT_DOUBLES


def test_a_regular_series_has_no_timestamp_chunk() -> None:
    ts = 1_764_763_200_000 + 10_000 * np.arange(720, dtype=np.int64)
    regular = encode_block(ts, np.full(720, 1.0))
    assert len(regular) < 30
    ts[5] += 1
    assert len(encode_block(ts, np.full(720, 1.0))) > len(regular)


def test_empty_and_single() -> None:
    empty_ts, empty_values = decode_block(encode_block(np.empty(0, np.int64), np.empty(0)))
    assert empty_ts.size == empty_values.size == 0
    ts, values = decode_block(encode_block(np.array([-5], np.int64), as_floats([STALE])))
    assert ts.tolist() == [-5]
    assert_same_bits(values, as_floats([STALE]))


@pytest.mark.parametrize(
    ("ts", "values", "message"),
    [
        (np.array([2, 1]), np.array([1.0, 2.0]), "strictly ascending"),
        (np.array([1, 1]), np.array([1.0, 2.0]), "strictly ascending"),
        (np.array([1, 2]), np.array([1.0]), "2 timestamps but 1 values"),
        (np.array([1.0, 2.0]), np.array([1.0, 2.0]), "int64 timestamps"),
        (np.array([1, 2]), np.array([1, 2]), "float64 values"),
        (np.array([[1, 2]]), np.array([[1.0, 2.0]]), "1-D"),
    ],
)
def test_bad_rows_are_refused(ts: np.ndarray, values: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        encode_block(ts, values)


def test_other_versions_and_damage_are_refused() -> None:
    payload = encode_block(np.arange(10, dtype=np.int64), np.arange(10.0) / 3)
    with pytest.raises(ValueError, match=f"not a version {VERSION} block"):
        decode_block(bytes([VERSION + 1]) + payload[1:])
    with pytest.raises(ValueError, match="not a version"):
        decode_block(b"")
    with pytest.raises(ValueError, match="ends at byte"):
        decode_block(payload + b"\x00")
