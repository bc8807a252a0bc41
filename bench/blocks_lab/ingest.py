"""One columnar import request turned into block rows, each stage timed: the JSON parse
(orjson), the service's own checks and numpy conversion (app.protocols.native.items.parse_import,
the whole-body form; runs 1-5 used its predecessor, app.validation.parse_import), then the
encoding of raw blocks and of their 5m and 1h aggregates per series and day."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np
import orjson

from app.protocols.native.items import parse_import
from app.storage.blocks.agg_codec import encode_aggregates
from app.storage.blocks.aggregates import aggregate
from app.storage.blocks.batch import encode_series
from app.storage.blocks.merge import split_spans
from app.validation import TimeBounds
from bench import workload
from bench.blocks_lab.workloads import END_MS, SEED

DAY = 86_400_000
STORED_ROLLUPS = {"5m": 300_000, "1h": 3_600_000}  # 1m: computed from raw while raw is kept


@dataclass
class Stages:
    """Seconds spent per stage, summed over requests."""

    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    def add(self, stage: str, started: float) -> float:
        now = time.perf_counter()
        self.seconds[stage] += now - started
        return now


@dataclass(frozen=True)
class Request:
    body: bytes
    samples: int


@dataclass
class Encoded:
    # (series_id, span_start, first_ts, last_ts, count, payload)
    blocks: list[tuple[int, int, int, int, int, bytes]]
    # (series_id, resolution, day_start, buckets, payload)
    rollups: list[tuple[int, str, int, int, bytes]]


def requests(series: int = 100, points: int = 10_000, per_request: int = 10_000) -> list[Request]:
    """The benchmark's columnar bodies, 10,000 samples (one series) per request."""
    work = workload.build(series, points, SEED, END_MS)
    return [
        Request(orjson.dumps({"series": entries}), sum(len(e["values"]) for e in entries))  # type: ignore[arg-type, misc]
        for entries in workload.columnar_batches(work, per_request)
    ]


def series_ids(keys: list[object]) -> np.ndarray:
    """The lab's series ids: host number + 1 (the service resolves ids through its registry,
    unchanged by blocks and not measured here)."""
    return np.array(
        [int(orjson.loads(k.labels_json)["host"][4:]) + 1 for k in keys], dtype=np.int64
    )  # type: ignore[attr-defined]


def encode_request(request: Request, span_ms: int, stages: Stages, rollups: bool = True) -> Encoded:
    started = time.perf_counter()
    body = orjson.loads(request.body)
    started = stages.add("json_parse", started)
    batch = parse_import(body, TimeBounds.starting_now(timedelta(days=3650)), 10**9)
    started = stages.add("checks_and_numpy", started)
    ids = series_ids(batch.keys)[batch.series_index]
    out = Encoded([], [])
    for sid in np.unique(ids).tolist():
        mine = ids == sid
        ts, values = batch.ts[mine], batch.values[mine]
        if ts.size > 1 and not bool(np.all(ts[1:] > ts[:-1])):
            order = np.argsort(ts, kind="stable")
            ts, values = ts[order], values[order]  # (and last write wins; sorted here)
        for p, payload in encode_series(ts, values, span_ms):
            first, last = int(ts[p.lo]), int(ts[p.hi - 1])
            out.blocks.append((sid, p.span_start, first, last, p.hi - p.lo, payload))
        started = stages.add("encode_blocks", started)
        if not rollups:
            continue
        for res, width in STORED_ROLLUPS.items():
            buckets = aggregate(np.full(ts.size, sid), ts, values, width)
            for p in split_spans(buckets.bucket, DAY):
                day = buckets.take(slice(p.lo, p.hi))
                out.rollups.append(
                    (sid, res, p.span_start, len(day), encode_aggregates(day, width))
                )
        started = stages.add("encode_rollups", started)
    return out
