"""Which samples a query needs: for every selector (by its matchers), the time range its
evaluation will look at, found by walking the tree with the evaluation times' bounds as the
evaluator will (offsets, `@`, ranges, lookback, subquery alignment)."""

from __future__ import annotations

import numpy as np

from app.matchers import Matcher
from app.promql import ast
from app.promql.engine import subquery_times

Ranges = dict[tuple[Matcher, ...], tuple[int, int]]  # inclusive [lo, hi] ms


def selector_ranges(
    node: ast.Node, first: int, last: int, lookback_ms: int, max_steps: int
) -> Ranges:
    ranges: Ranges = {}
    _visit(node, first, last, lookback_ms, max_steps, ranges)
    return ranges


def _refs(at: ast.At | None, offset_ms: int, first: int, last: int) -> tuple[int, int]:
    if at is not None:
        return at.ms - offset_ms, at.ms - offset_ms
    return first - offset_ms, last - offset_ms


def _need(ranges: Ranges, matchers: tuple[Matcher, ...], lo: int, hi: int) -> None:
    if matchers in ranges:
        old_lo, old_hi = ranges[matchers]
        lo, hi = min(lo, old_lo), max(hi, old_hi)
    ranges[matchers] = (lo, hi)


def _visit(
    node: ast.Node, first: int, last: int, lookback: int, max_steps: int, ranges: Ranges
) -> None:
    match node:
        case ast.Selector(matchers=matchers, offset_ms=offset, at=at):
            lo, hi = _refs(at, offset, first, last)
            _need(ranges, matchers, lo - lookback + 1, hi)
        case ast.RangeSelector(selector=sel, range_ms=range_ms):
            lo, hi = _refs(sel.at, sel.offset_ms, first, last)
            _need(ranges, sel.matchers, lo - range_ms + 1, hi)
        case ast.Subquery(expr=expr, range_ms=range_ms, step_ms=step, offset_ms=offset, at=at):
            lo, hi = _refs(at, offset, first, last)
            inner = subquery_times(np.array([lo, hi]), range_ms, step, max_steps)
            if inner.size:
                _visit(expr, int(inner[0]), int(inner[-1]), lookback, max_steps, ranges)
        case ast.StepInvariant(expr=expr):
            _visit(expr, first, first, lookback, max_steps, ranges)
        case _:
            for child in ast.children(node):
                _visit(child, first, last, lookback, max_steps, ranges)
