"""Encoding a whole series at once gives blocks that decode exactly, one per span, of the same
size as encoding each block on its own, give or take the choices made per series."""

from __future__ import annotations

import numpy as np
from block_strategies import STALE, as_floats, timestamps, value_arrays
from hypothesis import given, settings
from hypothesis import strategies as st

from app.storage.blocks.batch import broken_runs, encode_series
from app.storage.blocks.codec import decode_block, encode_block

HOUR = 3_600_000


@settings(max_examples=200)
@given(st.data(), st.sampled_from([1000, 60_000, HOUR, 10**12]))
def test_every_block_decodes_exactly(data: st.DataObject, span: int) -> None:
    values = data.draw(value_arrays(max_size=400))
    ts = data.draw(timestamps(values.size))
    blocks = encode_series(ts, values, span)
    assert sum(p.hi - p.lo for p, _ in blocks) == ts.size
    for piece, payload in blocks:
        got_ts, got_values = decode_block(payload)
        assert got_ts.tolist() == ts[piece.lo : piece.hi].tolist()
        want = values[piece.lo : piece.hi].view(np.int64)
        assert got_values.view(np.int64).tolist() == want.tolist()
        assert {piece.span_start} == set((got_ts - np.mod(got_ts, span)).tolist())


def test_the_workload_packs_as_block_by_block() -> None:
    rng = np.random.default_rng(11)
    ts = 1_764_763_200_000 + 10_000 * np.arange(10_000, dtype=np.int64)
    values = np.round(50 + 20 * np.sin(np.arange(10_000) / 1400) + rng.normal(0, 3, 10_000), 3)
    values[1234] = as_floats([STALE])[0]
    values[5000:5720] = 7.0  # a constant block
    together = encode_series(ts, values, 2 * HOUR)
    alone = [encode_block(ts[p.lo : p.hi], values[p.lo : p.hi]) for p, _ in together]
    assert [len(b) for _, b in together] == [len(b) for b in alone]


def test_broken_runs() -> None:
    changes = np.array([False, True, False, False])  # between elements 1 and 2
    lo, hi = np.array([0, 2, 4]), np.array([2, 4, 5])
    assert broken_runs(changes, lo, hi).tolist() == [False, False, False]
    assert broken_runs(changes, np.array([0]), np.array([5])).tolist() == [True]
    assert broken_runs(changes, np.array([1]), np.array([3])).tolist() == [True]
