"""Turn decoded request bodies into a validated, columnar `SampleBatch`, or a message naming
the fault.

Validation is hand-written rather than a pydantic model per item: a bulk import of 100,000 samples
is checked in one pass without building an object per sample. The pydantic models in `schemas.py`
describe the same shapes for the OpenAPI page.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from app.matchers import LABEL_NAME_RE, canonical_labels, fingerprint
from app.timeutil import TimeParseError, parse_time_ms

METRIC_NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
MAX_METRIC_NAME = 255
MAX_LABELS = 32
MAX_LABEL_VALUE = 1024


class InvalidInput(ValueError):
    """Input that breaks a rule of the contract; the message names the field or item."""


@dataclass(frozen=True)
class SeriesKey:
    metric: str
    labels_json: bytes
    fingerprint: str


@dataclass
class SampleBatch:
    """Samples in columns: `series_index[i]` points into `keys` for sample i."""

    keys: list[SeriesKey]
    series_index: np.ndarray  # int64
    ts: np.ndarray  # int64 ms
    values: np.ndarray  # float64

    def __len__(self) -> int:
        return int(self.ts.size)


@dataclass(frozen=True)
class TimeBounds:
    """What timestamps are acceptable now: the default for a missing one and the latest allowed.
    (The earliest allowed depends on what retention has dropped; the store checks that.)"""

    now_ms: int
    max_ms: int


def check_metric_name(name: object, where: str) -> str:
    if not isinstance(name, str) or not name:
        raise InvalidInput(f"{where}metric_name: required, a non-empty string")
    if len(name) > MAX_METRIC_NAME:
        raise InvalidInput(f"{where}metric_name: longer than {MAX_METRIC_NAME} characters")
    if not METRIC_NAME_RE.match(name):
        raise InvalidInput(f"{where}metric_name: {name!r} must match ^[a-zA-Z_:][a-zA-Z0-9_:]*$")
    return name


def check_labels(labels: object, where: str) -> bytes:
    if labels is None:
        return b"{}"
    if not isinstance(labels, Mapping):
        raise InvalidInput(f"{where}labels: must be an object of string values")
    if len(labels) > MAX_LABELS:
        raise InvalidInput(f"{where}labels: {len(labels)} labels, at most {MAX_LABELS} allowed")
    for key, value in labels.items():
        if not isinstance(key, str) or not LABEL_NAME_RE.match(key):
            raise InvalidInput(f"{where}labels: name {key!r} must match ^[a-zA-Z_][a-zA-Z0-9_]*$")
        if not isinstance(value, str):
            raise InvalidInput(f"{where}labels.{key}: value must be a string")
        if len(value) > MAX_LABEL_VALUE:
            raise InvalidInput(f"{where}labels.{key}: longer than {MAX_LABEL_VALUE} characters")
    return canonical_labels(labels)


def check_value(value: object, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"{field}: required, a finite number")
    number = float(value)
    if not math.isfinite(number):
        raise InvalidInput(f"{field}: must be a finite number")
    return number


def check_timestamp(raw: object, bounds: TimeBounds, field: str) -> int:
    if raw is None:
        ts = bounds.now_ms
    else:
        try:
            ts = parse_time_ms(raw)
        except TimeParseError as exc:
            raise InvalidInput(f"{field}: {exc}") from None
    if ts > bounds.max_ms:
        raise InvalidInput(f"{field}: more than MAX_FUTURE_SKEW ahead of server time")
    return ts


class BatchBuilder:
    """Accumulates validated samples, interning series keys."""

    def __init__(self, bounds: TimeBounds) -> None:
        self.bounds = bounds
        self._keys: dict[tuple[str, bytes], int] = {}
        self._key_list: list[SeriesKey] = []
        self._index: list[int] = []
        self._ts: list[int] = []
        self._values: list[float] = []

    def series_index(self, metric: str, labels_json: bytes) -> int:
        slot = self._keys.get((metric, labels_json))
        if slot is None:
            slot = len(self._key_list)
            self._keys[(metric, labels_json)] = slot
            self._key_list.append(SeriesKey(metric, labels_json, fingerprint(labels_json)))
        return slot

    def add_item(self, item: object, where: str) -> None:
        if not isinstance(item, Mapping):
            raise InvalidInput(f"{where.rstrip('.') or 'body'}: must be a JSON object")
        metric = check_metric_name(item.get("metric_name"), where)
        value = check_value(item.get("value"), f"{where}value")
        labels_json = check_labels(item.get("labels"), where)
        ts = check_timestamp(item.get("timestamp"), self.bounds, f"{where}timestamp")
        self._index.append(self.series_index(metric, labels_json))
        self._ts.append(ts)
        self._values.append(value)

    def add_columns(self, entry: object, where: str) -> None:
        """One entry of the columnar form: metric, labels, and parallel timestamps/values."""
        if not isinstance(entry, Mapping):
            raise InvalidInput(f"{where.rstrip('.')}: must be a JSON object")
        metric = check_metric_name(entry.get("metric_name"), where)
        labels_json = check_labels(entry.get("labels"), where)
        stamps, values = entry.get("timestamps"), entry.get("values")
        if not isinstance(stamps, list) or not isinstance(values, list):
            raise InvalidInput(f"{where}timestamps, values: required, two arrays")
        if len(stamps) != len(values):
            raise InvalidInput(
                f"{where}timestamps, values: lengths differ ({len(stamps)} vs {len(values)})"
            )
        slot = self.series_index(metric, labels_json)
        for i, (raw_ts, raw_value) in enumerate(zip(stamps, values, strict=True)):
            self._values.append(check_value(raw_value, f"{where}values[{i}]"))
            self._ts.append(check_timestamp(raw_ts, self.bounds, f"{where}timestamps[{i}]"))
            self._index.append(slot)

    def __len__(self) -> int:
        return len(self._ts)

    def build(self) -> SampleBatch:
        return SampleBatch(
            keys=self._key_list,
            series_index=np.asarray(self._index, dtype=np.int64),
            ts=np.asarray(self._ts, dtype=np.int64),
            values=np.asarray(self._values, dtype=np.float64),
        )


def parse_single(body: object, bounds: TimeBounds) -> SampleBatch:
    builder = BatchBuilder(bounds)
    builder.add_item(body, "")
    return builder.build()


def parse_import(body: object, bounds: TimeBounds, max_batch: int) -> SampleBatch:
    """`{"metrics": [items]}` or the columnar `{"series": [...]}` (or both)."""
    if not isinstance(body, Mapping):
        raise InvalidInput("body: must be a JSON object with a 'metrics' or 'series' array")
    items, columns = body.get("metrics"), body.get("series")
    if items is None and columns is None:
        raise InvalidInput("metrics: required, an array of samples (or 'series' in columnar form)")
    builder = BatchBuilder(bounds)
    if items is not None:
        if not isinstance(items, list):
            raise InvalidInput("metrics: must be an array")
        _check_size(len(items), max_batch)
        for i, item in enumerate(items):
            builder.add_item(item, f"metrics[{i}].")
    if columns is not None:
        if not isinstance(columns, list):
            raise InvalidInput("series: must be an array")
        for i, entry in enumerate(columns):
            builder.add_columns(entry, f"series[{i}].")
            _check_size(len(builder), max_batch)
    return builder.build()


class BatchTooLarge(InvalidInput):
    """More samples than MAX_BATCH in one request."""


def _check_size(count: int, max_batch: int) -> None:
    if count > max_batch:
        raise BatchTooLarge(
            f"metrics: {count} samples in one request, more than MAX_BATCH ({max_batch}); "
            "split the import"
        )
