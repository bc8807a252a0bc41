"""Functions over instant vectors and scalars (`abs`, `clamp`, `label_replace`, `absent`,
the date functions, ...). Each takes the evaluated arguments and the evaluation times."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import re2

from app.promql import ast, dates
from app.promql.errors import ExecutionError
from app.promql.values import (
    NAME,
    InstantVector,
    Labels,
    Scalar,
    StringValue,
    Value,
    drop_name,
    get_label,
    labels_of,
    merge_rows,
    set_label,
)

Args = Sequence[Value]


def _vector(value: Value) -> InstantVector:
    assert isinstance(value, InstantVector)
    return value


def _scalar(value: Value) -> np.ndarray:
    assert isinstance(value, Scalar)
    return value.values


def _string(value: Value) -> str:
    assert isinstance(value, StringValue)
    return value.value


def _merged(vec: InstantVector, values: np.ndarray) -> tuple[list[Labels], np.ndarray, np.ndarray]:
    """The new values under the series' labels without the metric name."""
    merged = merge_rows([drop_name(lb) for lb in vec.labels], values, vec.present)
    return merged.labels, merged.values, merged.present


def _round(values: np.ndarray, to_nearest: np.ndarray) -> np.ndarray:
    inverse = 1.0 / to_nearest
    return np.floor(values * inverse + 0.5) / inverse


def _sgn(values: np.ndarray) -> np.ndarray:
    return np.where(values < 0, -1.0, np.where(values > 0, 1.0, values))


MATH: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "abs": np.abs,
    "ceil": np.ceil,
    "floor": np.floor,
    "exp": np.exp,
    "sqrt": np.sqrt,
    "ln": np.log,
    "log2": np.log2,
    "log10": np.log10,
    "sgn": _sgn,
    "sin": np.sin,
    "cos": np.cos,
    "tan": np.tan,
    "asin": np.arcsin,
    "acos": np.arccos,
    "atan": np.arctan,
    "sinh": np.sinh,
    "cosh": np.cosh,
    "tanh": np.tanh,
    "asinh": np.arcsinh,
    "acosh": np.arccosh,
    "atanh": np.arctanh,
    "deg": lambda v: v * 180 / np.pi,
    "rad": lambda v: v * np.pi / 180,
}


def math_function(name: str, args: Args) -> InstantVector:
    vec = _vector(args[0])
    with np.errstate(all="ignore"):
        values = MATH[name](vec.values)
    return InstantVector(*_merged(vec, values))


def round_function(args: Args) -> InstantVector:
    vec = _vector(args[0])
    to_nearest = _scalar(args[1])[None, :] if len(args) > 1 else np.ones((1, vec.steps))
    with np.errstate(all="ignore"):
        values = _round(vec.values, to_nearest)
    return InstantVector(*_merged(vec, values))


def clamp(vec: InstantVector, low: np.ndarray, high: np.ndarray) -> InstantVector:
    """max(low, min(high, v)); nothing at steps where high < low."""
    with np.errstate(all="ignore"):
        values = np.maximum(low[None, :], np.minimum(high[None, :], vec.values))
    labels, values, present = _merged(vec, values)
    return InstantVector(labels, values, present & ~(high < low)[None, :]).without_empty()


def scalar_of(args: Args) -> Scalar:
    vec = _vector(args[0])
    if not vec.labels:
        return Scalar(np.full(vec.steps, np.nan))
    single = vec.present.sum(axis=0) == 1
    value = np.where(vec.present, vec.values, 0.0).sum(axis=0)
    return Scalar(np.where(single, value, np.nan))


def vector_of(args: Args) -> InstantVector:
    values = _scalar(args[0])
    return InstantVector([()], values[None, :].copy(), np.ones((1, values.size), dtype=bool))


def sort_rows(vec: InstantVector, descending: bool) -> InstantVector:
    """sort/sort_desc: order the series of an instant query by value, NaN last. The labels
    stay (with the metric name)."""
    if vec.steps != 1 or len(vec.labels) < 2:
        return vec
    values = vec.values[:, 0]
    keyed = -values if descending else values
    order = np.lexsort((keyed, np.isnan(values)))
    return vec.rows(order)


