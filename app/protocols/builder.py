"""The one builder every format writes into: `add(metric, labels, ts_ms, value)`.

A request's samples accumulate here and leave as one columnar `SampleBatch`. Series are interned
once per request (`series`), so a format that sends a series' samples together calls
`add_columns` with numpy arrays and makes no Python object per sample; one that interleaves them
calls `add`/`add_at` per sample.

Outside protocols name series in their own terms; `protocol_series_key` applies our rules to them
(sanitized names, `names`), remembered across requests since agents send the same series every
scrape. A series that breaks the rules raises `InvalidSeries`, which the formats report per series
while storing the rest.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import numpy as np

from app.matchers import canonical_labels
from app.model import SampleBatch, SeriesKey
from app.protocols.names import sanitize_label_name, sanitize_metric_name
from app.validation import MAX_LABEL_VALUE, MAX_LABELS, MAX_METRIC_NAME, series_key


class InvalidSeries(ValueError):
    """A series that breaks our rules even after sanitizing its names."""


Pairs = tuple[tuple[str, str], ...]


@functools.lru_cache(maxsize=262_144)
def protocol_series_key(metric: str, labels: Pairs) -> SeriesKey:
    """The key of a series an outside protocol sent: names sanitized, empty-valued labels
    dropped (as Prometheus treats them: absent), labels sorted. Raises InvalidSeries."""
    name = sanitize_metric_name(metric)
    if not name:
        raise InvalidSeries("no metric name (__name__ missing or empty)")
    if len(name) > MAX_METRIC_NAME:
        raise InvalidSeries(f"metric name longer than {MAX_METRIC_NAME} characters")
    kept: dict[str, str] = {}
    seen: set[str] = set()
    for raw_name, value in labels:
        label = sanitize_label_name(raw_name)
        if not label:
            raise InvalidSeries(f"metric {name!r}: a label with an empty name")
        if label in seen:
            raise InvalidSeries(f"metric {name!r}: duplicate label name {label!r}")
        seen.add(label)
        if value == "":
            continue
        if len(value) > MAX_LABEL_VALUE:
            raise InvalidSeries(f"metric {name!r}: label {label!r} longer than {MAX_LABEL_VALUE}")
        if "\x00" in value:
            raise InvalidSeries(f"metric {name!r}: label {label!r} holds a NUL character")
        kept[label] = value
    if len(kept) > MAX_LABELS:
        raise InvalidSeries(f"metric {name!r}: {len(kept)} labels, at most {MAX_LABELS} allowed")
    return series_key(name, canonical_labels(kept))


@functools.lru_cache(maxsize=262_144)
def named_series_key(pairs: Pairs) -> SeriesKey:
    """The key of a series named by its labels, `__name__` among them (remote write,
    VictoriaMetrics' JSON lines). Duplicate label names and a missing name are refused."""
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        duplicated = sorted({n for n in names if names.count(n) > 1})
        raise InvalidSeries(f"duplicate label names {duplicated}")
    metric = next((value for name, value in pairs if name == "__name__"), "")
    if not metric:
        raise InvalidSeries("no __name__ label")
    return protocol_series_key(metric, tuple(p for p in pairs if p[0] != "__name__"))


class SeriesBuilder:
    """Samples of one request, series interned, built into one `SampleBatch`."""

    def __init__(self) -> None:
        self._slots: dict[SeriesKey, int] = {}
        self.keys: list[SeriesKey] = []
        self._index: list[int] = []
        self._ts: list[int] = []
        self._values: list[float] = []
        self._chunks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._chunk_size = 0

    def slot(self, key: SeriesKey) -> int:
        """The request-local index of a series, interning it on first sight."""
        found = self._slots.get(key)
        if found is None:
            found = self._slots[key] = len(self.keys)
            self.keys.append(key)
        return found

    def series(self, metric: str, labels: Iterable[tuple[str, str]]) -> int:
        """The slot of a series named in an outside protocol's terms; raises InvalidSeries."""
        pairs = labels if isinstance(labels, tuple) else tuple(labels)
        return self.slot(protocol_series_key(metric, pairs))

    def add(self, metric: str, labels: Iterable[tuple[str, str]], ts_ms: int, value: float) -> None:
        """The primitive: one sample of a series."""
        self.add_at(self.series(metric, labels), ts_ms, value)

    def add_at(self, slot: int, ts_ms: int, value: float) -> None:
        self._index.append(slot)
        self._ts.append(ts_ms)
        self._values.append(value)

    def add_columns(self, slot: int | np.ndarray, ts_ms: np.ndarray, values: np.ndarray) -> None:
        """Many samples at once: of one series (`slot` an int) or one slot per sample."""
        if ts_ms.size == 0:
            return
        if isinstance(slot, int):
            slots = np.full(ts_ms.size, slot, dtype=np.int64)
        else:
            slots = slot.astype(np.int64, copy=False)
        self._chunks.append(
            (slots, ts_ms.astype(np.int64, copy=False), values.astype(np.float64, copy=False))
        )
        self._chunk_size += int(ts_ms.size)

    def __len__(self) -> int:
        return len(self._ts) + self._chunk_size

    def build(self) -> SampleBatch:
        index = np.asarray(self._index, dtype=np.int64)
        ts = np.asarray(self._ts, dtype=np.int64)
        values = np.asarray(self._values, dtype=np.float64)
        if self._chunks:
            index = np.concatenate([index, *(c[0] for c in self._chunks)])
            ts = np.concatenate([ts, *(c[1] for c in self._chunks)])
            values = np.concatenate([values, *(c[2] for c in self._chunks)])
        return SampleBatch(keys=self.keys, series_index=index, ts=ts, values=values)
