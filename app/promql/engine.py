"""The evaluator: walks the expression tree once, each node evaluated for all its evaluation
timestamps at once (`times`, int64 ms), on samples loaded beforehand (`app.promql.loader`).

Step-invariant parts (`StepInvariant`, from `@`) are evaluated at the first timestamp only and
repeated; subqueries evaluate their expression at their own, step-aligned timestamps.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from app.matchers import Matcher
from app.promql import aggregations, ast, binary, functions, histogram, selectors
from app.promql.dates import DATE_FUNCTIONS
from app.promql.errors import EvaluationTimeout, ExecutionError, TooManySamples, Unsupported
from app.promql.range_functions import KEEP_NAME, MATRIX_ARGUMENT, RANGE_FUNCTIONS, Windows
from app.promql.selectors import SeriesSet
from app.promql.values import (
    InstantVector,
    RangeVector,
    Scalar,
    StringValue,
    Value,
    drop_name,
    is_stale,
    merge_rows,
)

DEFAULT_SUBQUERY_STEP_MS = 60_000
NATIVE_HISTOGRAM_FUNCTIONS = frozenset(
    {
        "histogram_count",
        "histogram_sum",
        "histogram_avg",
        "histogram_fraction",
        "histogram_stddev",
        "histogram_stdvar",
    }
)


@dataclass
class Limits:
    lookback_ms: int = selectors.LOOKBACK_MS
    max_samples: int = 50_000_000
    deadline: float = float("inf")  # time.monotonic() value
    timeout_seconds: float = 0.0


class Evaluator:
    def __init__(
        self,
        data: Mapping[tuple[Matcher, ...], SeriesSet],
        limits: Limits,
        precomputed: Sequence[InstantVector] = (),
    ) -> None:
        self.data = data
        self.limits = limits
        self.precomputed = precomputed

    def eval(self, node: ast.Node, times: np.ndarray) -> Value:
        if time.monotonic() > self.limits.deadline:
            raise EvaluationTimeout(self.limits.timeout_seconds)
        value = self._eval(node, times)
        if isinstance(value, InstantVector) and value.values.size > self.limits.max_samples:
            raise TooManySamples(self.limits.max_samples)
        return value

    def _eval(self, node: ast.Node, times: np.ndarray) -> Value:
        match node:
            case ast.NumberLiteral(value=v):
                return Scalar(np.full(times.size, v))
            case ast.StringLiteral(value=v):
                return StringValue(v)
            case ast.Selector():
                return self.selector(node, times)
            case ast.RangeSelector(selector=sel, range_ms=range_ms):
                data = self.data.get(sel.matchers, SeriesSet.empty())
                return selectors.range_vector(
                    data, self.refs(sel.at, sel.offset_ms, times), range_ms
                )
            case ast.Subquery():
                return self.subquery(node, times)
            case ast.Negation(expr=expr):
                return self.negation(self.eval(expr, times))
            case ast.StepInvariant(expr=expr):
                return repeat(self.eval(expr, times[:1]), times.size)
            case ast.Aggregate():
                return self.aggregate(node, times)
            case ast.Binary():
                return self.binary(node, times)
            case ast.Call():
                return self.call(node, times)
            case ast.Precomputed(index=index):
                value = self.precomputed[index]
                assert value.steps == times.size
                return value
        raise Unsupported(f"the expression {node!r}")

    @staticmethod
    def refs(at: ast.At | None, offset_ms: int, times: np.ndarray) -> np.ndarray:
        """The times a selector looks at: each evaluation time, or the `@` time, less offset."""
        base = np.full(times.size, at.ms, dtype=np.int64) if at is not None else times
        return base - offset_ms

    def selector(self, node: ast.Selector, times: np.ndarray) -> InstantVector:
        data = self.data.get(node.matchers, SeriesSet.empty())
        refs = self.refs(node.at, node.offset_ms, times)
        return selectors.instant(data, refs, self.limits.lookback_ms).without_empty()

    def subquery(self, node: ast.Subquery, times: np.ndarray) -> RangeVector:
        ends = self.refs(node.at, node.offset_ms, times)
        inner_times = subquery_times(ends, node.range_ms, node.step_ms, self.limits.max_samples)
        if inner_times.size == 0:
            empty = SeriesSet.empty()
            return selectors.range_vector(empty, ends, node.range_ms)
        inner = self.eval(node.expr, inner_times)
        if not isinstance(inner, InstantVector):
            raise ExecutionError("subqueries need an instant vector expression")
        rows, cols = np.nonzero(inner.present)
        values = inner.values[rows, cols]
        keep = ~is_stale(values)
        data = SeriesSet.from_rows(inner.labels, rows[keep], inner_times[cols][keep], values[keep])
        return selectors.range_vector(data, ends, node.range_ms)

    @staticmethod
    def negation(value: Value) -> Value:
        if isinstance(value, Scalar):
            return Scalar(-value.values)
        assert isinstance(value, InstantVector)
        return merge_rows([drop_name(lb) for lb in value.labels], -value.values, value.present)

    def aggregate(self, node: ast.Aggregate, times: np.ndarray) -> InstantVector:
        param: np.ndarray | str | None = None
        if node.param is not None:
            value = self.eval(node.param, times)
            param = value.value if isinstance(value, StringValue) else _scalar(value)
        vec = self.eval(node.expr, times)
        assert isinstance(vec, InstantVector)
        return aggregations.aggregate(node.op, vec, node.grouping, node.without, param)

    def binary(self, node: ast.Binary, times: np.ndarray) -> Value:
        lhs, rhs = self.eval(node.lhs, times), self.eval(node.rhs, times)
        if isinstance(lhs, Scalar) and isinstance(rhs, Scalar):
            return binary.scalar_scalar(node.op, lhs, rhs)
        if isinstance(lhs, InstantVector) and isinstance(rhs, Scalar):
            return binary.vector_scalar(node.op, lhs, rhs, False, node.return_bool)
        if isinstance(lhs, Scalar) and isinstance(rhs, InstantVector):
            return binary.vector_scalar(node.op, rhs, lhs, True, node.return_bool)
        assert isinstance(lhs, InstantVector) and isinstance(rhs, InstantVector)
        assert node.matching is not None
        if node.op in ast.SET_OPERATORS:
            return binary.set_operation(node.op, lhs, rhs, node.matching)
        return binary.vector_vector(node.op, lhs, rhs, node.matching, node.return_bool)

    def call(self, node: ast.Call, times: np.ndarray) -> Value:
        name = node.func
        if name in RANGE_FUNCTIONS:
            return self.range_function(node, times)
        if name == "absent_over_time":
            rv = self.eval(node.args[0], times)
            assert isinstance(rv, RangeVector)
            lo, hi = selectors.window_bounds(rv)
            any_sample = InstantVector(rv.labels, np.zeros(lo.shape), hi > lo)
            return functions.absent(any_sample, node.args[0])
        if name == "timestamp":
            return self.timestamp(node, times)
        if name == "time":
            return Scalar(times / 1000)
        if name == "pi":
            return Scalar(np.full(times.size, np.pi))
        if name in NATIVE_HISTOGRAM_FUNCTIONS:
            # These read native histograms only; this server stores float samples only, so
            # Prometheus' answer for them is always empty.
            self.eval(node.args[-1], times)
            return InstantVector.empty(times.size)
        args = [self.eval(a, times) for a in node.args]
        return call_instant_function(name, args, node, times)

    def range_function(self, node: ast.Call, times: np.ndarray) -> InstantVector:
        position = MATRIX_ARGUMENT.get(node.func, 0)
        rv = self.eval(node.args[position], times)
        assert isinstance(rv, RangeVector)
        params = [_scalar(self.eval(a, times)) for i, a in enumerate(node.args) if i != position]
        lo, hi = selectors.window_bounds(rv)
        values, present = RANGE_FUNCTIONS[node.func](Windows(rv, lo, hi, params, times))
        labels = rv.labels if node.func in KEEP_NAME else [drop_name(lb) for lb in rv.labels]
        return merge_rows(labels, np.where(present, values, 0.0), present).without_empty()

    def timestamp(self, node: ast.Call, times: np.ndarray) -> InstantVector:
        arg = node.args[0]
        while isinstance(arg, ast.StepInvariant):
            arg = arg.expr
        if isinstance(arg, ast.Selector):  # the timestamps of the samples themselves
            data = self.data.get(arg.matchers, SeriesSet.empty())
            refs = self.refs(arg.at, arg.offset_ms, times)
            vec, sample_ts = selectors.instant_with_ts(data, refs, self.limits.lookback_ms)
            values = sample_ts / 1000
        else:
            value = self.eval(node.args[0], times)
            assert isinstance(value, InstantVector)
            vec, values = value, np.broadcast_to(times / 1000, value.values.shape)
        labels = [drop_name(lb) for lb in vec.labels]
        return merge_rows(labels, np.where(vec.present, values, 0.0), vec.present).without_empty()


def call_instant_function(name: str, args: list[Value], node: ast.Call, times: np.ndarray) -> Value:
    if name in functions.MATH:
        return functions.math_function(name, args)
    if name in DATE_FUNCTIONS:
        return functions.date_function(name, args, times)
    vec = args[0] if args else None
    match name:
        case "round":
            return functions.round_function(args)
        case "clamp":
            return functions.clamp(_vec(vec), _scalar(args[1]), _scalar(args[2]))
        case "clamp_min":
            low = _scalar(args[1])
            return functions.clamp(_vec(vec), low, np.full(low.size, np.inf))
        case "clamp_max":
            high = _scalar(args[1])
            return functions.clamp(_vec(vec), np.full(high.size, -np.inf), high)
        case "scalar":
            return functions.scalar_of(args)
        case "vector":
            return functions.vector_of(args)
        case "sort":
            return functions.sort_rows(_vec(vec), descending=False)
        case "sort_desc":
            return functions.sort_rows(_vec(vec), descending=True)
        case "label_replace":
            return functions.label_replace(_vec(vec), args)
        case "label_join":
            return functions.label_join(_vec(vec), args)
        case "absent":
            return functions.absent(_vec(vec), node.args[0])
        case "histogram_quantile":
            return histogram.histogram_quantile(_scalar(args[0]), _vec(args[1]))
    raise Unsupported(f"the function {name}()")


def _vec(value: Value | None) -> InstantVector:
    assert isinstance(value, InstantVector)
    return value


def _scalar(value: Value) -> np.ndarray:
    if not isinstance(value, Scalar):
        raise ExecutionError("expected a scalar")
    return value.values


def repeat(value: Value, steps: int) -> Value:
    """A value computed at one step, as the value at every step."""
    match value:
        case Scalar(values=v):
            return Scalar(np.repeat(v, steps))
        case InstantVector():
            return InstantVector(
                value.labels,
                np.repeat(value.values, steps, axis=1),
                np.repeat(value.present, steps, axis=1),
            )
        case RangeVector():
            return RangeVector(
                value.labels,
                value.starts,
                value.ts,
                value.values,
                np.repeat(value.ends, steps),
                value.range_ms,
            )
    return value


def _truncated_division(a: int, b: int) -> int:
    """Go's integer division (toward zero)."""
    q = abs(a) // b
    return q if a >= 0 else -q


def subquery_times(
    ends: np.ndarray, range_ms: int, step_ms: int | None, max_steps: int
) -> np.ndarray:
    """The timestamps a subquery evaluates its expression at: multiples of its step after the
    earliest window's start, up to the latest window's end (Prometheus' alignment)."""
    step = step_ms or DEFAULT_SUBQUERY_STEP_MS
    low = int(ends.min()) - range_ms
    start = step * _truncated_division(low, step)
    if start <= low:
        start += step
    last = int(ends.max())
    if last >= start and (last - start) // step + 1 > max_steps:
        raise TooManySamples(max_steps)
    return np.arange(start, last + 1, step, dtype=np.int64)
