"""The pure decisions under every sample store's write and aggregation: de-duplication (last write
wins), the (series, bucket) pairs a write marks, the horizon checks that sort samples into raw,
history and beyond retention, and epoch-aligned buckets (before 1970 too), in numpy and SQL."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.matchers import canonical_labels
from app.model import SampleBatch
from app.services.retention import BEYOND, HISTORY, RAW, classify, metric_floors
from app.services.rollup import BY_NAME, bucket_start, closed_before, window_bounds
from app.storage.samples.protocol import MarkedBuckets
from app.storage.samples.row_sql import bucket_expr, buckets_of, marks_where
from app.storage.writes import Policies, bucket_pairs, dedupe_last, plan_write
from app.validation import series_key

HOUR = 3_600_000
DAY = 24 * HOUR
DEFAULTS = {"raw": 2 * DAY, "1m": 10 * DAY, "5m": 20 * DAY, "1h": 40 * DAY}

rows = st.lists(st.tuples(st.integers(0, 3), st.integers(-5, 5)), max_size=40)


@given(rows)
def test_dedupe_last_keeps_the_last_of_each_series_and_timestamp(
    pairs: list[tuple[int, int]],
) -> None:
    sids = np.array([s for s, _ in pairs], dtype=np.int64)
    ts = np.array([t for _, t in pairs], dtype=np.int64)
    chosen = dedupe_last(sids, ts)
    index = np.arange(sids.size) if chosen is None else chosen
    model: dict[tuple[int, int], int] = {}
    for i, key in enumerate(pairs):
        model[key] = i  # the last occurrence wins
    assert index.tolist() == [model[key] for key in sorted(model)]


@pytest.mark.parametrize(
    ("sids", "ts", "expected"),
    [
        ([], [], None),  # nothing to do
        ([1], [5], None),
        ([1, 1, 2], [1, 2, 0], None),  # strictly sorted already: the usual columnar import
        ([1, 1], [2, 2], [1]),  # a repeat: the later one
        ([2, 1, 1], [0, 3, 1], [2, 1, 0]),  # out of order: sorted by (series, ts)
        ([1, 1, 1], [4, 4, 3], [2, 1]),
    ],
)
def test_dedupe_last_cases(sids: list[int], ts: list[int], expected: list[int] | None) -> None:
    chosen = dedupe_last(np.array(sids, dtype=np.int64), np.array(ts, dtype=np.int64))
    assert (None if chosen is None else chosen.tolist()) == expected


def test_bucket_pairs_are_distinct_aligned_and_ordered() -> None:
    sids = np.array([1, 1, 1, 1, 2, 2], dtype=np.int64)
    ts = np.array([-61_000, -1, 0, 59_999, 60_000, 60_001], dtype=np.int64)
    got_sids, buckets = bucket_pairs(sids, ts, 60_000)
    assert got_sids.tolist() == [1, 1, 1, 2]
    assert buckets.tolist() == [-120_000, -60_000, 0, 60_000]
    empty = np.empty(0, dtype=np.int64)
    assert [a.size for a in bucket_pairs(empty, empty, 60_000)] == [0, 0]


@given(st.integers(-(2**50), 2**50), st.sampled_from(sorted(BY_NAME)))
def test_bucket_alignment_agrees_in_python_numpy_and_sql(ts: int, name: str) -> None:
    res = BY_NAME[name]
    start = bucket_start(ts, res)
    assert start <= ts < start + res.ms and start % res.ms == 0
    column = np.array([ts], dtype=np.int64)
    assert (column - column % res.ms).tolist() == [start]
    with sqlite3.connect(":memory:") as db:
        (got,) = db.execute(
            f"SELECT {bucket_expr('t', res.ms)} FROM (SELECT ? AS t)", (ts,)
        ).fetchone()
    assert got == start


def test_window_bounds_and_closed_buckets() -> None:
    res = BY_NAME["5m"]
    assert window_bounds(-1, 299_999, res) == (-300_000, 0)
    assert closed_before(10 * 60_000 + 5, 60_000, res) == 5 * 60_000


def test_horizon_checks_classify_raw_history_and_beyond() -> None:
    ts = np.array([99, 100, 50, 10, 9], dtype=np.int64)
    floor, oldest = np.full(5, 100), np.full(5, 10)
    assert classify(ts, floor, oldest).tolist() == [HISTORY, RAW, HISTORY, HISTORY, BEYOND]


def test_the_raw_floor_is_the_later_of_retention_and_the_horizon() -> None:
    now = 100 * DAY + 30 * 60_000
    floors = metric_floors(now, DEFAULTS, None, None, 0)
    assert floors.raw == 98 * DAY  # the cut-off, aligned to the hour
    assert floors.rollups == {"1m": 90 * DAY, "5m": 80 * DAY, "1h": 60 * DAY}
    assert floors.oldest == 60 * DAY
    assert metric_floors(now, DEFAULTS, None, 99 * DAY, 0).raw == 99 * DAY
    assert metric_floors(now, DEFAULTS, None, 10 * DAY, 0).raw == 98 * DAY  # never moves back
    assert metric_floors(now, DEFAULTS, {"raw": DAY}, None, 0).raw == 99 * DAY
    # Raw samples are kept until their hour is rolled up: the grace holds the floor back.
    assert (
        metric_floors(now, {**DEFAULTS, "raw": 0}, None, None, 45 * 60_000).raw
        == 99 * DAY + 23 * HOUR
    )


def test_a_write_plan_reads_horizons_of_its_metric_and_of_all() -> None:
    now = 100 * DAY
    keys = [series_key(m, canonical_labels({})) for m in ("a", "b")]
    batch = SampleBatch(
        keys=keys,
        series_index=np.array([0, 0, 1, 1, 0], dtype=np.int64),
        ts=np.array([99 * DAY, 97 * DAY, 98 * DAY + 1, 50 * DAY, DAY], dtype=np.int64),
        values=np.zeros(5),
    )
    policies = Policies.of(
        [
            ("h", "a", 99 * DAY, None, None, None, None),
            ("h", "*", 98 * DAY + 2, None, None, None, None),
        ]
    )
    plan = plan_write(batch, policies, now, DEFAULTS, 0)
    assert plan.floors["a"].raw == 99 * DAY and plan.floors["b"].raw == 98 * DAY + 2
    assert plan.kinds.tolist() == [RAW, HISTORY, HISTORY, BEYOND, BEYOND]
    assert plan.has_history
    recent = SampleBatch(keys, np.array([0, 1]), np.array([99 * DAY, 99 * DAY]), np.zeros(2))
    assert not plan_write(recent, Policies(), now, DEFAULTS, 0).kinds.any()


def test_marks_where_and_buckets_of() -> None:
    assert marks_where(MarkedBuckets("claimed")) == ""
    assert marks_where(MarkedBuckets("m", [3, 1], lo=0, hi=60, before=50)) == (
        " AND m.series_id IN (3,1) AND m.bucket >= 0 AND m.bucket <= 60 AND m.bucket < 50"
    )
    found = buckets_of([(2, 60, 1, 1.0, 1.0, 1.0, 1.0, 1.0, 61), (1, 0, 2, None, 0, 1, 1, 1, 5)])
    assert found.sids.tolist() == [1, 2] and found.bucket.tolist() == [0, 60]
    assert np.isnan(found.sum[0]) and found.last_ts.dtype == np.int64
    assert len(buckets_of([])) == 0
