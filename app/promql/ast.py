"""The expression tree the evaluator works on: our own small, typed nodes, built from
`promql-parser`'s tree by `app.promql.parse` so the evaluator never depends on the binding.

Times are integer milliseconds. `@ start()` / `@ end()` are resolved to times per query
(`resolve_at`), and the step-invariant parts of a query are wrapped in `StepInvariant` the way
Prometheus does it (`wrap_step_invariant`), so that they are evaluated once and repeated.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Literal

from app.matchers import Matcher

ValueType = Literal["scalar", "vector", "matrix", "string"]
Card = Literal["one-to-one", "many-to-one", "one-to-many", "many-to-many"]
AtKind = Literal["time", "start", "end"]


@dataclass(frozen=True)
class At:
    kind: AtKind
    ms: int = 0


@dataclass(frozen=True)
class NumberLiteral:
    value: float


@dataclass(frozen=True)
class StringLiteral:
    value: str


@dataclass(frozen=True)
class Selector:
    """An instant vector selector; `matchers` include the metric name as a `__name__` matcher."""

    matchers: tuple[Matcher, ...]
    offset_ms: int = 0
    at: At | None = None


@dataclass(frozen=True)
class RangeSelector:
    selector: Selector
    range_ms: int


@dataclass(frozen=True)
class Subquery:
    expr: Node
    range_ms: int
    step_ms: int | None  # None: the default resolution
    offset_ms: int = 0
    at: At | None = None


@dataclass(frozen=True)
class Call:
    func: str
    args: tuple[Node, ...]


@dataclass(frozen=True)
class Aggregate:
    op: str
    expr: Node
    param: Node | None
    grouping: tuple[str, ...]
    without: bool


@dataclass(frozen=True)
class Matching:
    card: Card
    on: bool  # True: `on(labels)`; False: `ignoring(labels)`
    labels: tuple[str, ...]
    include: tuple[str, ...] = ()


@dataclass(frozen=True)
class Binary:
    op: str
    lhs: Node
    rhs: Node
    return_bool: bool = False
    matching: Matching | None = None  # None between scalars or a scalar and a vector


@dataclass(frozen=True)
class Negation:
    expr: Node


@dataclass(frozen=True)
class StepInvariant:
    """A part of the expression whose value is the same at every step (it selects with `@`):
    evaluated at the first step only and repeated."""

    expr: Node


@dataclass(frozen=True)
class Precomputed:
    """A part of the expression already evaluated at the query's own times (a range function
    served from rollups, app.promql.rollups): the evaluator takes its value as it is."""

    index: int


Node = (
    Precomputed
    | NumberLiteral
    | StringLiteral
    | Selector
    | RangeSelector
    | Subquery
    | Call
    | Aggregate
    | Binary
    | Negation
    | StepInvariant
)

COMPARISONS = frozenset({"==", "!=", ">", "<", ">=", "<="})
SET_OPERATORS = frozenset({"and", "or", "unless"})
ARITHMETIC = frozenset({"+", "-", "*", "/", "%", "^", "atan2"})

# Function result types; the argument types were already checked by the parser.
SCALAR_FUNCTIONS = frozenset({"time", "scalar", "pi"})
# Date functions and time() give the evaluation time without an argument: never step-invariant.
AT_MODIFIER_UNSAFE = frozenset(
    {
        "time",
        "timestamp",
        "days_in_month",
        "day_of_month",
        "day_of_week",
        "day_of_year",
        "hour",
        "minute",
        "month",
        "year",
    }
)


def value_type(node: Node) -> ValueType:
    match node:
        case NumberLiteral():
            return "scalar"
        case StringLiteral():
            return "string"
        case Selector() | Aggregate() | Precomputed():
            return "vector"
        case RangeSelector() | Subquery():
            return "matrix"
        case Call(func=func):
            return "scalar" if func in SCALAR_FUNCTIONS else "vector"
        case Binary(lhs=lhs, rhs=rhs):
            both_scalar = value_type(lhs) == "scalar" and value_type(rhs) == "scalar"
            return "scalar" if both_scalar else "vector"
        case Negation(expr=expr) | StepInvariant(expr=expr):
            return value_type(expr)
    raise TypeError(f"not a node: {node!r}")


def children(node: Node) -> Iterator[Node]:
    match node:
        case RangeSelector(selector=selector):
            yield selector
        case Subquery(expr=expr) | Negation(expr=expr) | StepInvariant(expr=expr):
            yield expr
        case Call(args=args):
            yield from args
        case Aggregate(expr=expr, param=param):
            if param is not None:
                yield param
            yield expr
        case Binary(lhs=lhs, rhs=rhs):
            yield lhs
            yield rhs


def walk(node: Node) -> Iterator[Node]:
    yield node
    for child in children(node):
        yield from walk(child)


def _resolved(at: At | None, start_ms: int, end_ms: int) -> At | None:
    if at is None or at.kind == "time":
        return at
    return At("time", start_ms if at.kind == "start" else end_ms)


def resolve_at(node: Node, start_ms: int, end_ms: int) -> Node:
    """`@ start()` and `@ end()` as the query's start and end times."""
    match node:
        case Selector(at=at):
            return replace(node, at=_resolved(at, start_ms, end_ms))
        case RangeSelector(selector=sel):
            resolved = resolve_at(sel, start_ms, end_ms)
            assert isinstance(resolved, Selector)
            return replace(node, selector=resolved)
        case Subquery(expr=expr, at=at):
            inner = resolve_at(expr, start_ms, end_ms)
            return replace(node, expr=inner, at=_resolved(at, start_ms, end_ms))
        case Call(args=args):
            return replace(node, args=tuple(resolve_at(a, start_ms, end_ms) for a in args))
        case Aggregate(expr=expr, param=param):
            new_param = None if param is None else resolve_at(param, start_ms, end_ms)
            return replace(node, expr=resolve_at(expr, start_ms, end_ms), param=new_param)
        case Binary(lhs=lhs, rhs=rhs):
            return replace(
                node, lhs=resolve_at(lhs, start_ms, end_ms), rhs=resolve_at(rhs, start_ms, end_ms)
            )
        case Negation(expr=expr) | StepInvariant(expr=expr):
            return replace(node, expr=resolve_at(expr, start_ms, end_ms))
    return node


