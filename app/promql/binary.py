"""Binary operators: arithmetic and comparisons between scalars and vectors, vector matching
(`on`, `ignoring`, `group_left`, `group_right`) and the set operators, over all steps at once.

Vector matching works on signatures: each series' matching labels are mapped to an integer
once, and the matching itself is done on (signature, step) arrays, with the same errors as
Prometheus where a side is not unique.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from app.promql.ast import ARITHMETIC, COMPARISONS, Matching
from app.promql.errors import ExecutionError
from app.promql.values import (
    DUPLICATE_LABELSET,
    NAME,
    InstantVector,
    Labels,
    Scalar,
    drop_name,
    format_labels,
    get_label,
    keep_labels,
    merge_rows,
    remove_labels,
    set_label,
)

_ARITHMETIC: dict[str, np.ufunc] = {
    "+": np.add,
    "-": np.subtract,
    "*": np.multiply,
    "/": np.true_divide,
    "^": np.power,
    "%": np.fmod,  # Go's math.Mod: the sign of the dividend
    "atan2": np.arctan2,
}
_COMPARISONS: dict[str, np.ufunc] = {
    "==": np.equal,
    "!=": np.not_equal,
    ">": np.greater,
    "<": np.less,
    ">=": np.greater_equal,
    "<=": np.less_equal,
}


def arithmetic(op: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    fn = _ARITHMETIC.get(op)
    if fn is None:
        raise ExecutionError(f"operator {op!r} not allowed between numbers")
    with np.errstate(all="ignore"):
        out: np.ndarray = fn(a, b)
    return out


def compare(op: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    fn = _COMPARISONS.get(op)
    if fn is None:
        raise ExecutionError(f"operator {op!r} is not a comparison")
    with np.errstate(invalid="ignore"):
        out: np.ndarray = fn(a, b)
    return out


def scalar_scalar(op: str, lhs: Scalar, rhs: Scalar) -> Scalar:
    if op in COMPARISONS:
        return Scalar(compare(op, lhs.values, rhs.values).astype(np.float64))
    return Scalar(arithmetic(op, lhs.values, rhs.values))


def vector_scalar(
    op: str, vec: InstantVector, scalar: Scalar, scalar_left: bool, return_bool: bool
) -> InstantVector:
    """`vector op scalar`, or `scalar op vector` when `scalar_left`."""
    s = scalar.values[None, :]
    left, right = (s, vec.values) if scalar_left else (vec.values, s)
    if op in ARITHMETIC:
        values = arithmetic(op, left, right)
        return merge_rows([drop_name(lb) for lb in vec.labels], values, vec.present)
    keep = compare(op, left, right)
    if return_bool:
        values = keep.astype(np.float64)
        return merge_rows([drop_name(lb) for lb in vec.labels], values, vec.present)
    # A comparison filters, and the vector's value is what remains.
    return InstantVector(list(vec.labels), vec.values, vec.present & keep).without_empty()


def signatures(labels: Sequence[Labels], matching: Matching) -> tuple[np.ndarray, list[Labels]]:
    """An integer per series for its matching labels, and the labels of each signature."""
    index: dict[Labels, int] = {}
    out = np.empty(len(labels), dtype=np.int64)
    for row, series in enumerate(labels):
        if matching.on:
            key = keep_labels(series, matching.labels)
        else:
            key = remove_labels(series, (*matching.labels, NAME))
        out[row] = index.setdefault(key, len(index))
    return out, list(index)


def _any_per_signature(vec: InstantVector, sig: np.ndarray, count: int) -> np.ndarray:
    found = np.zeros((count, vec.steps), dtype=bool)
    for row in range(len(vec.labels)):
        found[sig[row]] |= vec.present[row]
    return found


def set_operation(
    op: str, lhs: InstantVector, rhs: InstantVector, matching: Matching
) -> InstantVector:
    both, keys = signatures([*lhs.labels, *rhs.labels], matching)
    lsig, rsig = both[: len(lhs.labels)], both[len(lhs.labels) :]
    if op == "and":
        on_right = _any_per_signature(rhs, rsig, len(keys))
        return InstantVector(lhs.labels, lhs.values, lhs.present & on_right[lsig]).without_empty()
    if op == "unless":
        on_right = _any_per_signature(rhs, rsig, len(keys))
        return InstantVector(lhs.labels, lhs.values, lhs.present & ~on_right[lsig]).without_empty()
    on_left = _any_per_signature(lhs, lsig, len(keys))
    right_present = rhs.present & ~on_left[rsig]
    merged = merge_rows(
        [*lhs.labels, *rhs.labels],
        np.concatenate([lhs.values, rhs.values]),
        np.concatenate([lhs.present, right_present]),
    )
    return merged.without_empty()


def vector_vector(
    op: str, lhs: InstantVector, rhs: InstantVector, matching: Matching, return_bool: bool
) -> InstantVector:
    """Arithmetic or comparison between two vectors with one-to-one or many-to-one matching."""
    swapped = matching.card == "one-to-many"
    many, one = (rhs, lhs) if swapped else (lhs, rhs)
    if not many.labels or not one.labels:
        return InstantVector.empty(lhs.steps)
    sig_all, keys = signatures([*many.labels, *one.labels], matching)
    many_sig, one_sig = sig_all[: len(many.labels)], sig_all[len(many.labels) :]
    steps = np.arange(lhs.steps)
    one_row = _unique_one_side(many, one, one_sig, len(keys), keys, swapped)
    partner = one_row[many_sig]  # (K_many, N): the matching row of the "one" side, or -1
    matched = many.present & (partner >= 0)
    if matching.card == "one-to-one":
        _check_one_to_one(matched, many_sig, len(keys))
    safe = np.where(partner >= 0, partner, 0)
    other = one.values[safe, steps[None, :]] if one.labels else np.zeros_like(many.values)
    left, right = (other, many.values) if swapped else (many.values, other)
    if op in ARITHMETIC:
        values, present = arithmetic(op, left, right), matched
    elif return_bool:
        values, present = compare(op, left, right).astype(np.float64), matched
    else:
        values, present = left, matched & compare(op, left, right)
    return _assemble(
        op, many, one, partner, matched, present, values, many_sig, matching, return_bool
    )


def _unique_one_side(
    many: InstantVector,
    one: InstantVector,
    one_sig: np.ndarray,
    count: int,
    keys: list[Labels],
    swapped: bool,
) -> np.ndarray:
    """(signatures, N): the single present series of the "one" side, -1 where none; an error
    where two share a signature at a step with samples on the other side."""
    rows = np.full((count, one.steps), -1, dtype=np.int64)
    seen = np.zeros((count, one.steps), dtype=np.int64)
    for row in range(len(one.labels)):
        here = one.present[row]
        seen[one_sig[row]] += here
        rows[one_sig[row], here] = row
    other_side = np.asarray(many.present.any(axis=0))
    clash = (seen > 1) & other_side[None, :]
    if clash.any():
        sig, step = (int(x[0]) for x in np.nonzero(clash))
        offenders = [
            format_labels(one.labels[r])
            for r in range(len(one.labels))
            if one_sig[r] == sig and one.present[r, step]
        ][:2]
        side = "left" if swapped else "right"
        raise ExecutionError(
            f"found duplicate series for the match group {format_labels(keys[sig])} on the"
            f" {side} hand-side of the operation: [{', '.join(offenders)}];many-to-many matching"
            " not allowed: matching labels must be unique on one side"
        )
    return rows


def _check_one_to_one(matched: np.ndarray, sig: np.ndarray, count: int) -> None:
    per_signature = np.zeros((count, matched.shape[1]), dtype=np.int64)
    np.add.at(per_signature, sig, matched.astype(np.int64))
    if (per_signature > 1).any():
        raise ExecutionError(
            "multiple matches for labels: many-to-one matching must be explicit"
            " (group_left/group_right)"
        )


def _result_labels(
    op: str, many: Labels, one: Labels | None, matching: Matching, return_bool: bool
) -> Labels:
    labels = many
    if op in ARITHMETIC or return_bool:
        labels = drop_name(labels)
    if matching.card == "one-to-one":
        if matching.on:
            labels = keep_labels(labels, matching.labels)
        else:
            labels = remove_labels(labels, matching.labels)
    for name in matching.include:
        labels = set_label(labels, name, get_label(one, name) if one is not None else "")
    return labels


def _assemble(
    op: str,
    many: InstantVector,
    one: InstantVector,
    partner: np.ndarray,
    matched: np.ndarray,
    present: np.ndarray,
    values: np.ndarray,
    many_sig: np.ndarray,
    matching: Matching,
    return_bool: bool,
) -> InstantVector:
    """Output series: one per (series, partner) pair when group_x copies labels from the
    partner, else one per series; merged by label set with Prometheus' duplicate errors."""
    steps = many.steps
    if not matching.include:
        labels = [_result_labels(op, lb, None, matching, return_bool) for lb in many.labels]
        _check_unique_results(labels, matched, many_sig)
        return merge_rows(labels, values, present).without_empty()
    rows, cols = np.nonzero(matched)
    pair_codes = rows * max(len(one.labels), 1) + partner[rows, cols]
    unique, pair_of = np.unique(pair_codes, return_inverse=True)
    pair_of = pair_of.reshape(-1)
    pair_labels = []
    pair_values = np.zeros((len(unique), steps))
    pair_matched = np.zeros((len(unique), steps), dtype=bool)
    pair_present = np.zeros((len(unique), steps), dtype=bool)
    for code in unique.tolist():
        row, partner_row = divmod(code, max(len(one.labels), 1))
        pair_labels.append(
            _result_labels(op, many.labels[row], one.labels[partner_row], matching, return_bool)
        )
    pair_values[pair_of, cols] = values[rows, cols]
    pair_matched[pair_of, cols] = True
    pair_present[pair_of, cols] = present[rows, cols]
    pair_sig = many_sig[unique // max(len(one.labels), 1)]
    _check_unique_results(pair_labels, pair_matched, pair_sig)
    return merge_rows(pair_labels, pair_values, pair_present).without_empty()


def _check_unique_results(labels: list[Labels], matched: np.ndarray, sig: np.ndarray) -> None:
    """Two results with one label set at one step: Prometheus' error for it (the group_x one
    when they come from the same match group)."""
    if len(set(labels)) == len(labels):
        return
    groups: dict[Labels, list[int]] = {}
    for row, key in enumerate(labels):
        groups.setdefault(key, []).append(row)
    for members in groups.values():
        if len(members) < 2:
            continue
        overlap = matched[members].sum(axis=0) > 1
        if not overlap.any():
            continue
        step = int(np.flatnonzero(overlap)[0])
        here = [m for m in members if matched[m, step]]
        if len({int(sig[m]) for m in here}) < len(here):
            raise ExecutionError(
                "multiple matches for labels: grouping labels must ensure unique matches"
            )
        raise ExecutionError(DUPLICATE_LABELSET)
