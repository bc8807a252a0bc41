"""The read path: blocks overlapping a range decoded, head rows laid over them, newest write
wins; against a dict model of every write."""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
from block_strategies import STALE, as_floats
from hypothesis import given, settings
from hypothesis import strategies as st

from app.storage.blocks.codec import encode_block
from app.storage.blocks.merge import series_spans
from app.storage.blocks.read import (
    Rows,
    StoredBlock,
    decode_range,
    last_write_wins,
    no_rows,
    overlay,
    read_range,
)

HOUR = 3_600_000
key = st.tuples(st.integers(1, 3), st.integers(-2 * HOUR, 4 * HOUR).map(lambda t: t - t % 1000))
value_bits = st.one_of(
    st.integers(-100, 100).map(lambda k: k / 8),
    st.just(as_floats([STALE])[0]),
    st.just(-0.0),
)


def blocks_of(data: dict[tuple[int, int], float], span: int) -> list[StoredBlock]:
    keys = sorted(data)
    series = np.array([s for s, _ in keys], dtype=np.int64)
    ts = np.array([t for _, t in keys], dtype=np.int64)
    values = np.array([data[k] for k in keys], dtype=np.float64)
    edges = series_spans(series, ts, span)
    out = []
    for lo, hi in itertools.pairwise(edges):
        payload = encode_block(ts[lo:hi], values[lo:hi])
        out.append(StoredBlock(int(series[lo]), int(ts[lo]), int(ts[hi - 1]), payload))
    return out[::-1]  # any order


def as_rows(items: list[tuple[tuple[int, int], float]]) -> Rows:
    return Rows(
        np.array([s for (s, _), _ in items], dtype=np.int64),
        np.array([t for (_, t), _ in items], dtype=np.int64),
        np.array([v for _, v in items], dtype=np.float64),
    )


def bits(rows: Rows) -> list[tuple[int, int, int]]:
    return list(
        zip(
            rows.series.tolist(), rows.ts.tolist(), rows.values.view(np.int64).tolist(), strict=True
        )
    )


def parts_of(writes: list[dict[tuple[int, int], float]], span: int) -> list[StoredBlock]:
    """Each write a pending part per (series, span) it touches, `seq` its order."""
    out = []
    for seq, write in enumerate(writes, start=1):
        out += [replace(b, seq=seq) for b in blocks_of(write, span)]
    return out[::-1]


@settings(max_examples=150)
@given(
    st.dictionaries(key, value_bits, max_size=80),
    st.lists(st.dictionaries(key, value_bits, max_size=20), max_size=3),
    st.lists(st.tuples(key, value_bits), max_size=40),
    st.integers(-3 * HOUR, 5 * HOUR),
    st.integers(0, 4 * HOUR),
    st.sampled_from([HOUR, 2 * HOUR]),
)
def test_read_range_equals_the_model(
    stored: dict[tuple[int, int], float],
    pending: list[dict[tuple[int, int], float]],
    head: list[tuple[tuple[int, int], float]],
    lo: int,
    length: int,
    span: int,
) -> None:
    """Final blocks, then pending parts in write order, then head rows in arrival order."""
    hi = lo + length
    truth = dict(stored)
    for write in pending:
        truth.update(write)
    for k, v in head:
        truth[k] = v
    want = [
        (s, t, np.array([truth[(s, t)]]).view(np.int64)[0].item())
        for s, t in sorted(truth)
        if lo <= t <= hi
    ]
    got = read_range(blocks_of(stored, span), as_rows(head), lo, hi, parts_of(pending, span))
    assert bits(got) == want


def test_decode_range_cuts_blocks_at_the_edges() -> None:
    ts = np.arange(10, dtype=np.int64) * 100
    block = StoredBlock(5, 0, 900, encode_block(ts, ts.astype(np.float64)))
    got = decode_range([block], 250, 600)
    assert got.ts.tolist() == [300, 400, 500, 600]
    assert got.series.tolist() == [5] * 4
    assert len(decode_range([block], 901, 2000)) == 0


def test_overlay_and_last_write_wins() -> None:
    base = Rows(np.array([1, 1, 2]), np.array([10, 20, 10]), np.array([1.0, 2.0, 3.0]))
    top = last_write_wins(
        Rows(np.array([2, 1, 1, 3]), np.array([10, 15, 15, 0]), np.array([9.0, 7.0, 8.0, 4.0]))
    )
    got = overlay(base, top)
    assert list(zip(got.series.tolist(), got.ts.tolist(), got.values.tolist(), strict=True)) == [
        (1, 10, 1.0),
        (1, 15, 8.0),
        (1, 20, 2.0),
        (2, 10, 9.0),
        (3, 0, 4.0),
    ]
    assert len(overlay(no_rows(), top)) == 3
    assert overlay(base, no_rows()) is base