def wrap_step_invariant(node: Node) -> Node:
    """Mark the highest step-invariant subtrees, following Prometheus' preprocessing
    (an aggregation's parameter is not looked at, as there)."""
    new, _, wrap = _prepare(node)
    return StepInvariant(new) if wrap else new


def _prepare(node: Node) -> tuple[Node, bool, bool]:
    """(node with invariant children wrapped, is step-invariant, should be wrapped itself)."""
    match node:
        case Selector(at=at):
            return node, at is not None, at is not None
        case RangeSelector(selector=sel):
            return node, sel.at is not None, False
        case NumberLiteral() | StringLiteral():
            return node, True, False
        case Aggregate(expr=expr) | Negation(expr=expr):
            inner, invariant, wrap = _prepare(expr)
            return replace(node, expr=inner), invariant, wrap
        case Subquery(expr=expr, at=at):
            inner, invariant, _ = _prepare(expr)
            inner = StepInvariant(inner) if invariant else inner
            return replace(node, expr=inner), at is not None, at is not None
        case Binary(lhs=lhs, rhs=rhs):
            (left, left_inv, left_wrap), (right, right_inv, right_wrap) = (
                _prepare(lhs),
                _prepare(rhs),
            )
            if left_inv and right_inv:
                return replace(node, lhs=left, rhs=right), True, True
            return (
                replace(node, lhs=_wrapped(left, left_wrap), rhs=_wrapped(right, right_wrap)),
                False,
                False,
            )
        case Call(func=func, args=args):
            prepared = [_prepare(a) for a in args]
            if func not in AT_MODIFIER_UNSAFE and all(inv for _, inv, _ in prepared):
                return replace(node, args=tuple(a for a, _, _ in prepared)), True, True
            return replace(node, args=tuple(_wrapped(a, w) for a, _, w in prepared)), False, False
    return node, False, False


def _wrapped(node: Node, wrap: bool) -> Node:
    return StepInvariant(node) if wrap else node
