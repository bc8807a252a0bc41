"""Columns inside a block: each a kind byte, its parameters, then (for most kinds) one pcodec
chunk. Readers walk a payload front to back; each reader returns the offset after its column.

Integer columns (int64):
    0 arithmetic: int first, int step (a regular series' timestamps, a constant count)
    1 pcodec: the chunk (pcodec picks its differences)

Float columns (float64), every bit pattern kept:
    0 doubles: a pcodec chunk of the float64 values
    1 decimals: byte places, uint e exceptions, e uints (gaps between their positions, the
      first from 0), e x 8 bytes (their raw bits, little-endian), a pcodec chunk of the
      int64 decimal integers (values.py)
    2 constant: 8 bytes, the one bit pattern of every value

The writers that decide (`put_ints`, `put_floats`) are built from writers that are told
(`put_arithmetic`, `put_decimals`, ...), so that a caller deciding for many blocks at once
(codec.encode_series) writes the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.storage.blocks import pco, varint
from app.storage.blocks.values import Decimals, as_decimals, decoded, first_differences_pay

INT_ARITHMETIC, INT_PCO = 0, 1
FLOAT_DOUBLES, FLOAT_DECIMALS, FLOAT_CONSTANT = 0, 1, 2


@dataclass(frozen=True)
class Settings:
    """Encoder choices (bench/blocks_lab measured them); decoders need none of them."""

    int_level: int = 6  # pcodec level for integers (bench: 1.833 B/sample, 1.830 at level 8)
    float_level: int = 8  # pcodec level for doubles (its float modes need the search)
    exceptions_per_64: int = 1  # decimals allow n/64 + 1 values outside them, else doubles

    def max_exceptions(self, n: int) -> int:
        return n * self.exceptions_per_64 // 64 + 1


DEFAULT = Settings()


def put_arithmetic(out: bytearray, first: int, step: int) -> None:
    out.append(INT_ARITHMETIC)
    varint.put_int(out, first)
    varint.put_int(out, step)


def put_int_chunk(out: bytearray, values: np.ndarray, level: int) -> None:
    out.append(INT_PCO)
    out += pco.chunk(values, level, "auto")


def put_ints(out: bytearray, values: np.ndarray, settings: Settings = DEFAULT) -> None:
    """A non-empty int64 column."""
    steps = np.diff(values)
    if values.size == 1 or bool(np.all(steps == steps[0])):
        put_arithmetic(out, int(values[0]), int(steps[0]) if values.size > 1 else 0)
    else:
        put_int_chunk(out, values, settings.int_level)


def put_constant(out: bytearray, bits: int) -> None:
    out.append(FLOAT_CONSTANT)
    out += np.array([bits], dtype="<i8").tobytes()


def put_doubles(out: bytearray, values: np.ndarray, level: int, delta: pco.Delta) -> None:
    out.append(FLOAT_DOUBLES)
    out += pco.chunk(values, level, delta)


def put_decimals(
    out: bytearray, decimals: Decimals, level: int, delta: pco.Delta | None = None
) -> None:
    """Decimal integers; first differences or none as `delta` says, or as they pay if None."""
    out += bytes([FLOAT_DECIMALS, decimals.places])
    varint.put_uint(out, decimals.positions.size)
    previous = 0
    for position in decimals.positions.tolist():
        varint.put_uint(out, position - previous)
        previous = position
    out += decimals.bits.astype("<i8").tobytes()
    if delta is None:
        delta = "first" if first_differences_pay(decimals.ints) else "none"
    out += pco.chunk(decimals.ints, level, delta)


def put_floats(
    out: bytearray,
    values: np.ndarray,
    settings: Settings = DEFAULT,
    decimals: bool = True,
    level: int | None = None,
    delta: pco.Delta = "auto",
) -> None:
    """A non-empty float64 column, bit for bit: constant, decimals (unless `decimals` is False:
    sums and second moments seldom are) or doubles (at `level`, default the settings')."""
    bits = values.view(np.int64)
    if bool(np.all(bits == bits[0])):
        put_constant(out, int(bits[0]))
        return
    found = as_decimals(values, settings.max_exceptions(values.size)) if decimals else None
    if found is None:
        put_doubles(out, values, settings.float_level if level is None else level, delta)
    else:
        put_decimals(out, found, settings.int_level)


def read_ints(buf: bytes, at: int, header: bytes, n: int) -> tuple[np.ndarray, int]:
    kind = buf[at]
    if kind == INT_ARITHMETIC:
        first, at = varint.get_int(buf, at + 1)
        step, at = varint.get_int(buf, at)
        return first + step * np.arange(n, dtype=np.int64), at
    if kind == INT_PCO:
        return pco.read_chunk(buf, at + 1, header, n, "i64")
    raise ValueError(f"unknown integer column kind {kind}")


def read_floats(buf: bytes, at: int, header: bytes, n: int) -> tuple[np.ndarray, int]:
    kind = buf[at]
    if kind == FLOAT_CONSTANT:
        bits = np.frombuffer(buf, dtype="<i8", count=1, offset=at + 1)
        return np.full(n, bits[0], dtype=np.int64).view(np.float64), at + 9
    if kind == FLOAT_DOUBLES:
        return pco.read_chunk(buf, at + 1, header, n, "f64")
    if kind != FLOAT_DECIMALS:
        raise ValueError(f"unknown float column kind {kind}")
    places = buf[at + 1]
    count, at = varint.get_uint(buf, at + 2)
    if count == 0:
        ints, at = pco.read_chunk(buf, at, header, n, "i64")
        return decoded(ints, places), at
    gaps = []
    for _ in range(count):
        gap, at = varint.get_uint(buf, at)
        gaps.append(gap)
    bits = np.frombuffer(buf, dtype="<i8", count=count, offset=at).astype(np.int64)
    ints, at = pco.read_chunk(buf, at + 8 * count, header, n, "i64")
    values = decoded(ints, places)
    values.view(np.int64)[np.cumsum(gaps)] = bits
    return values, at
