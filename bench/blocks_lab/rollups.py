"""Rollup layouts: bytes per raw sample of stored aggregates per resolution and span, the second
moment (m2) against a sum of squares in size and accuracy, and what computing buckets from raw
blocks at read time costs instead of storing them."""

from __future__ import annotations

from dataclasses import replace
from itertools import pairwise
from typing import Any

import numpy as np

from app.storage.blocks.agg_codec import decode_aggregates, encode_aggregates
from app.storage.blocks.aggregates import Buckets, aggregate, concat
from app.storage.blocks.codec import encode_block
from app.storage.blocks.merge import split_spans
from app.storage.blocks.read import StoredBlock, no_rows, read_range
from bench.blocks_lab.density import best, cut
from bench.blocks_lab.workloads import Lab

HOUR = 3_600_000
WIDTHS = {"1m": 60_000, "5m": 300_000, "1h": HOUR}
AGG_SPANS = {"2h": 2 * HOUR, "1d": 24 * HOUR, "7d": 7 * 24 * HOUR}
RAW_SPAN = 2 * HOUR


def buckets_of(lab: Lab, width: int) -> list[Buckets]:
    out = []
    for series in range(lab.values.shape[0]):
        ids = np.full(lab.ts.shape[1], series, dtype=np.int64)
        out.append(aggregate(ids, lab.ts[series], lab.values[series], width))
    return out


def with_sumsq(buckets: Buckets) -> Buckets:
    """The same buckets with the sum of squares in the m2 column, as the row tables keep it."""
    return replace(buckets, m2=buckets.sumsq())


def payloads(per_series: list[Buckets], width: int, span: int) -> list[bytes]:
    out = []
    for b in per_series:
        out += [
            encode_aggregates(b.take(slice(p.lo, p.hi)), width) for p in split_spans(b.bucket, span)
        ]
    return out


def layout_sizes(lab: Lab) -> dict[str, Any]:
    sizes: dict[str, Any] = {}
    for res, width in WIDTHS.items():
        per_series = buckets_of(lab, width)
        row: dict[str, Any] = {"buckets": sum(len(b) for b in per_series)}
        for span_name, span in AGG_SPANS.items():
            m2 = payloads(per_series, width, span)
            sq = payloads([with_sumsq(b) for b in per_series], width, span)
            row[span_name] = {
                "payloads": len(m2),
                "m2_bytes_per_raw_sample": sum(map(len, m2)) / lab.samples,
                "sumsq_bytes_per_raw_sample": sum(map(len, sq)) / lab.samples,
            }
        sizes[res] = row
    return sizes


def stddev_errors(values: np.ndarray, width: int) -> dict[str, float]:
    """Largest relative error of the bucket standard deviation, from m2 and from the sum of
    squares, against a two-pass computation in extended precision."""
    ts = np.arange(values.size, dtype=np.int64) * 10_000
    got = aggregate(np.zeros(values.size, dtype=np.int64), ts, values, width)
    exact = []
    wide = values.astype(np.longdouble)
    edges = np.append(np.searchsorted(ts, got.bucket), values.size)
    for lo, hi in pairwise(edges):
        part = wide[lo:hi]
        exact.append(np.sqrt(np.mean((part - part.mean()) ** 2)))
    want = np.array(exact, dtype=np.longdouble)
    with np.errstate(invalid="ignore", divide="ignore"):
        naive = np.sqrt(np.maximum(got.sumsq() / got.count - (got.sum / got.count) ** 2, 0.0))
        scale = np.maximum(want, np.finfo(np.float64).tiny)
        return {
            "m2": float(np.max(np.abs(got.stddev() - want) / scale)),
            "sumsq": float(np.max(np.abs(naive - want) / scale)),
        }


def accuracy(labs: list[Lab]) -> dict[str, Any]:
    bench = labs[0].values[0]
    rng = np.random.default_rng(5)
    large = 1e9 + np.round(rng.normal(0, 1, 10_000), 3)  # a big level, a small spread
    return {
        "bench_1m": stddev_errors(bench, 60_000),
        "bench_1h": stddev_errors(bench, HOUR),
        "level_1e9_spread_1_1m": stddev_errors(large, 60_000),
    }


def read_costs(lab: Lab, repeat: int) -> dict[str, float]:
    """ms per query: buckets of one series or of 25, over the whole range, from raw blocks
    (decode + aggregate) against decoding stored day payloads."""
    blocks = [
        StoredBlock(s, int(ts[0]), int(ts[-1]), encode_block(ts, v))
        for s, ts, v in cut(lab, RAW_SPAN)
    ]
    lo, hi = int(lab.ts.min()), int(lab.ts.max())
    stored = {
        res: [(s, p) for s, b in enumerate(buckets_of(lab, w)) for p in payloads([b], w, 24 * HOUR)]
        for res, w in WIDTHS.items()
    }
    out: dict[str, float] = {}
    for group in (1, 25):
        chosen = [b for b in blocks if b.series < group]
        for res, width in WIDTHS.items():

            def from_raw(chosen: list[StoredBlock] = chosen, width: int = width) -> Buckets:
                rows = read_range(chosen, no_rows(), lo, hi)
                return aggregate(rows.series, rows.ts, rows.values, width)

            def from_stored(res: str = res, group: int = group) -> Buckets:
                return concat([decode_aggregates(p, s) for s, p in stored[res] if s < group])

            out[f"{group}_series_{res}_from_raw_ms"] = best(repeat, from_raw) * 1000
            out[f"{group}_series_{res}_stored_ms"] = best(repeat, from_stored) * 1000
    return out


def job_cost(lab: Lab, repeat: int) -> dict[str, float]:
    """Seconds per 1M samples to compute and encode the aggregates of every resolution."""

    def work() -> None:
        for width in WIDTHS.values():
            payloads(buckets_of(lab, width), width, 24 * HOUR)

    def aggregate_only() -> None:
        for width in WIDTHS.values():
            buckets_of(lab, width)

    scale = 1e6 / lab.samples
    return {
        "aggregate_s_per_million": best(repeat, aggregate_only) * scale,
        "aggregate_and_encode_s_per_million": best(repeat, work) * scale,
    }


def run(labs: list[Lab], repeat: int) -> dict[str, Any]:
    return {
        "layouts": {lab.name: layout_sizes(lab) for lab in labs},
        "stddev_relative_error": accuracy(labs),
        "read_ms": read_costs(labs[0], repeat),
        "job": job_cost(labs[0], repeat),
    }


def show(results: dict[str, Any]) -> None:
    print("\nrollups: bytes per raw sample, m2 (sum of squares instead), per aggregate span")
    for lab, sizes in results["layouts"].items():
        print(f"  {lab}")
        for res, row in sizes.items():
            cells = "  ".join(
                f"{span}: {row[span]['m2_bytes_per_raw_sample']:.3f}"
                f" ({row[span]['sumsq_bytes_per_raw_sample']:.3f})"
                for span in AGG_SPANS
            )
            print(f"    {res}: {cells}   [{row['buckets']} buckets]")
    print("  stddev, largest relative error (m2 / sum of squares):")
    for case, errors in results["stddev_relative_error"].items():
        print(f"    {case}: {errors['m2']:.2e} / {errors['sumsq']:.2e}")
    print("  queries over the whole range, ms:")
    for name, ms in results["read_ms"].items():
        print(f"    {name}: {ms:.2f}")
    print(f"  rollup computation: {results['job']}")
