"""Aggregation operators (`sum by (...)`, `topk`, `quantile`, `count_values`, ...), vectorized
over steps. Groups are found once per series; the arithmetic runs over (groups, steps) arrays,
with a Python loop over the series of a group at most (never over samples or steps).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from app.promql.errors import ExecutionError, Unsupported
from app.promql.format import go_float_f
from app.promql.range_functions import sorted_quantile
from app.promql.values import NAME, InstantVector, Labels, keep_labels, remove_labels, set_label

EXPERIMENTAL = frozenset({"limitk", "limit_ratio"})


@dataclass
class Groups:
    keys: list[Labels]  # output labels of each group, in first-seen order
    of_row: np.ndarray  # (K,) group index of each series

    @classmethod
    def of(cls, labels: Sequence[Labels], grouping: Sequence[str], without: bool) -> Groups:
        index: dict[Labels, int] = {}
        of_row = np.empty(len(labels), dtype=np.int64)
        drop = (*grouping, NAME)
        for row, series in enumerate(labels):
            key = remove_labels(series, drop) if without else keep_labels(series, grouping)
            of_row[row] = index.setdefault(key, len(index))
        return cls(list(index), of_row)

    def members(self) -> list[np.ndarray]:
        order = np.argsort(self.of_row, kind="stable")
        bounds = np.searchsorted(self.of_row[order], np.arange(len(self.keys) + 1))
        return [order[bounds[g] : bounds[g + 1]] for g in range(len(self.keys))]


def kahan_sum(
    values: np.ndarray, present: np.ndarray, members: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Neumaier-compensated sums per group and step, started at the first present value (as
    Prometheus' kahanSumInc): (sum, compensation), each (groups, N)."""
    steps = values.shape[1]
    total = np.zeros((len(members), steps))
    comp = np.zeros((len(members), steps))
    seen = np.zeros((len(members), steps), dtype=bool)
    longest = max((m.size for m in members), default=0)
    with np.errstate(all="ignore"):
        for rank in range(longest):
            active = np.array([g for g, m in enumerate(members) if m.size > rank], dtype=np.int64)
            rows = np.array([members[g][rank] for g in active], dtype=np.int64)
            x, here = values[rows], present[rows]
            s, c, first = total[active], comp[active], here & ~seen[active]
            t = s + x
            c_new = np.where(np.abs(s) >= np.abs(x), c + ((s - t) + x), c + ((x - t) + s))
            c_new = np.where(np.isinf(t), 0.0, c_new)
            add = here & ~first
            total[active] = np.where(first, x, np.where(add, t, s))
            comp[active] = np.where(first, 0.0, np.where(add, c_new, c))
            seen[active] |= here
    return total, comp


def _count(present: np.ndarray, members: list[np.ndarray]) -> np.ndarray:
    return np.stack([present[m].sum(axis=0) for m in members]) if members else np.zeros((0, 0))


def _sum(vec: InstantVector, members: list[np.ndarray], _: object) -> np.ndarray:
    total, comp = kahan_sum(vec.values, vec.present, members)
    with np.errstate(all="ignore"):
        out: np.ndarray = total + comp
    return out


def _avg(vec: InstantVector, members: list[np.ndarray], _: object) -> np.ndarray:
    count = _count(vec.present, members)
    total, comp = kahan_sum(vec.values, vec.present, members)
    with np.errstate(all="ignore"):
        mean: np.ndarray = total / count + comp / count
        overflow = np.isinf(total)
        if overflow.any():  # Prometheus switches to an incremental mean instead of overflowing
            finite = np.isfinite(vec.values) | ~vec.present
            all_finite = np.stack([finite[m].all(axis=0) for m in members])
            s, c = kahan_sum(vec.values * 2.0**-600, vec.present, members)
            mean = np.where(overflow & all_finite, (s / count + c / count) * 2.0**600, mean)
    return mean


def _extreme(fn: np.ufunc) -> Callable[[InstantVector, list[np.ndarray], object], np.ndarray]:
    def reduce(vec: InstantVector, members: list[np.ndarray], _: object) -> np.ndarray:
        masked = np.where(vec.present, vec.values, np.nan)
        return np.stack([fn.reduce(masked[m], axis=0) for m in members])

    return reduce


def _variance(vec: InstantVector, members: list[np.ndarray]) -> np.ndarray:
    count = _count(vec.present, members)
    total, comp = kahan_sum(vec.values, vec.present, members)
    out = np.zeros_like(total)
    with np.errstate(all="ignore"):
        mean = total / count + comp / count
        for g, m in enumerate(members):
            deviation = np.where(vec.present[m], vec.values[m] - mean[g], 0.0)
            out[g] = (deviation * deviation).sum(axis=0) / count[g]
    return out


