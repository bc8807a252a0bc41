"""Varints of the block headers: round trips, bounds, truncation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.storage.blocks import varint


@given(st.lists(st.integers(0, 2**64 - 1)), st.lists(st.integers(-(2**63), 2**63 - 1)))
def test_round_trip(unsigned: list[int], signed: list[int]) -> None:
    out = bytearray()
    for value in unsigned:
        varint.put_uint(out, value)
    for value in signed:
        varint.put_int(out, value)
    at, got = 0, []
    for _ in unsigned:
        value, at = varint.get_uint(bytes(out), at)
        got.append(value)
    for _ in signed:
        value, at = varint.get_int(bytes(out), at)
        got.append(value)
    assert got == unsigned + signed
    assert at == len(out)


@pytest.mark.parametrize(
    ("value", "size"), [(0, 1), (1, 1), (-1, 1), (63, 1), (-64, 1), (64, 2), (2**63 - 1, 10)]
)
def test_small_magnitudes_take_few_bytes(value: int, size: int) -> None:
    out = bytearray()
    varint.put_int(out, value)
    assert len(out) == size


@pytest.mark.parametrize("value", [-1, 2**64])
def test_unsigned_out_of_range(value: int) -> None:
    with pytest.raises(ValueError, match="unsigned 64-bit"):
        varint.put_uint(bytearray(), value)


@pytest.mark.parametrize("value", [-(2**63) - 1, 2**63])
def test_signed_out_of_range(value: int) -> None:
    with pytest.raises(ValueError, match="signed 64-bit"):
        varint.put_int(bytearray(), value)


def test_truncated() -> None:
    out = bytearray()
    varint.put_uint(out, 2**40)
    with pytest.raises(ValueError, match="no complete varint"):
        varint.get_uint(bytes(out[:-1]), 0)
