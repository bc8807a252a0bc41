"""The data the layers hand each other: series keys and samples in columns. Dependency-free
(numpy only), so storage, validation, the protocol parsers and the group commit can all take them
without importing each other."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SeriesKey:
    """A series: its metric name and canonical label set (compact JSON, keys sorted), with the
    label set's fingerprint computed once."""

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


@dataclass(frozen=True, slots=True)
class Sample:
    """One checked sample: what a single-sample write hands to the group commit, which turns the
    samples of a whole group into one `SampleBatch` (no arrays per request)."""

    key: SeriesKey
    ts: int
    value: float


@dataclass(frozen=True, slots=True)
class MetricMetadata:
    """What an agent says about a metric family (Prometheus' metadata): its type (`counter`,
    `gauge`, `histogram`, `gaugehistogram`, `summary`, `info`, `stateset` or `unknown`), help
    text and unit."""

    metric: str
    type: str
    help: str
    unit: str
