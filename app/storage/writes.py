"""What a write stores, decided in numpy before (or between) its statements: which samples go raw,
which into rollups only, which are beyond retention; the rows, de-duplicated, and their marks;
and what the write reports (docs/rollups-and-retention.md#writes-older-than-raw-retention).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from app.model import SampleBatch
from app.services.retention import BEYOND, HISTORY, KINDS, RAW, Floors, classify, metric_floors
from app.services.rollup import RESOLUTIONS
from app.timeutil import format_ms

Marks = list[tuple[str, np.ndarray, np.ndarray]]


@dataclass(eq=False)
class CardinalityExceeded(Exception):
    metric: str
    limit: int
    scope: str  # "per_metric" or "total"

    def __str__(self) -> str:
        if self.scope == "per_metric":
            return (
                f"metric {self.metric!r} would exceed MAX_SERIES_PER_METRIC ({self.limit} series)"
            )
        return f"new series for metric {self.metric!r} would exceed MAX_SERIES_TOTAL ({self.limit})"


@dataclass(eq=False)
class HistoryConflict(Exception):
    """A sample older than its metric's raw floor whose rollup bucket already holds data whose
    raw samples are not kept: merging it could count a re-sent sample twice."""

    position: int  # index of the sample in the batch
    metric: str
    labels_json: bytes
    resolution: str
    bucket_ms: int
    raw_from_ms: int

    def __str__(self) -> str:
        labels = orjson.loads(self.labels_json)
        inner = ",".join(f"{k}={orjson.dumps(v).decode()}" for k, v in labels.items())
        return (
            f"series {self.metric}{{{inner}}}: its {self.resolution} bucket starting"
            f" {format_ms(self.bucket_ms)} already holds data whose raw samples are not kept (raw"
            f" samples of {self.metric!r} are kept from {format_ms(self.raw_from_ms)} on), so"
            " merging more into it could count a re-sent sample twice; nothing of this request"
            " was written"
        )


class NeedsExclusive(Exception):
    """The write holds history (samples older than the raw floor): redo it on the general path,
    holding the retention lock alone (PostgreSQL), so no write decides on the floor meanwhile."""


@dataclass(eq=False)
class NeedsPartitions(Exception):
    """Raw rows fall on day partitions this process has not made sure of (PostgreSQL)."""

    days: list[int]


@dataclass
class AppendResult:
    """What a write did, counted after de-duplication; `kinds` gives RAW, HISTORY (rollups
    only) or BEYOND per sample of the batch, in request order (None: every one went raw).
    `overwritten`: raw samples that replaced a stored one at the same (series, ts) holding a
    different float64 bit pattern (last write wins); the same value again is not counted."""

    raw: int = 0
    rollups_only: int = 0
    beyond_retention: int = 0
    rejected: dict[int, CardinalityExceeded] = field(default_factory=dict)  # key index -> reason
    kinds: np.ndarray | None = None
    overwritten: int = 0

    @property
    def written(self) -> int:
        """Samples stored, raw or in rollups."""
        return self.raw + self.rollups_only

    def kind_of(self, position: int) -> int:
        return RAW if self.kinds is None else int(self.kinds[position])


def dedupe_last(sids: np.ndarray, ts: np.ndarray) -> np.ndarray | None:
    """Indices keeping the last occurrence of each (series, ts), sorted by (series, ts); None
    when the input is already strictly sorted (the usual columnar import)."""
    if sids.size < 2:
        return None
    ds, dt = np.diff(sids), np.diff(ts)
    if ((ds > 0) | ((ds == 0) & (dt > 0))).all():
        return None
    order = np.lexsort((ts, sids))  # stable: equal keys keep their arrival order
    s, t = sids[order], ts[order]
    last = np.ones(order.size, dtype=bool)
    last[:-1] = (s[1:] != s[:-1]) | (t[1:] != t[:-1])
    return order[last]


def bucket_pairs(sids: np.ndarray, ts: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (series, bucket) pairs of samples sorted by (series, ts), in that order."""
    buckets = ts - ts % width
    if sids.size == 0:
        return sids, buckets
    keep = np.ones(sids.size, dtype=bool)
    keep[1:] = (sids[1:] != sids[:-1]) | (buckets[1:] != buckets[:-1])
    return sids[keep], buckets[keep]


# -- retention policies as a write reads them ----------------------------------------------------


@dataclass
class Policies:
    """The raw horizons and retention overrides of some metrics ('*': the horizon of all)."""

    horizons: dict[str, int] = field(default_factory=dict)
    overrides: dict[str, dict[str, int]] = field(default_factory=dict)

    @classmethod
    def of(cls, rows: Iterable[Sequence[Any]]) -> Policies:
        """Rows of `policy_sql`: (tag, metric, dropped_before, raw_ms, r1m_ms, r5m_ms, r1h_ms)."""
        out = cls()
        for tag, metric, before, *keep in rows:
            if tag == "h":
                out.horizons[str(metric)] = int(before)
            else:
                values = {k: int(v) for k, v in zip(KINDS, keep, strict=True) if v is not None}
                out.overrides[str(metric)] = values
        return out

    def floors(
        self, metric: str, now_ms: int, defaults: Mapping[str, int], grace_ms: int
    ) -> Floors:
        found = [h for h in (self.horizons.get(metric), self.horizons.get("*")) if h is not None]
        horizon = max(found) if found else None
        return metric_floors(now_ms, defaults, self.overrides.get(metric), horizon, grace_ms)


