"""Serving `sum|count|avg|min|max_over_time(metric[r])` from the stored rollups where that
gives the answer the raw samples give.

A PromQL window is `(t - r, t]`; a rollup bucket is `[b, b + w)`. When the range is a multiple
of a bucket width w and every window's end is a multiple of w, a window is its r / w buckets
less the sample exactly at `t - r` plus the one exactly at `t`. Those edge samples are read
(point lookups), and the answer is exact when:

- no sample in the windows is a NaN (a stale marker is fine: neither side counts it), as rollups
  leave NaN out while PromQL's windows hold them;
- no bucket holds an infinity or a magnitude above 1e300 (rollup sums bound their terms);
- for min and max, no window's left-edge sample holds its buckets' minimum (maximum): taking
  it out could not be undone.

Otherwise the raw samples are read, as for any other query. Only functions evaluated at the
query's own times are served (not inside subqueries or `@`), of a selector naming its metric,
covering at least ROLLUP_MIN_SPAN_MS.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from app.matchers import Matcher
from app.promql import ast
from app.promql.values import InstantVector, labels_of, merge_rows
from app.services.rollup import RESOLUTIONS, Resolution
from app.storage.series_index import RollupWindows
from app.storage.store import UnknownMetric

SERVABLE = frozenset(
    {"sum_over_time", "count_over_time", "avg_over_time", "min_over_time", "max_over_time"}
)
ROLLUP_MIN_SPAN_MS = 30 * 60_000
SUM_LIMIT = 1e300


class RollupSource(Protocol):
    async def rollup_windows(
        self,
        metric: str,
        matchers: Sequence[Matcher],
        res: Resolution,
        start_ms: int,
        end_ms: int,
        edges: Sequence[int],
    ) -> RollupWindows: ...


@dataclass(frozen=True)
class Candidate:
    call: ast.Call
    metric: str
    matchers: tuple[Matcher, ...]  # without the metric name
    res: Resolution
    ends: np.ndarray  # window ends (evaluation times less the offset)
    range_ms: int

    @property
    def first_bucket(self) -> int:
        return int(self.ends[0]) - self.range_ms

    @property
    def edges(self) -> list[int]:
        """Timestamps of every window's left and right edge."""
        stamps = np.union1d(self.ends - self.range_ms, self.ends)
        return [int(t) for t in stamps]


def candidate(call: ast.Call, times: np.ndarray) -> Candidate | None:
    if call.func not in SERVABLE or len(call.args) != 1:
        return None
    arg = call.args[0]
    if not isinstance(arg, ast.RangeSelector) or arg.selector.at is not None:
        return None
    names = [m for m in arg.selector.matchers if m.name == "__name__"]
    if len(names) != 1 or not names[0].is_exact:
        return None
    ends = times - arg.selector.offset_ms
    span = int(ends[-1] - ends[0]) + arg.range_ms
    if span < ROLLUP_MIN_SPAN_MS:
        return None
    for res in sorted(RESOLUTIONS, key=lambda r: -r.ms):
        if arg.range_ms % res.ms == 0 and not (ends % res.ms).any():
            labels = tuple(m for m in arg.selector.matchers if m.name != "__name__")
            return Candidate(call, names[0].value, labels, res, ends, arg.range_ms)
    return None


def candidates(node: ast.Node, times: np.ndarray) -> list[Candidate]:
    """Servable calls evaluated at the query's own times (not inside a subquery or `@`)."""
    found = []
    if isinstance(node, ast.Call):
        chosen = candidate(node, times)
        if chosen is not None:
            return [chosen]
    if isinstance(node, ast.Subquery | ast.StepInvariant | ast.RangeSelector):
        return []
    for child in ast.children(node):
        found += candidates(child, times)
    return found


def substitute(node: ast.Node, served: dict[ast.Call, int]) -> ast.Node:
    """The tree with the served calls (at the query's own times) replaced by Precomputed."""
    match node:
        case ast.Call() if node in served:
            return ast.Precomputed(served[node])
        case ast.Call(args=args):
            return replace(node, args=tuple(substitute(a, served) for a in args))
        case ast.Aggregate(expr=expr, param=param):
            new_param = None if param is None else substitute(param, served)
            return replace(node, expr=substitute(expr, served), param=new_param)
        case ast.Binary(lhs=lhs, rhs=rhs):
            return replace(node, lhs=substitute(lhs, served), rhs=substitute(rhs, served))
        case ast.Negation(expr=expr):
            return replace(node, expr=substitute(expr, served))
    return node


