"""The adapter from `promql-parser` (a Rust parser with Python bindings) to `app.promql.ast`.

Checked against promql-parser 0.12.0:
- the metric name comes as `VectorSelector.name`, and a `{__name__=...}` matcher may come in
  `matchers` as well (when written that way): both become one `__name__` matcher here;
- a negative `@` time makes the binding panic (a `BaseException` from pyo3): answered as
  unsupported rather than crashing;
- syntax errors are `ValueError`s, answered as `bad_data` like Prometheus' parse errors;
- `{a="b" or c="d"}` (an extension of the Rust parser, not PromQL) is rejected.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import promql_parser as pp

from app.matchers import Matcher, MatcherError, Op
from app.promql import ast
from app.promql.errors import BadData, Unsupported

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The binding's enums are not hashable: keyed by their text form.
_MATCH_OPS: dict[str, Op] = {
    "MatchOp.Equal": "=",
    "MatchOp.NotEqual": "!=",
    "MatchOp.Re": "=~",
    "MatchOp.NotRe": "!~",
}
_CARDS: dict[str, ast.Card] = {
    "VectorMatchCardinality.OneToOne": "one-to-one",
    "VectorMatchCardinality.ManyToOne": "many-to-one",
    "VectorMatchCardinality.OneToMany": "one-to-many",
    "VectorMatchCardinality.ManyToMany": "many-to-many",
}


def parse(text: str) -> ast.Node:
    """Parse a PromQL expression; BadData for invalid syntax."""
    try:
        tree = pp.parse(text)
    except ValueError as exc:
        raise BadData(f'invalid parameter "query": {exc}') from None
    except BaseException as exc:  # a panic inside the binding
        if type(exc).__name__ != "PanicException":
            raise
        raise BadData(f'invalid parameter "query": cannot parse {text!r}') from None
    return convert(tree)


def prettify(text: str) -> str:
    """The expression formatted the way `promtool`/`format_query` does it."""
    try:
        return str(pp.parse(text).prettify())
    except ValueError as exc:
        raise BadData(f'invalid parameter "query": {exc}') from None


def duration_ms(delta: timedelta) -> int:
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def convert(node: Any) -> ast.Node:
    """Our node for one node of the binding's tree."""
    converter = _CONVERTERS.get(type(node))
    if converter is None:
        raise Unsupported(f"the expression {node!s}")
    result: ast.Node = converter(node)
    return result


def _number(node: Any) -> ast.Node:
    return ast.NumberLiteral(float(node.val))


def _string(node: Any) -> ast.Node:
    return ast.StringLiteral(str(node.val))


def _paren(node: Any) -> ast.Node:
    return convert(node.expr)


def _unary(node: Any) -> ast.Node:
    return ast.Negation(convert(node.expr))


def _at(node: Any) -> ast.At | None:
    at = node.at
    if at is None:
        return None
    if at.type == pp.AtModifierType.Start:
        return ast.At("start")
    if at.type == pp.AtModifierType.End:
        return ast.At("end")
    try:
        when = at.at
    except BaseException as exc:  # the binding panics on times before 1970
        if type(exc).__name__ != "PanicException":
            raise
        raise Unsupported("an @ modifier with a time before 1970") from None
    return ast.At("time", duration_ms(when - _EPOCH))


def _offset(node: Any) -> int:
    return 0 if node.offset is None else duration_ms(node.offset)


def _matcher(op: Any, name: str, value: str) -> Matcher:
    try:
        return Matcher.build(name, _MATCH_OPS[str(op)], value)
    except MatcherError as exc:
        raise BadData(f'invalid parameter "query": {exc}') from None


def selector(node: Any) -> ast.Selector:
    """A vector selector; the metric name, in either form, as one `__name__` matcher."""
    group = node.matchers
    if group.or_matchers:
        raise BadData("invalid parameter \"query\": 'or' inside label matchers is not PromQL")
    matchers = [_matcher(m.op, m.name, m.value) for m in group.matchers]
    if node.name is not None:
        name = Matcher.build("__name__", "=", str(node.name))
        if name not in matchers:
            matchers.insert(0, name)
    return ast.Selector(tuple(matchers), _offset(node), _at(node))


def _matrix(node: Any) -> ast.Node:
    return ast.RangeSelector(selector(node.vector_selector), duration_ms(node.range))


def _subquery(node: Any) -> ast.Node:
    step = None if node.step is None else duration_ms(node.step)
    return ast.Subquery(convert(node.expr), duration_ms(node.range), step, _offset(node), _at(node))


def _call(node: Any) -> ast.Node:
    return ast.Call(str(node.func.name), tuple(convert(a) for a in node.args))


def _aggregate(node: Any) -> ast.Node:
    modifier = node.modifier
    grouping: tuple[str, ...] = ()
    without = False
    if modifier is not None:
        grouping = tuple(str(name) for name in modifier.labels)
        without = modifier.type == pp.AggModifierType.Without
    param = None if node.param is None else convert(node.param)
    return ast.Aggregate(str(node.op), convert(node.expr), param, grouping, without)


def _binary(node: Any) -> ast.Node:
    op = str(node.op)
    lhs, rhs = convert(node.lhs), convert(node.rhs)
    modifier = node.modifier
    return_bool = bool(modifier is not None and modifier.return_bool)
    both_vectors = ast.value_type(lhs) == "vector" and ast.value_type(rhs) == "vector"
    matching = None
    if both_vectors:
        matching = _matching(op, modifier)
    return ast.Binary(op, lhs, rhs, return_bool, matching)


def _matching(op: str, modifier: Any) -> ast.Matching:
    """Vector matching; by default `ignoring()` one-to-one (many-to-many for set operators)."""
    card: ast.Card = "many-to-many" if op in ast.SET_OPERATORS else "one-to-one"
    if modifier is None:
        return ast.Matching(card, on=False, labels=())
    card = _CARDS.get(str(modifier.card), card)
    fill = modifier.fill_values
    if fill is not None and (fill.lhs is not None or fill.rhs is not None):
        raise Unsupported("fill values in vector matching")
    on, labels = False, tuple[str, ...]()
    if modifier.matching is not None:
        on = modifier.matching.type == pp.LabelModifierType.Include
        labels = tuple(str(name) for name in modifier.matching.labels)
    include = tuple(str(name) for name in (modifier.group_labels or ()))
    return ast.Matching(card, on, labels, include)


_CONVERTERS: dict[type, Any] = {
    pp.NumberLiteral: _number,
    pp.StringLiteral: _string,
    pp.ParenExpr: _paren,
    pp.UnaryExpr: _unary,
    pp.VectorSelector: selector,
    pp.MatrixSelector: _matrix,
    pp.SubqueryExpr: _subquery,
    pp.Call: _call,
    pp.AggregateExpr: _aggregate,
    pp.BinaryExpr: _binary,
}
