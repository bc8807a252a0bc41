"""Encoding every block of a series at once: the layout of codec.encode_block, with the choices
(regular timestamps, constant or decimal values, first differences) made for all blocks by a
few whole-array operations instead of a dozen small ones per block (bench/blocks_lab measures
both)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.storage.blocks import column, pco, varint
from app.storage.blocks.codec import VERSION, check_rows
from app.storage.blocks.column import DEFAULT, Settings
from app.storage.blocks.merge import Piece, split_spans
from app.storage.blocks.values import Decimals, exact_at, probe_places


def broken_runs(changes: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """For pieces [lo, hi) of an array and `changes`, one flag per adjacent pair (element j+1
    against j): whether a pair inside a piece is flagged. Pieces of one element have none."""
    counts = np.zeros(max(int(hi.max()), changes.size) + 1, dtype=np.int64)
    counts[1 : changes.size + 1] = np.cumsum(changes)
    counts[changes.size + 1 :] = counts[changes.size]
    broken: np.ndarray = counts[np.maximum(hi - 1, lo)] - counts[lo] > 0
    return broken


def differences_pay(ints: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """values.first_differences_pay for every piece at once: the variances from sums per piece,
    relative to each piece's first value so that large levels cost no precision."""
    sizes = hi - lo
    level = (ints - np.repeat(ints[lo], sizes)).astype(np.float64)
    steps = np.diff(level, prepend=0.0)
    steps[lo] = 0.0  # a piece's first element has no step inside it
    with np.errstate(invalid="ignore", divide="ignore"):
        n, m = sizes.astype(np.float64), (sizes - 1).astype(np.float64)
        var_level = np.add.reduceat(level * level, lo) / n - (np.add.reduceat(level, lo) / n) ** 2
        var_steps = np.add.reduceat(steps * steps, lo) / m - (np.add.reduceat(steps, lo) / m) ** 2
    pays: np.ndarray = (sizes >= 3) & (var_steps < var_level)
    return pays


@dataclass(frozen=True)
class SeriesDecimals:
    places: int
    ints: np.ndarray  # the whole series' integers, exceptions filled with the previous value
    exact: np.ndarray
    usable: np.ndarray  # per piece: few enough exceptions
    pays: np.ndarray  # per piece: first differences pay


def series_decimals(
    values: np.ndarray, settings: Settings, lo: np.ndarray, hi: np.ndarray
) -> SeriesDecimals | None:
    with np.errstate(over="ignore", invalid="ignore"):
        places = probe_places(values)
        if places is None:
            return None
        ints, exact = exact_at(values, np.array(places))
    index = np.where(exact, np.arange(exact.size), 0)
    index[: int(np.argmax(exact))] = int(np.argmax(exact))
    ints = ints[np.maximum.accumulate(index)]
    misses = np.add.reduceat((~exact).astype(np.int64), lo)
    sizes = hi - lo
    usable = (misses <= sizes * settings.exceptions_per_64 // 64 + 1) & (misses < sizes)
    return SeriesDecimals(places, ints, exact, usable, differences_pay(ints, lo, hi))


def _piece_decimals(found: SeriesDecimals, values: np.ndarray, a: int, b: int) -> Decimals:
    positions = np.flatnonzero(~found.exact[a:b])
    return Decimals(found.places, found.ints[a:b], positions, values[a:b].view(np.int64)[positions])


def encode_series(
    ts: np.ndarray, values: np.ndarray, span_ms: int, settings: Settings = DEFAULT
) -> list[tuple[Piece, bytes]]:
    """The blocks of one series' rows (strictly ascending), one per span that has rows; each
    decodes with codec.decode_block."""
    check_rows(ts, values)
    pieces = split_spans(ts, span_ms)
    if not pieces:
        return []
    lo = np.array([p.lo for p in pieces], dtype=np.int64)
    hi = np.array([p.hi for p in pieces], dtype=np.int64)
    steps = np.diff(ts)
    irregular = broken_runs(np.diff(steps) != 0, lo, np.maximum(hi - 1, lo))
    bits = values.view(np.int64)
    varied = broken_runs(bits[1:] != bits[:-1], lo, hi)
    found = series_decimals(values, settings, lo, hi)
    header = pco.file_header()
    out = []
    for i, piece in enumerate(pieces):
        a, b = piece.lo, piece.hi
        buf = bytearray([VERSION])
        varint.put_uint(buf, b - a)
        buf += header
        if irregular[i]:
            column.put_int_chunk(buf, ts[a:b], settings.int_level)
        else:
            column.put_arithmetic(buf, int(ts[a]), int(steps[a]) if b - a > 1 else 0)
        if not varied[i]:
            column.put_constant(buf, int(bits[a]))
        elif found is not None and found.usable[i]:
            delta: pco.Delta = "first" if found.pays[i] else "none"
            column.put_decimals(
                buf, _piece_decimals(found, values, a, b), settings.int_level, delta
            )
        else:
            column.put_floats(buf, values[a:b], settings)
        out.append((piece, bytes(buf)))
    return out
