"""The read path over blocks: decode what overlaps a range, merge the head, newest write wins.

One Python step per block (a pcodec call), none per sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from app.storage.blocks.codec import decode_block

KEY = np.dtype([("series", "<i8"), ("ts", "<i8")])


@dataclass(frozen=True)
class StoredBlock:
    series: int
    first_ts: int
    last_ts: int
    payload: bytes
    seq: int = 0  # pending parts: the write order (a later part wins); 0 for final blocks


@dataclass(frozen=True)
class Rows:
    """Samples of many series: sorted by (series, ts) with one value each, unless said otherwise."""

    series: np.ndarray  # int64
    ts: np.ndarray  # int64 ms
    values: np.ndarray  # float64

    def __len__(self) -> int:
        return int(self.ts.size)

    def take(self, index: np.ndarray | slice) -> Rows:
        return Rows(self.series[index], self.ts[index], self.values[index])


def no_rows() -> Rows:
    return Rows(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float64))


def keys(series: np.ndarray, ts: np.ndarray) -> np.ndarray:
    out = np.empty(ts.size, dtype=KEY)
    out["series"], out["ts"] = series, ts
    return out


def last_write_wins(rows: Rows) -> Rows:
    """Rows in arrival order, sorted by (series, ts), the last arrival of each kept."""
    order = np.lexsort((np.arange(len(rows)), rows.ts, rows.series))
    rows = rows.take(order)
    keep = np.ones(len(rows), dtype=bool)
    keep[:-1] = (rows.series[1:] != rows.series[:-1]) | (rows.ts[1:] != rows.ts[:-1])
    return rows.take(keep)


def decode_range(blocks: Sequence[StoredBlock], lo: int, hi: int) -> Rows:
    """The samples in [lo, hi] of the blocks, which overlap neither within a series."""
    chosen = sorted(
        (b for b in blocks if b.last_ts >= lo and b.first_ts <= hi),
        key=lambda b: (b.series, b.first_ts),
    )
    ts_parts, value_parts, sizes = [], [], []
    for block in chosen:
        ts, values = decode_block(block.payload)
        if block.first_ts < lo or block.last_ts > hi:
            a, b = np.searchsorted(ts, lo, "left"), np.searchsorted(ts, hi, "right")
            ts, values = ts[a:b], values[a:b]
        ts_parts.append(ts)
        value_parts.append(values)
        sizes.append(ts.size)
    if not chosen:
        return no_rows()
    series = np.repeat(np.array([b.series for b in chosen], dtype=np.int64), sizes)
    return Rows(series, np.concatenate(ts_parts), np.concatenate(value_parts))


def overlay(base: Rows, top: Rows) -> Rows:
    """`base` with `top` laid over it (both sorted by (series, ts), one value per key): a row of
    `top` replaces the row of `base` with its key, or is inserted in order."""
    if len(top) == 0:
        return base
    if len(base) == 0:
        return top
    base_keys, top_keys = keys(base.series, base.ts), keys(top.series, top.ts)
    at = np.searchsorted(base_keys, top_keys)
    clipped = np.minimum(at, len(base) - 1)
    found = (at < len(base)) & (base_keys[clipped] == top_keys)
    values = base.values.copy()
    values[at[found]] = top.values[found]
    new = ~found
    return Rows(
        np.insert(base.series, at[new], top.series[new]),
        np.insert(base.ts, at[new], top.ts[new]),
        np.insert(values, at[new], top.values[new]),
    )


def disjoint(blocks: Sequence[StoredBlock]) -> bool:
    """Whether no two blocks of a series overlap in time."""
    ordered = sorted(blocks, key=lambda b: (b.series, b.first_ts))
    return all(a.series != b.series or a.last_ts < b.first_ts for a, b in pairwise(ordered))


def decode_parts(parts: Sequence[StoredBlock], lo: int, hi: int) -> Rows:
    """The samples in [lo, hi] of pending parts, which may overlap: of one series and
    timestamp, the part with the highest `seq` wins. Sorted by (series, ts)."""
    if disjoint(parts):  # each span written once since its last compaction: the usual case
        return decode_range(parts, lo, hi)
    pieces = [decode_range([part], lo, hi) for part in sorted(parts, key=lambda p: p.seq)]
    return last_write_wins(
        Rows(
            np.concatenate([p.series for p in pieces]),
            np.concatenate([p.ts for p in pieces]),
            np.concatenate([p.values for p in pieces]),
        )
    )


def read_range(
    blocks: Sequence[StoredBlock],
    head: Rows,
    lo: int,
    hi: int,
    parts: Sequence[StoredBlock] = (),
) -> Rows:
    """Samples in [lo, hi], newest write winning: final blocks, then pending parts in `seq`
    order, then head rows (in arrival order, newer than every block and part). Sorted by
    (series, ts)."""
    inside = (head.ts >= lo) & (head.ts <= hi)
    pending = decode_parts(parts, lo, hi)
    return overlay(
        overlay(decode_range(blocks, lo, hi), pending), last_write_wins(head.take(inside))
    )
