"""Turn decoded request bodies into a validated, columnar `SampleBatch`, or a message naming
the fault.

Validation is hand-written rather than a pydantic model per item: a bulk import of 100,000 samples
is checked in one pass without building an object per sample. The pydantic models in `schemas.py`
describe the same shapes for the OpenAPI page.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

import numpy as np

from app.matchers import LABEL_NAME_RE, canonical_labels, fingerprint
from app.model import Sample, SampleBatch, SeriesKey
from app.timeutil import TimeParseError, now_ms, parse_time_ms, to_ms

METRIC_NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
MAX_METRIC_NAME = 255
MAX_LABELS = 32
MAX_LABEL_VALUE = 1024
MAX_ABS_VALUE = 1e100  # so sums of squares in rollups stay within double range
LABEL_CACHE_SIZE = 4096  # label sets of a request remembered as already checked


class InvalidInput(ValueError):
    """Input that breaks a rule of the contract; the message names the field or item."""


@dataclass(frozen=True)
class TimeBounds:
    """What timestamps are acceptable now: the default for a missing one and the latest allowed.
    (The earliest allowed depends on what retention has dropped; the store checks that.)"""

    now_ms: int
    max_ms: int

    @classmethod
    def starting_now(cls, max_future_skew: timedelta) -> TimeBounds:
        now = now_ms()
        return cls(now_ms=now, max_ms=now + to_ms(max_future_skew))


def check_metric_name(name: object, where: str) -> str:
    if not isinstance(name, str) or not name:
        raise InvalidInput(f"{where}metric_name: required, a non-empty string")
    if len(name) > MAX_METRIC_NAME:
        raise InvalidInput(f"{where}metric_name: longer than {MAX_METRIC_NAME} characters")
    if not METRIC_NAME_RE.fullmatch(name):
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
        if not isinstance(key, str) or not LABEL_NAME_RE.fullmatch(key):
            raise InvalidInput(f"{where}labels: name {key!r} must match ^[a-zA-Z_][a-zA-Z0-9_]*$")
        if not isinstance(value, str):
            raise InvalidInput(f"{where}labels.{key}: value must be a string")
        if len(value) > MAX_LABEL_VALUE:
            raise InvalidInput(f"{where}labels.{key}: longer than {MAX_LABEL_VALUE} characters")
        if "\x00" in value:
            raise InvalidInput(f"{where}labels.{key}: must not contain NUL characters")
    return canonical_labels(labels)


def check_value(value: object, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"{field}: required, a finite number")
    number = float(value)
    if not math.isfinite(number):
        raise InvalidInput(f"{field}: must be a finite number")
    if abs(number) > MAX_ABS_VALUE:
        raise InvalidInput(f"{field}: magnitude above 1e100, whose squares rollups cannot hold")
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


_MIN_SECONDS, _MAX_SECONDS = -62_135_596_800.0, 253_402_300_799.0


class BatchBuilder:
    """Accumulates validated samples, interning series keys.

    The common shapes take fast paths: metric names and label sets already seen in the request
    are not checked again, numeric timestamps and values skip the general parsers, and the
    columnar form is checked with numpy. Anything unusual falls back to the `check_*` functions,
    which produce the error messages.
    """

    def __init__(self, bounds: TimeBounds) -> None:
        self.bounds = bounds
        self._keys: dict[tuple[str, bytes], int] = {}
        self._key_list: list[SeriesKey] = []
        self._metrics: set[str] = set()
        self._labels: dict[tuple[tuple[str, object], ...], bytes] = {}
        self._index: list[int] = []
        self._ts: list[int] = []
        self._values: list[float] = []
        self._chunks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._chunk_size = 0

    def series_index(self, metric: str, labels_json: bytes) -> int:
        slot = self._keys.get((metric, labels_json))
        if slot is None:
            slot = len(self._key_list)
            self._keys[(metric, labels_json)] = slot
            self._key_list.append(SeriesKey(metric, labels_json, fingerprint(labels_json)))
        return slot

    def _metric(self, name: object, where: str) -> str:
        if type(name) is str and name in self._metrics:
            return name
        checked = check_metric_name(name, where)
        self._metrics.add(checked)
        return checked

    def _labels_json(self, labels: object, where: str) -> bytes:
        if type(labels) is dict:
            try:
                key = tuple(labels.items())
                cached = self._labels.get(key)
            except TypeError:  # an unhashable value: let check_labels name it
                return check_labels(labels, where)
            if cached is None:
                cached = check_labels(labels, where)
                if len(self._labels) < LABEL_CACHE_SIZE:  # all-distinct label sets: no copies
                    self._labels[key] = cached
            return cached
        return check_labels(labels, where)

    def add_item(self, item: object, where: str) -> None:
        metric, labels_json, ts, value = self.item_fields(item, where)
        self._index.append(self.series_index(metric, labels_json))
        self._ts.append(ts)
        self._values.append(value)

    def item_fields(self, item: object, where: str) -> tuple[str, bytes, int, float]:
        """One sample object, checked: metric, canonical labels, timestamp (ms) and value."""
        if type(item) is not dict:
            if not isinstance(item, Mapping):
                raise InvalidInput(f"{where.rstrip('.') or 'body'}: must be a JSON object")
            item = dict(item)
        metric = self._metric(item.get("metric_name"), where)
        value = item.get("value")
        if type(value) is not float or not -MAX_ABS_VALUE <= value <= MAX_ABS_VALUE:
            value = check_value(value, f"{where}value")
        labels_json = self._labels_json(item.get("labels"), where)
        raw_ts = item.get("timestamp")
        if (
            type(raw_ts) is float or type(raw_ts) is int
        ) and _MIN_SECONDS <= raw_ts <= _MAX_SECONDS:
            ts = round(raw_ts * 1000)
            if ts > self.bounds.max_ms:
                check_timestamp(raw_ts, self.bounds, f"{where}timestamp")  # raises
        else:
            ts = check_timestamp(raw_ts, self.bounds, f"{where}timestamp")
        return metric, labels_json, ts, value

    def add_columns(self, entry: object, where: str) -> None:
        """One entry of the columnar form: metric, labels, and parallel timestamps/values."""
        if not isinstance(entry, Mapping):
            raise InvalidInput(f"{where.rstrip('.')}: must be a JSON object")
        metric = self._metric(entry.get("metric_name"), where)
        labels_json = self._labels_json(entry.get("labels"), where)
        stamps, values = entry.get("timestamps"), entry.get("values")
        if not isinstance(stamps, list) or not isinstance(values, list):
            raise InvalidInput(f"{where}timestamps, values: required, two arrays")
        if len(stamps) != len(values):
            raise InvalidInput(
                f"{where}timestamps, values: lengths differ ({len(stamps)} vs {len(values)})"
            )
        slot = self.series_index(metric, labels_json)
        value_array = _column_values(values, where)
        ts_array = _column_timestamps(stamps, self.bounds, where)
        self._chunks.append((np.full(len(values), slot, dtype=np.int64), ts_array, value_array))
        self._chunk_size += len(values)

    def __len__(self) -> int:
        return len(self._ts) + self._chunk_size

    def build(self) -> SampleBatch:
        if not self._chunks:  # items only (single samples): no copies through concatenate
            return SampleBatch(
                keys=self._key_list,
                series_index=np.asarray(self._index, dtype=np.int64),
                ts=np.asarray(self._ts, dtype=np.int64),
                values=np.asarray(self._values, dtype=np.float64),
            )
        index = [np.asarray(self._index, dtype=np.int64), *(c[0] for c in self._chunks)]
        ts = [np.asarray(self._ts, dtype=np.int64), *(c[1] for c in self._chunks)]
        values = [np.asarray(self._values, dtype=np.float64), *(c[2] for c in self._chunks)]
        return SampleBatch(
            keys=self._key_list,
            series_index=np.concatenate(index),
            ts=np.concatenate(ts),
            values=np.concatenate(values),
        )


def _numeric(column: list[object]) -> bool:
    return set(map(type, column)) <= {float, int}  # bool is neither


def _column_values(values: list[object], where: str) -> np.ndarray:
    if _numeric(values):
        array = np.asarray(values, dtype=np.float64)
        if (np.abs(array) <= MAX_ABS_VALUE).all():  # also false for NaN and infinities
            return array
    for i, value in enumerate(values):  # find and name the first bad one
        check_value(value, f"{where}values[{i}]")
    raise AssertionError("unreachable")  # pragma: no cover


def _column_timestamps(stamps: list[object], bounds: TimeBounds, where: str) -> np.ndarray:
    if _numeric(stamps):
        seconds = np.asarray(stamps, dtype=np.float64)
        if ((seconds >= _MIN_SECONDS) & (seconds <= _MAX_SECONDS)).all():
            ms = np.round(seconds * 1000).astype(np.int64)
            if ms.size == 0 or ms.max() <= bounds.max_ms:
                return ms
    return np.asarray(
        [check_timestamp(raw, bounds, f"{where}timestamps[{i}]") for i, raw in enumerate(stamps)],
        dtype=np.int64,
    )


def parse_single(body: object, bounds: TimeBounds) -> Sample:
    metric, labels_json, ts, value = BatchBuilder(bounds).item_fields(body, "")
    return Sample(series_key(metric, labels_json), ts, value)


@functools.lru_cache(maxsize=65_536)
def series_key(metric: str, labels_json: bytes) -> SeriesKey:
    """The key of a series, remembered: single samples mostly write series seen moments ago,
    and need not hash their labels again."""
    return SeriesKey(metric, labels_json, fingerprint(labels_json))


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


IMPORT_ARRAYS = frozenset({"metrics", "series"})


def add_import_slice(
    builder: BatchBuilder, key: str, first: int, elements: list[object], max_batch: int
) -> None:
    """A slice of the `metrics` or `series` array of an import (app.jsonsplit), elements
    numbered from `first`: checked as parse_import checks the whole array."""
    if key == "metrics":
        _check_size(len(builder) + len(elements), max_batch)
        for i, item in enumerate(elements, first):
            builder.add_item(item, f"metrics[{i}].")
        return
    for i, entry in enumerate(elements, first):
        builder.add_columns(entry, f"series[{i}].")
        _check_size(len(builder), max_batch)


class BatchTooLarge(InvalidInput):
    """More samples than MAX_BATCH in one request."""


def _check_size(count: int, max_batch: int) -> None:
    if count > max_batch:
        raise BatchTooLarge(
            f"metrics: {count} samples in one request, more than MAX_BATCH ({max_batch}); "
            "split the import"
        )
