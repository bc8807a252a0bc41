"""Merging rows into blocks, last write wins, and cutting rows at span boundaries. Vectorized:
no Python step per sample."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np


def span_starts(ts: np.ndarray, span_ms: int) -> np.ndarray:
    """The start of the epoch-aligned span holding each timestamp (floor, also before 1970)."""
    starts: np.ndarray = ts - np.mod(ts, span_ms)
    return starts


def last_wins(ts: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows in arrival order, sorted by timestamp, the last arrival kept for each timestamp."""
    order = np.argsort(ts, kind="stable")
    ts, values = ts[order], values[order]
    keep = np.ones(ts.size, dtype=bool)
    keep[:-1] = ts[1:] != ts[:-1]
    return ts[keep], values[keep]


def merge_rows(
    block_ts: np.ndarray, block_values: np.ndarray, row_ts: np.ndarray, row_values: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One block's samples (ascending) with late rows (arrival order) merged in: a row replaces
    the block's sample at its timestamp, and of rows at one timestamp the last arrival wins."""
    if row_ts.size == 0:
        return block_ts, block_values
    ascending = bool(np.all(row_ts[1:] > row_ts[:-1]))
    if ascending and (block_ts.size == 0 or row_ts[0] > block_ts[-1]):
        return np.concatenate([block_ts, row_ts]), np.concatenate([block_values, row_values])
    return last_wins(np.concatenate([block_ts, row_ts]), np.concatenate([block_values, row_values]))


def fold(
    layers: Sequence[tuple[np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray]:
    """One span's samples from its layers, oldest first (the final block, its pending parts in
    write order, the head rows in arrival order): a later layer's value wins at a timestamp.
    What compaction encodes as the span's new final block."""
    ts, values = np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
    for layer_ts, layer_values in layers:
        ts, values = merge_rows(ts, values, layer_ts, layer_values)
    return ts, values


@dataclass(frozen=True)
class Piece:
    """The rows of one span: `ts[lo:hi]` of the arrays that were split."""

    span_start: int
    lo: int
    hi: int


def split_spans(ts: np.ndarray, span_ms: int) -> list[Piece]:
    """Where ascending timestamps cross span boundaries: one piece per span that has rows."""
    if ts.size == 0:
        return []
    starts = span_starts(ts, span_ms)
    cuts = np.flatnonzero(starts[1:] != starts[:-1]) + 1
    edges = [0, *cuts.tolist(), ts.size]
    return [Piece(int(starts[lo]), lo, hi) for lo, hi in pairwise(edges)]


def series_spans(series: np.ndarray, ts: np.ndarray, span_ms: int) -> np.ndarray:
    """Offsets where rows sorted by (series, ts) change series or span, with 0 and the length:
    the (series, span) groups that compaction turns into blocks."""
    if ts.size == 0:
        return np.zeros(1, dtype=np.int64)
    starts = span_starts(ts, span_ms)
    change = (series[1:] != series[:-1]) | (starts[1:] != starts[:-1])
    return np.concatenate([[0], np.flatnonzero(change) + 1, [ts.size]]).astype(np.int64)