def date_function(name: str, args: Args, times: np.ndarray) -> InstantVector:
    if not args:
        values = dates.date_function(name, (times // 1000).astype(np.float64))
        return InstantVector([()], values[None, :], np.ones((1, times.size), dtype=bool))
    vec = _vector(args[0])
    values = dates.date_function(name, vec.values)
    return InstantVector(*_merged(vec, values))


def absent_labels(node: ast.Node) -> Labels:
    """The labels absent()/absent_over_time() give: the selector's equality matchers, except
    the metric name and labels matched more than once."""
    while isinstance(node, ast.StepInvariant):
        node = node.expr
    if isinstance(node, ast.RangeSelector):
        node = node.selector
    if not isinstance(node, ast.Selector):
        return ()
    labels: dict[str, str] = {}
    seen: set[str] = set()
    for m in node.matchers:
        if m.name == NAME:
            continue
        if m.op == "=" and m.name not in seen:
            labels[m.name] = m.value
        else:
            labels.pop(m.name, None)
        seen.add(m.name)
    return labels_of(labels)


def absent(vec: InstantVector, node: ast.Node) -> InstantVector:
    missing = np.asarray(~vec.present.any(axis=0) if vec.labels else np.ones(vec.steps, dtype=bool))
    return InstantVector(
        [absent_labels(node)], np.ones((1, vec.steps)), missing[None, :].copy()
    ).without_empty()


def _compile(regex: str) -> re2._Regexp:
    try:
        return re2.compile("^(?s:" + regex + ")$")
    except re2.error:
        raise ExecutionError(f"invalid regular expression in label_replace(): {regex}") from None


def expand(template: str, match: re2._Match) -> str:
    """Go's Regexp.ExpandString: `$1`, `${1}`, `$name`, `${name}`, `$$`; a name is the longest
    run of letters, digits and `_`, unknown groups expand to nothing."""
    out: list[str] = []
    rest = template
    while True:
        before, dollar, rest = rest.partition("$")
        out.append(before)
        if not dollar:
            return "".join(out)
        if rest.startswith("$"):
            out.append("$")
            rest = rest[1:]
            continue
        name, rest_after = _extract_name(rest)
        if name is None:
            out.append("$")
            continue
        rest = rest_after
        groups = match.re.groups
        if name.isdigit() and not (name[0] == "0" and len(name) > 1):
            index = int(name)
        else:
            index = match.re.groupindex.get(name, groups + 1)
        out.append((match.group(index) if index <= groups else None) or "")


def _extract_name(text: str) -> tuple[str | None, str]:
    brace = text.startswith("{")
    body = text[1:] if brace else text
    i = 0
    while i < len(body) and (body[i].isalnum() or body[i] == "_"):
        i += 1
    if i == 0:
        return None, text
    name = body[:i]
    if brace:
        if i >= len(body) or body[i] != "}":
            return None, text
        i += 1
    return name, body[i:]


def label_replace(vec: InstantVector, args: Args) -> InstantVector:
    dst, replacement, src, regex = (_string(a) for a in args[1:5])
    pattern = _compile(regex)
    if not dst:
        raise ExecutionError(f"invalid destination label name in label_replace(): {dst}")
    labels = []
    for series in vec.labels:
        found = pattern.search(get_label(series, src))
        if found is None:
            labels.append(series)
            continue
        labels.append(set_label(series, dst, expand(replacement, found)))
    return vec.relabeled(labels).without_empty()


def label_join(vec: InstantVector, args: Args) -> InstantVector:
    dst, separator = _string(args[1]), _string(args[2])
    sources = [_string(a) for a in args[3:]]
    if not dst:
        raise ExecutionError(f"invalid destination label name in label_join(): {dst}")
    for source in sources:
        if not source:
            raise ExecutionError(f"invalid source label name in label_join(): {source}")
    labels = [
        set_label(series, dst, separator.join(get_label(series, s) for s in sources))
        for series in vec.labels
    ]
    return vec.relabeled(labels).without_empty()
