"""This service's own JSON: one sample (`POST /metrics/ingest`), and `POST /backfill/import`'s
item form (`{"metrics": [...]}`, one object per sample) and columnar form (`{"series": [...]}`).

Both go through the shared builder, with the contract's strict rules (app.validation): nothing
is sanitized, the first fault rejects the request and is named by its index. An item list is
first read in bulk: its fields pulled out with C-level `map`s, values and timestamps (numbers or
RFC 3339 text) converted with numpy, each distinct series checked once. Only a list with
something unusual in it (or a fault to name) is read item by item.

Numeric timestamps are in `precision` (s, ms, us or ns; default s).
"""

from __future__ import annotations

from collections.abc import Mapping
from operator import methodcaller

import numpy as np

from app.model import Sample, SampleBatch
from app.protocols.builder import SeriesBuilder
from app.timeutil import Precision, numbers_to_ms, parse_rfc3339_array
from app.validation import (
    LABEL_CACHE_SIZE,
    MAX_ABS_VALUE,
    BatchTooLarge,
    InvalidInput,
    TimeBounds,
    check_labels,
    check_metric_name,
    check_timestamp,
    check_value,
    series_key,
)

BULK_FROM = 32  # items in a list from which the bulk reading pays
_GET = {name: methodcaller("get", name) for name in ("metric_name", "value", "timestamp", "labels")}
_NUMBERS = frozenset({float, int})
_MIN_SECONDS, _MAX_SECONDS = -62_135_596_800, 253_402_300_799


class BatchBuilder(SeriesBuilder):
    """The builder with the JSON contract's checks; metric names and label sets already seen in
    the request are not checked again."""

    def __init__(self, bounds: TimeBounds, precision: Precision = "s") -> None:
        super().__init__()
        self.bounds = bounds
        self.precision = precision
        self._metrics: set[str] = set()
        self._labels: dict[tuple[tuple[str, object], ...], bytes] = {}

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
            self.precision == "s"
            and (type(raw_ts) is float or type(raw_ts) is int)
            and _MIN_SECONDS <= raw_ts <= _MAX_SECONDS
        ):
            ts = round(raw_ts * 1000)  # the usual case, without the general parser
            if ts > self.bounds.max_ms:
                check_timestamp(raw_ts, self.bounds, f"{where}timestamp")  # raises
        else:
            ts = check_timestamp(raw_ts, self.bounds, f"{where}timestamp", self.precision)
        return metric, labels_json, ts, value

    def add_item(self, item: object, where: str) -> None:
        metric, labels_json, ts, value = self.item_fields(item, where)
        self.add_at(self.slot(series_key(metric, labels_json)), ts, value)

    def add_items(self, items: list[object], prefix: str, first: int = 0) -> None:
        """Every item of a list (numbered from `first`); the first bad one named as
        `prefix[i]`."""
        if len(items) >= BULK_FROM and self._add_items_in_bulk(items):
            return
        for i, item in enumerate(items, first):
            self.add_item(item, f"{prefix}[{i}].")

    def _add_items_in_bulk(self, items: list[object]) -> bool:
        """Add the items as columns and return True; or add nothing and return False (the
        items are then read one by one, which names the first fault)."""
        if set(map(type, items)) != {dict}:
            return False
        values = _values(list(map(_GET["value"], items)))
        stamps = self._stamps(list(map(_GET["timestamp"], items)))
        if values is None or stamps is None:
            return False
        slots = self._item_slots(
            list(map(_GET["metric_name"], items)), list(map(_GET["labels"], items))
        )
        if slots is None:
            return False
        self.add_columns(slots, stamps, values)
        return True

    def _stamps(self, stamps: list[object]) -> np.ndarray | None:
        kinds = set(map(type, stamps))
        if kinds == {str}:
            ms, ok = parse_rfc3339_array(stamps)  # type: ignore[arg-type]
            found: np.ndarray | None = ms if ok.all() else None
        elif kinds == {int}:
            try:
                found = numbers_to_ms(np.array(stamps, dtype=np.int64), self.precision)
            except OverflowError:
                return None
        elif kinds <= _NUMBERS:
            found = numbers_to_ms(np.array(stamps, dtype=np.float64), self.precision)
        elif kinds == {type(None)}:
            found = np.full(len(stamps), self.bounds.now_ms, dtype=np.int64)
        else:
            return None
        if found is None or (found.size and int(found.max()) > self.bounds.max_ms):
            return None
        return found

    def _item_slots(self, metrics: list[object], labels: list[object]) -> np.ndarray | None:
        """Per item, the slot of its series; None if any series is not plainly valid."""
        label_kinds = set(map(type, labels))
        if type(None) in label_kinds:  # labels left out: none
            labels = [{} if tags is None else tags for tags in labels]
            label_kinds = set(map(type, labels))
        if not set(map(type, metrics)) <= {str} or not label_kinds <= {dict}:
            return None
        try:
            tag_sets: list[tuple[tuple[object, object], ...]] = list(
                map(tuple, map(dict.items, labels))  # type: ignore[arg-type]
            )
            pairs: list[tuple[object, tuple[tuple[object, object], ...]]] = list(
                zip(metrics, tag_sets, strict=True)
            )
            distinct = list(dict.fromkeys(pairs))
            keys = [
                series_key(self._metric(m, ""), self._labels_json(dict(tags), ""))
                for m, tags in distinct
            ]
        except (InvalidInput, TypeError):  # TypeError: an unhashable label value
            return None
        slot_of = {pair: self.slot(key) for pair, key in zip(distinct, keys, strict=True)}
        return np.fromiter(map(slot_of.__getitem__, pairs), dtype=np.int64, count=len(pairs))

    def add_series_entry(self, entry: object, where: str) -> None:
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
        value_array = _values(values)
        if value_array is None:
            for i, value in enumerate(values):  # find and name the first bad one
                check_value(value, f"{where}values[{i}]")
        ts_array = self._stamps(stamps)
        if ts_array is None:
            ts_array = np.asarray(
                [
                    check_timestamp(raw, self.bounds, f"{where}timestamps[{i}]", self.precision)
                    for i, raw in enumerate(stamps)
                ],
                dtype=np.int64,
            )
        assert value_array is not None
        self.add_columns(self.slot(series_key(metric, labels_json)), ts_array, value_array)