async def serve(store: RollupSource, cand: Candidate) -> InstantVector | None:
    """The call's value from rollups, or None where that would not be exact."""
    last_bucket = int(cand.ends[-1]) - cand.res.ms
    try:
        read = await store.rollup_windows(
            cand.metric, cand.matchers, cand.res, cand.first_bucket, last_bucket, cand.edges
        )
    except UnknownMetric:
        return InstantVector.empty(cand.ends.size)
    if read.has_nan:
        return None
    labels, values, present = [], [], []
    for ref, buckets in zip(read.refs, read.rollups, strict=True):
        here = read.edge_sids == ref.id
        windows = combine(
            cand,
            buckets.bucket,
            buckets.count,
            buckets.sum,
            buckets.min,
            buckets.max,
            read.edge_ts[here],
            read.edge_values[here],
        )
        if windows is None:
            return None
        labels.append(labels_of(ref.labels))
        values.append(windows[0])
        present.append(windows[1])
    if not labels:
        return InstantVector.empty(cand.ends.size)
    return merge_rows(labels, np.stack(values), np.stack(present)).without_empty()


def combine(
    cand: Candidate,
    starts: np.ndarray,
    count: np.ndarray,
    total: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    edge_ts: np.ndarray,
    edge_values: np.ndarray,
) -> tuple[np.ndarray, np.ndarray] | None:
    """One series' windows from its buckets and edge samples: (values, present), or None."""
    finite = np.isfinite(low) & np.isfinite(high)
    if not finite.all() or (np.abs(np.concatenate([low, high])) > SUM_LIMIT).any():
        return None
    if np.isnan(edge_values).any():  # a NaN on an edge (stale markers were left out already)
        stale = edge_values.view(np.uint64) == np.uint64(0x7FF0000000000002)
        if not stale[np.isnan(edge_values)].all():
            return None
        edge_ts, edge_values = edge_ts[~stale], edge_values[~stale]
    width, k = cand.res.ms, cand.range_ms // cand.res.ms
    slots = (int(cand.ends[-1]) - cand.first_bucket) // width
    grid_count = np.zeros(slots, dtype=np.int64)
    grid_sum, grid_min, grid_max = np.zeros(slots), np.full(slots, np.inf), np.full(slots, -np.inf)
    pos = (starts - cand.first_bucket) // width
    grid_count[pos], grid_sum[pos], grid_min[pos], grid_max[pos] = count, total, low, high
    first = (cand.ends - cand.range_ms - cand.first_bucket) // width  # each window's first slot
    n = sliding_window_view(grid_count, k)[first].sum(axis=1)
    s = sliding_window_view(grid_sum, k)[first].sum(axis=1)
    lo = sliding_window_view(grid_min, k)[first].min(axis=1)
    hi = sliding_window_view(grid_max, k)[first].max(axis=1)
    left = _at(edge_ts, edge_values, cand.ends - cand.range_ms)
    right = _at(edge_ts, edge_values, cand.ends)
    has_left, has_right = ~np.isnan(left), ~np.isnan(right)
    func = cand.call.func
    if func in ("min_over_time", "max_over_time"):
        extreme = lo if func == "min_over_time" else hi
        if (has_left & (left == extreme)).any():
            return None  # the excluded sample may be the window's only extreme
    n = n - has_left + has_right
    s = s - np.where(has_left, left, 0.0) + np.where(has_right, right, 0.0)
    lo, hi = np.fmin(lo, right), np.fmax(hi, right)
    with np.errstate(all="ignore"):
        value = {
            "sum_over_time": s,
            "count_over_time": n.astype(np.float64),
            "avg_over_time": s / n,
            "min_over_time": lo,
            "max_over_time": hi,
        }[func]
    present = n > 0
    return np.where(present, value, 0.0), present


def _at(ts: np.ndarray, values: np.ndarray, when: np.ndarray) -> np.ndarray:
    """The value at each exact timestamp, NaN where there is none."""
    order = np.argsort(ts)
    ts, values = ts[order], values[order]
    idx = np.clip(np.searchsorted(ts, when), 0, max(ts.size - 1, 0))
    if ts.size == 0:
        return np.full(when.size, np.nan)
    return np.where(ts[idx] == when, values[idx], np.nan)