def policy_sql(names: str) -> str:
    """The horizons and overrides of the metrics `names` selects (an SQL set expression)."""
    return (
        "SELECT 'h', metric_name, dropped_before, NULL, NULL, NULL, NULL FROM raw_horizon"
        f" WHERE metric_name {names} UNION ALL SELECT 'o', metric_name, NULL, raw_ms, r1m_ms,"
        f" r5m_ms, r1h_ms FROM retention_overrides WHERE metric_name {names}"
    )


def policy_names(metrics: Iterable[str]) -> list[str]:
    return sorted({*metrics, "*"})


@dataclass
class WritePlan:
    """Per sample of a batch its kind; per metric its floors."""

    kinds: np.ndarray  # int8 per sample: RAW, HISTORY or BEYOND
    floors: dict[str, Floors]

    @property
    def has_history(self) -> bool:
        return bool((self.kinds == HISTORY).any())

    def key_floors(self, keys: Sequence[Any], kind: str) -> np.ndarray:
        """Per series key, the floor of `kind` ('raw' or a resolution) of its metric."""
        if kind == "raw":
            return np.array([self.floors[k.metric].raw for k in keys], dtype=np.int64)
        return np.array([self.floors[k.metric].rollups[kind] for k in keys], dtype=np.int64)


def plan_write(
    batch: SampleBatch,
    policies: Policies,
    now_ms: int,
    defaults: Mapping[str, int],
    grace_ms: int,
) -> WritePlan:
    floors = {m: policies.floors(m, now_ms, defaults, grace_ms) for m in metrics_of(batch)}
    raw = np.array([floors[k.metric].raw for k in batch.keys], dtype=np.int64)
    if batch.ts.size and int(batch.ts.min()) >= int(raw.max()):  # the usual case: all recent
        return WritePlan(np.zeros(batch.ts.size, dtype=np.int8), floors)
    oldest = np.array([floors[k.metric].oldest for k in batch.keys], dtype=np.int64)
    kinds = classify(batch.ts, raw[batch.series_index], oldest[batch.series_index])
    return WritePlan(kinds, floors)


def metrics_of(batch: SampleBatch) -> set[str]:
    return {key.metric for key in batch.keys}


# -- rows ----------------------------------------------------------------------------------------


@dataclass
class Rows:
    """Samples of accepted series, the last of each (series, ts), sorted by (series, ts), with
    their kind, series key index and position in the batch."""

    sids: np.ndarray
    ts: np.ndarray
    values: np.ndarray
    kinds: np.ndarray
    keys: np.ndarray
    positions: np.ndarray

    def __len__(self) -> int:
        return int(self.sids.size)

    @classmethod
    def of(cls, batch: SampleBatch, ids: np.ndarray, kinds: np.ndarray) -> Rows:
        """`ids`: series id per key of the batch, -1 for a rejected series."""
        keys = batch.series_index
        sids = ids[keys]
        positions = np.arange(sids.size)
        ts, values = batch.ts, batch.values
        keep = sids >= 0
        if not keep.all():
            sids, ts, values, kinds, keys, positions = (
                a[keep] for a in (sids, ts, values, kinds, keys, positions)
            )
        rows = cls(sids, ts, values, kinds, keys, positions)
        chosen = dedupe_last(sids, ts)
        return rows if chosen is None else rows.take(chosen)

    def take(self, index: np.ndarray) -> Rows:
        """The rows at `index` (positions or a mask), in their order."""
        if index.dtype == bool and index.all():
            return self
        return Rows(
            self.sids[index],
            self.ts[index],
            self.values[index],
            self.kinds[index],
            self.keys[index],
            self.positions[index],
        )

    def marks(self) -> Marks:
        """The (series, bucket) pairs these rows touch, per resolution."""
        return [(res.name, *bucket_pairs(self.sids, self.ts, res.ms)) for res in RESOLUTIONS]

    def result(
        self,
        batch_kinds: np.ndarray,
        rejected: dict[int, CardinalityExceeded],
        overwritten: int = 0,
    ) -> AppendResult:
        counts = np.bincount(self.kinds, minlength=3)
        everything_raw = not batch_kinds.any()
        return AppendResult(
            raw=int(counts[RAW]),
            rollups_only=int(counts[HISTORY]),
            beyond_retention=int(counts[BEYOND]),
            rejected=rejected,
            kinds=None if everything_raw else batch_kinds,
            overwritten=overwritten,
        )
