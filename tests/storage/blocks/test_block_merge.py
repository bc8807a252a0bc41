"""Late rows merged into blocks (last write wins) and rows cut at span boundaries, against
brute-force models."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from app.storage.blocks.merge import (
    fold,
    last_wins,
    merge_rows,
    series_spans,
    span_starts,
    split_spans,
)

HOUR = 3_600_000
stamps = st.integers(-3 * HOUR, 3 * HOUR).map(lambda t: t - t % 250)  # collisions likely
rows = st.lists(st.tuples(stamps, st.integers(-1000, 1000)), max_size=60)


def model(block: dict[int, float], late: list[tuple[int, int]]) -> dict[int, float]:
    out = dict(block)
    for ts, value in late:  # arrival order: the later write wins
        out[ts] = float(value)
    return out


@given(st.dictionaries(stamps, st.integers(-1000, 1000), max_size=60), rows)
def test_merge_equals_the_dict_model(block: dict[int, int], late: list[tuple[int, int]]) -> None:
    block_ts = np.array(sorted(block), dtype=np.int64)
    block_values = np.array([block[t] for t in sorted(block)], dtype=np.float64)
    row_ts = np.array([t for t, _ in late], dtype=np.int64)
    row_values = np.array([v for _, v in late], dtype=np.float64)
    ts, values = merge_rows(block_ts, block_values, row_ts, row_values)
    want = model({t: float(v) for t, v in block.items()}, late)
    assert ts.tolist() == sorted(want)
    assert values.tolist() == [want[t] for t in sorted(want)]


@given(st.lists(st.dictionaries(stamps, st.integers(-1000, 1000), max_size=30), max_size=4), rows)
def test_fold_equals_the_dict_model(
    layers: list[dict[int, int]], head: list[tuple[int, int]]
) -> None:
    """A span's final block and pending parts (each sorted, unique), then head rows (arrival
    order): a later layer wins."""
    sorted_layers = [
        (np.array(sorted(d), dtype=np.int64), np.array([d[t] for t in sorted(d)], dtype=np.float64))
        for d in layers
    ]
    head_layer = (
        np.array([t for t, _ in head], dtype=np.int64),
        np.array([v for _, v in head], dtype=np.float64),
    )
    ts, values = fold([*sorted_layers, head_layer])
    want: dict[int, float] = {}
    for d in layers:
        want.update({t: float(v) for t, v in d.items()})
    want = model(want, head)
    assert ts.tolist() == sorted(want)
    assert values.tolist() == [want[t] for t in sorted(want)]


def test_rows_after_the_block_are_appended() -> None:
    ts, values = merge_rows(
        np.array([1, 2], np.int64), np.array([1.0, 2.0]), np.array([3, 5]), np.array([3.0, 5.0])
    )
    assert ts.tolist() == [1, 2, 3, 5]
    assert values.tolist() == [1.0, 2.0, 3.0, 5.0]


def test_last_wins_keeps_the_last_arrival() -> None:
    ts, values = last_wins(np.array([5, 1, 5, 1, 3]), np.array([1.0, 2.0, 3.0, 4.0, 5.0]))
    assert ts.tolist() == [1, 3, 5]
    assert values.tolist() == [4.0, 5.0, 3.0]


@given(st.sets(st.integers(-10 * HOUR, 10 * HOUR)), st.sampled_from([HOUR, 2 * HOUR, 86_400_000]))
def test_split_spans_cuts_at_every_boundary(stamps: set[int], span: int) -> None:
    ts = np.array(sorted(stamps), dtype=np.int64)
    pieces = split_spans(ts, span)
    assert [p.lo for p in pieces[1:]] == [p.hi for p in pieces[:-1]]
    if pieces:
        assert (pieces[0].lo, pieces[-1].hi) == (0, ts.size)
    for piece in pieces:
        assert piece.span_start % span == 0
        assert piece.span_start <= ts[piece.lo] <= ts[piece.hi - 1] < piece.span_start + span
    assert [p.span_start for p in pieces] == sorted({t - t % span for t in stamps})


def test_span_starts_before_1970() -> None:
    assert span_starts(np.array([-1, 0, HOUR - 1, -HOUR]), HOUR).tolist() == [-HOUR, 0, 0, -HOUR]


def test_series_spans() -> None:
    series = np.array([1, 1, 1, 2, 2], dtype=np.int64)
    ts = np.array([0, 10, HOUR, HOUR, HOUR + 5], dtype=np.int64)
    assert series_spans(series, ts, HOUR).tolist() == [0, 2, 3, 5]
    assert series_spans(series[:0], ts[:0], HOUR).tolist() == [0]