def _quantile(vec: InstantVector, members: list[np.ndarray], q: object) -> np.ndarray:
    assert isinstance(q, np.ndarray)
    out = np.zeros((len(members), vec.steps))
    for g, m in enumerate(members):
        x, here = vec.values[m], vec.present[m]
        category = np.where(here, np.where(np.isnan(x), 0, 1), 2)  # NaN first, absent last
        order = np.lexsort((x, category), axis=0)
        ordered = np.take_along_axis(x, order, axis=0).T.ravel()  # step after step
        counts = here.sum(axis=0)
        offsets = np.arange(vec.steps) * len(m)
        out[g] = sorted_quantile(ordered, offsets, np.maximum(counts, 1), q)
    return out


REDUCERS: dict[str, Callable[[InstantVector, list[np.ndarray], object], np.ndarray]] = {
    "sum": _sum,
    "avg": _avg,
    "min": _extreme(np.fmin),
    "max": _extreme(np.fmax),
    "count": lambda vec, members, _: _count(vec.present, members).astype(np.float64),
    "group": lambda vec, members, _: np.ones((len(members), vec.steps)),
    "stdvar": lambda vec, members, _: _variance(vec, members),
    "stddev": lambda vec, members, _: np.sqrt(_variance(vec, members)),
    "quantile": _quantile,
}


def aggregate(
    op: str,
    vec: InstantVector,
    grouping: Sequence[str],
    without: bool,
    param: np.ndarray | str | None,
) -> InstantVector:
    if op in EXPERIMENTAL:
        raise Unsupported(f"the experimental aggregation {op}()")
    if op in ("topk", "bottomk"):
        assert isinstance(param, np.ndarray)
        return top_k(vec, grouping, without, param, largest=op == "topk")
    if op == "count_values":
        assert isinstance(param, str)
        return count_values(vec, grouping, without, param)
    reducer = REDUCERS.get(op)
    if reducer is None:
        raise Unsupported(f"the aggregation {op}()")
    groups = Groups.of(vec.labels, grouping, without)
    members = groups.members()
    if not members:
        return InstantVector.empty(vec.steps)
    present = _count(vec.present, members) > 0
    values = reducer(vec, members, param)
    return InstantVector(groups.keys, np.where(present, values, 0.0), present).without_empty()


def top_k(
    vec: InstantVector, grouping: Sequence[str], without: bool, k_param: np.ndarray, largest: bool
) -> InstantVector:
    """topk/bottomk: per group and step the k largest (smallest) values, NaN counted as the
    smallest (largest) last, ties in series order. The series keep all their labels."""
    if np.isnan(k_param).any():
        raise ExecutionError("Parameter value is NaN")
    if (np.abs(k_param) >= 2.0**63).any():
        raise ExecutionError(f"Scalar value {k_param.max():g} overflows int64")
    k = np.trunc(k_param).astype(np.int64)
    groups = Groups.of(vec.labels, grouping, without)
    chosen = np.zeros_like(vec.present)
    rank_of = np.zeros(vec.present.shape, dtype=np.int64)
    for m in groups.members():
        x, here = vec.values[m], vec.present[m]
        keyed = -x if largest else x
        row = np.broadcast_to(np.arange(len(m))[:, None], x.shape)
        order = np.lexsort((row, keyed, np.isnan(x), ~here), axis=0)
        ranks = np.empty_like(order)
        np.put_along_axis(ranks, order, np.arange(len(m))[:, None], axis=0)
        chosen[m] = here & (ranks < k[None, :])
        rank_of[m] = ranks
    out = InstantVector(list(vec.labels), vec.values, chosen).without_empty()
    if vec.steps == 1 and len(out.labels) > 1:  # an instant query shows each group in order
        kept = np.flatnonzero(chosen.any(axis=1))
        order = np.lexsort((rank_of[kept, 0], groups.of_row[kept]))
        out = out.rows(order)
    return out


def count_values(
    vec: InstantVector, grouping: Sequence[str], without: bool, label: str
) -> InstantVector:
    """count_values("label", v): per group, how many series have each value (the value
    formatted as Go's strconv.FormatFloat(v, 'f', -1, 64))."""
    if not label:
        raise ExecutionError(f'invalid label name "{label}"')
    rows, steps = np.nonzero(vec.present)
    values = vec.values[rows, steps]
    bits = values.view(np.uint64)
    pairs = np.stack([rows, bits.astype(np.int64)], axis=1) if rows.size else np.empty((0, 2))
    unique, inverse = np.unique(pairs, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    out_index: dict[Labels, int] = {}
    target = np.empty(len(unique), dtype=np.int64)
    for i, (row, raw) in enumerate(unique.tolist()):
        text = go_float_f(float(np.int64(raw).view(np.float64)))
        series = set_label(vec.labels[row], label, text)
        key = (
            remove_labels(series, (*grouping, NAME))
            if without
            else keep_labels(series, (*grouping, label))
        )
        target[i] = out_index.setdefault(key, len(out_index))
    counts = np.zeros((len(out_index), vec.steps))
    if rows.size:
        np.add.at(counts, (target[inverse], steps), 1.0)
    return InstantVector(list(out_index), counts, counts > 0)
