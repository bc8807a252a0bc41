"""The values an expression evaluates to, over all evaluation steps at once.

Every value covers the N evaluation timestamps of the node that produced it:

- `Scalar`: one float per step.
- `InstantVector`: K series x N steps of values, with a mask saying where each series has a
  sample (a NaN is a value, so absence cannot be coded as NaN).
- `RangeVector`: what a range selector or a subquery selects: the samples of K series in flat
  arrays (series after series, each ascending in time), and for each step the end of its window
  `(end - range, end]`. Range functions reduce the windows to an `InstantVector`.
- `StringValue`: a string literal.

Labels are tuples of `(name, value)` pairs sorted by name, the metric name as `__name__`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from app.promql.errors import ExecutionError

Labels = tuple[tuple[str, str], ...]
NAME = "__name__"
STALE_NAN_BITS = np.uint64(0x7FF0000000000002)
DUPLICATE_LABELSET = "vector cannot contain metrics with the same labelset"


def labels_of(mapping: Mapping[str, str]) -> Labels:
    """Labels from a mapping; empty values mean an absent label, as in Prometheus."""
    return tuple(sorted((k, v) for k, v in mapping.items() if v != ""))


def drop_name(labels: Labels) -> Labels:
    return tuple(pair for pair in labels if pair[0] != NAME)


def get_label(labels: Labels, name: str) -> str:
    for key, value in labels:
        if key == name:
            return value
    return ""


def set_label(labels: Labels, name: str, value: str) -> Labels:
    """`labels` with `name` set to `value` (removed when `value` is empty)."""
    rest = [pair for pair in labels if pair[0] != name]
    if value != "":
        rest.append((name, value))
    return tuple(sorted(rest))


def keep_labels(labels: Labels, names: Iterable[str]) -> Labels:
    wanted = set(names)
    return tuple(pair for pair in labels if pair[0] in wanted)


def remove_labels(labels: Labels, names: Iterable[str]) -> Labels:
    unwanted = set(names)
    return tuple(pair for pair in labels if pair[0] not in unwanted)


def format_labels(labels: Labels) -> str:
    """Prometheus' text form of a label set, for error messages."""
    inner = ", ".join(f'{k}="{v}"' for k, v in labels)
    return "{" + inner + "}"


def is_stale(values: np.ndarray) -> np.ndarray:
    """Which values are Prometheus stale markers (one particular NaN bit pattern)."""
    stale: np.ndarray = values.view(np.uint64) == STALE_NAN_BITS
    return stale


@dataclass
class Scalar:
    values: np.ndarray  # (N,) float64


@dataclass
class StringValue:
    value: str


@dataclass
class InstantVector:
    labels: list[Labels]
    values: np.ndarray  # (K, N) float64
    present: np.ndarray  # (K, N) bool

    @classmethod
    def empty(cls, steps: int) -> InstantVector:
        return cls([], np.empty((0, steps)), np.zeros((0, steps), dtype=bool))

    @property
    def steps(self) -> int:
        return int(self.values.shape[1])

    def rows(self, keep: np.ndarray | Sequence[int]) -> InstantVector:
        """The series at these row indices (or where a boolean row mask is true)."""
        index = np.asarray(keep)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        return InstantVector(
            [self.labels[i] for i in index.tolist()], self.values[index], self.present[index]
        )

    def without_empty(self) -> InstantVector:
        """Drop series that have no sample at any step."""
        keep = np.asarray(self.present.any(axis=1))
        return self if keep.all() else self.rows(keep)

    def relabeled(self, labels: list[Labels]) -> InstantVector:
        """The same samples under new label sets; series that now share a label set are merged,
        and an error is raised where two of them have a sample at the same step."""
        return merge_rows(labels, self.values, self.present)


@dataclass
class RangeVector:
    labels: list[Labels]
    starts: np.ndarray  # (K + 1,) int64: series k owns flat[starts[k]:starts[k + 1]]
    ts: np.ndarray  # flat int64 ms, ascending within each series
    values: np.ndarray  # flat float64; stale markers already removed
    ends: np.ndarray  # (N,) int64 ms: the end of each step's window
    range_ms: int

    @property
    def series(self) -> int:
        return len(self.labels)


Value = Scalar | StringValue | InstantVector | RangeVector


def merge_rows(labels: list[Labels], values: np.ndarray, present: np.ndarray) -> InstantVector:
    """Combine rows with equal label sets into one series; two samples of one label set at the
    same step are the error Prometheus raises for it."""
    if len(set(labels)) == len(labels):
        return InstantVector(labels, values, present)
    order: dict[Labels, list[int]] = {}
    for i, key in enumerate(labels):
        order.setdefault(key, []).append(i)
    keys = list(order)
    out_values = np.zeros((len(keys), values.shape[1]))
    out_present = np.zeros((len(keys), values.shape[1]), dtype=bool)
    for row, key in enumerate(keys):
        members = order[key]
        if len(members) == 1:
            out_values[row], out_present[row] = values[members[0]], present[members[0]]
            continue
        group_present = present[members]
        if (group_present.sum(axis=0) > 1).any():
            raise ExecutionError(DUPLICATE_LABELSET)
        which = group_present.argmax(axis=0)
        out_values[row] = values[members][which, np.arange(values.shape[1])]
        out_present[row] = group_present.any(axis=0)
    return InstantVector(keys, out_values, out_present)
