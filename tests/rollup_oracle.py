"""The brute-force truth of rollup buckets, shared by the rollup property test
(tests/jobs/test_rollup_property.py) and the sample store's contract suite
(tests/storage/test_sample_store_contract.py): aggregate every sample one by one, in Python."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable, Mapping
from typing import TypeVar

K = TypeVar("K", bound=Hashable)
# count, sum, min, max, sumsq, last, last_ts
Aggregate = tuple[int, float, float, float, float, float, int]


def brute_force_buckets(
    truth: Mapping[tuple[K, int], float], width: int, since: int | None = None
) -> dict[tuple[K, int], Aggregate]:
    """Per (series, bucket start) of the samples `truth` holds ((series, ts) -> value, last
    write already won), the bucket's aggregates: NaN values left out, and a bucket with nothing
    else has none. Only buckets starting at or after `since`, if given."""
    grouped: dict[tuple[K, int], list[tuple[int, float]]] = defaultdict(list)
    for (series, ts), value in truth.items():
        bucket = ts - ts % width
        if math.isnan(value) or (since is not None and bucket < since):
            continue
        grouped[(series, bucket)].append((ts, value))
    out: dict[tuple[K, int], Aggregate] = {}
    for key, points in grouped.items():
        points.sort()
        values = [v for _, v in points]
        out[key] = (
            len(values),
            sum(values),
            min(values),
            max(values),
            sum(v * v for v in values),
            points[-1][1],
            points[-1][0],
        )
    return out