def _values(values: list[object]) -> np.ndarray | None:
    """Finite numbers within the rollups' range as an array; None if any is not one."""
    if not set(map(type, values)) <= _NUMBERS:  # bool is neither
        return None
    try:
        array = np.asarray(values, dtype=np.float64)
    except OverflowError:
        return None
    if not (np.abs(array) <= MAX_ABS_VALUE).all():  # also false for NaN and infinities
        return None
    return array


def parse_single(body: object, bounds: TimeBounds, precision: Precision = "s") -> Sample:
    metric, labels_json, ts, value = BatchBuilder(bounds, precision).item_fields(body, "")
    return Sample(series_key(metric, labels_json), ts, value)


def parse_import(
    body: object, bounds: TimeBounds, max_batch: int, precision: Precision = "s"
) -> SampleBatch:
    """`{"metrics": [items]}` or the columnar `{"series": [...]}` (or both)."""
    if not isinstance(body, Mapping):
        raise InvalidInput("body: must be a JSON object with a 'metrics' or 'series' array")
    items, columns = body.get("metrics"), body.get("series")
    if items is None and columns is None:
        raise InvalidInput("metrics: required, an array of samples (or 'series' in columnar form)")
    builder = BatchBuilder(bounds, precision)
    if items is not None:
        if not isinstance(items, list):
            raise InvalidInput("metrics: must be an array")
        check_size(len(items), max_batch)
        builder.add_items(items, "metrics")
    if columns is not None:
        if not isinstance(columns, list):
            raise InvalidInput("series: must be an array")
        for i, entry in enumerate(columns):
            builder.add_series_entry(entry, f"series[{i}].")
            check_size(len(builder), max_batch)
    return builder.build()


IMPORT_ARRAYS = frozenset({"metrics", "series"})


def add_import_slice(
    builder: BatchBuilder, key: str, first: int, elements: list[object], max_batch: int
) -> None:
    """A slice of the `metrics` or `series` array of an import (app.jsonsplit), elements
    numbered from `first`: checked as parse_import checks the whole array."""
    if key == "metrics":
        check_size(len(builder) + len(elements), max_batch)
        builder.add_items(elements, "metrics", first)
        return
    for i, entry in enumerate(elements, first):
        builder.add_series_entry(entry, f"series[{i}].")
        check_size(len(builder), max_batch)


def check_size(count: int, max_batch: int) -> None:
    if count > max_batch:
        raise BatchTooLarge(
            f"metrics: {count} samples in one request, more than MAX_BATCH ({max_batch}); "
            "split the import"
        )
