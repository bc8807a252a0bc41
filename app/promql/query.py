"""Instant and range queries: parse, plan which samples are needed, load them from the store,
evaluate (in a worker thread: the arithmetic is CPU-bound numpy), shape the answer."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from app.promql import ast, loader, plan, rollups
from app.promql.engine import Evaluator, Limits
from app.promql.errors import BadData
from app.promql.parse import parse
from app.promql.results import QueryResult, instant_result, range_result
from app.promql.selectors import LOOKBACK_MS
from app.promql.values import InstantVector

MAX_POINTS_PER_SERIES = 11_000
INLINE_SAMPLES = 20_000  # below this many loaded samples, evaluate on the event loop
KEEP_ORDER = frozenset({"sort", "sort_desc"})
KEEP_ORDER_AGGREGATIONS = frozenset({"topk", "bottomk"})


@dataclass(frozen=True)
class QueryOptions:
    max_samples: int
    timeout_seconds: float
    lookback_ms: int = LOOKBACK_MS
    use_rollups: bool = True


class Source(loader.SampleSource, rollups.RollupSource, Protocol):
    """The store as the query engine reads it."""


def prepare(text: str, start_ms: int, end_ms: int) -> ast.Node:
    node = parse(text)
    return ast.wrap_step_invariant(ast.resolve_at(node, start_ms, end_ms))


def _keeps_order(node: ast.Node) -> bool:
    while isinstance(node, ast.StepInvariant):
        node = node.expr
    if isinstance(node, ast.Call):
        return node.func in KEEP_ORDER
    return isinstance(node, ast.Aggregate) and node.op in KEEP_ORDER_AGGREGATIONS


async def _from_rollups(
    store: Source, node: ast.Node, times: np.ndarray
) -> tuple[ast.Node, list[InstantVector]]:
    """Serve what rollups answer exactly (app.promql.rollups); the rest stays in the tree."""
    served: dict[ast.Call, int] = {}
    values: list[InstantVector] = []
    for cand in rollups.candidates(node, times):
        if cand.call in served:
            continue
        value = await rollups.serve(store, cand)
        if value is not None:
            served[cand.call] = len(values)
            values.append(value)
    return rollups.substitute(node, served), values


async def _evaluate(
    store: Source, node: ast.Node, times: np.ndarray, options: QueryOptions
) -> object:
    deadline = time.monotonic() + options.timeout_seconds
    precomputed: list[InstantVector] = []
    if options.use_rollups:
        node, precomputed = await _from_rollups(store, node, times)
    ranges = plan.selector_ranges(
        node, int(times[0]), int(times[-1]), options.lookback_ms, options.max_samples
    )
    data = await loader.load(store, ranges, options.max_samples)
    limits = Limits(options.lookback_ms, options.max_samples, deadline, options.timeout_seconds)
    evaluator = Evaluator(data, limits, precomputed)
    loaded = sum(series.ts.size for series in data.values())
    if loaded + sum(v.values.size for v in precomputed) < INLINE_SAMPLES:
        return evaluator.eval(node, times)  # small: a thread hop would cost more than this
    return await asyncio.to_thread(evaluator.eval, node, times)


async def instant_query(
    store: Source, text: str, time_ms: int, options: QueryOptions
) -> QueryResult:
    node = prepare(text, time_ms, time_ms)
    times = np.array([time_ms], dtype=np.int64)
    value = await _evaluate(store, node, times, options)
    return instant_result(value, time_ms, keep_order=_keeps_order(node))  # type: ignore[arg-type]


def check_range(start_ms: int, end_ms: int, step_ms: int) -> None:
    if end_ms < start_ms:
        raise BadData('invalid parameter "end": end timestamp must not be before start time')
    if step_ms <= 0:
        raise BadData(
            'invalid parameter "step": zero or negative query resolution step widths are not'
            " accepted. Try a positive integer"
        )
    if (end_ms - start_ms) // step_ms > MAX_POINTS_PER_SERIES:
        raise BadData(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the"
            " query resolution (?step=XX)"
        )


async def range_query(
    store: Source,
    text: str,
    start_ms: int,
    end_ms: int,
    step_ms: int,
    options: QueryOptions,
) -> QueryResult:
    check_range(start_ms, end_ms, step_ms)
    node = prepare(text, start_ms, end_ms)
    kind = ast.value_type(node)
    if kind not in ("scalar", "vector"):
        shown = "range vector" if kind == "matrix" else kind
        raise BadData(
            f'invalid parameter "query": invalid expression type "{shown}" for range query,'
            " must be Scalar or instant Vector"
        )
    times = np.arange(start_ms, end_ms + 1, step_ms, dtype=np.int64)
    value = await _evaluate(store, node, times, options)
    return range_result(value, times)  # type: ignore[arg-type]
