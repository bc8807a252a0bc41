"""Raw blocks: bytes per sample at each span, encode and decode time, against pcodec's
standalone defaults (the figures quoted in issue 13)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
from pcodec import ChunkConfig, standalone  # type: ignore[import-untyped]

from app.storage.blocks.batch import encode_series
from app.storage.blocks.codec import decode_block, encode_block
from app.storage.blocks.column import Settings
from app.storage.blocks.merge import split_spans
from app.storage.blocks.read import StoredBlock, no_rows, read_range
from bench.blocks_lab.workloads import Lab

HOUR = 3_600_000
SPANS = {"1h": HOUR, "2h": 2 * HOUR, "6h": 6 * HOUR, "1d": 24 * HOUR, "whole": 0}


def cut(lab: Lab, span_ms: int) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """(series, ts, values) of every block of the workload at a span (0: one per series)."""
    out = []
    for series in range(lab.values.shape[0]):
        ts, values = lab.ts[series], lab.values[series]
        if span_ms == 0:
            out.append((series, ts, values))
            continue
        out += [(series, ts[p.lo : p.hi], values[p.lo : p.hi]) for p in split_spans(ts, span_ms)]
    return out


def best(repeat: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def standalone_bytes(blocks: list[tuple[int, np.ndarray, np.ndarray]]) -> int:
    """pcodec's standalone format with its default configuration, timestamps and values."""
    cfg = ChunkConfig()
    return sum(
        len(standalone.simple_compress(np.ascontiguousarray(ts), cfg))
        + len(standalone.simple_compress(np.ascontiguousarray(v), cfg))
        for _, ts, v in blocks
    )


def measure_span(lab: Lab, span_ms: int, repeat: int) -> dict[str, Any]:
    blocks = cut(lab, span_ms)
    payloads = [encode_block(ts, v) for _, ts, v in blocks]
    for (_, ts, v), payload in zip(blocks, payloads, strict=True):
        got_ts, got_v = decode_block(payload)
        assert np.array_equal(got_ts, ts) and np.array_equal(got_v.view(np.int64), v.view(np.int64))
    per_million = 1e6 / lab.samples
    encode_s = best(repeat, lambda: [encode_block(ts, v) for _, ts, v in blocks]) * per_million
    whole = [(lab.ts[s], lab.values[s]) for s in range(lab.values.shape[0])]
    at_once_s = (
        best(repeat, lambda: [encode_series(ts, v, span_ms or 2**62) for ts, v in whole])
        * per_million
    )
    decode_s = best(repeat, lambda: [decode_block(p) for p in payloads]) * per_million
    stored = [
        StoredBlock(s, int(ts[0]), int(ts[-1]), p)
        for (s, ts, _), p in zip(blocks, payloads, strict=True)
    ]
    by_series: dict[int, list[StoredBlock]] = {}
    for block in stored:
        by_series.setdefault(block.series, []).append(block)
    lo, hi = int(lab.ts.min()), int(lab.ts.max())
    series_reads = list(by_series.values())

    def read_each() -> None:
        for group in series_reads:
            read_range(group, no_rows(), lo, hi)

    read_ms = best(repeat, read_each) / len(series_reads) * 1000
    return {
        "blocks": len(blocks),
        "bytes_per_sample": sum(map(len, payloads)) / lab.samples,
        "pcodec_standalone_bytes_per_sample": standalone_bytes(blocks) / lab.samples,
        "encode_s_per_million": encode_s,
        "encode_series_s_per_million": at_once_s,
        "decode_s_per_million": decode_s,
        "read_one_series_ms": read_ms,
        "points_per_series": lab.values.shape[1],
    }


def levels(lab: Lab, span_ms: int, repeat: int) -> dict[str, Any]:
    """pcodec's compression level for the decimal integers: bytes/sample against encode time."""
    whole = [(lab.ts[s], lab.values[s]) for s in range(lab.values.shape[0])]
    out: dict[str, Any] = {}
    for level in (0, 2, 4, 6, 8):
        cfg = Settings(int_level=level)
        size = sum(len(b) for ts, v in whole for _, b in encode_series(ts, v, span_ms, cfg))
        seconds = best(
            repeat, lambda cfg=cfg: [encode_series(ts, v, span_ms, cfg) for ts, v in whole]
        )
        out[str(level)] = {
            "bytes_per_sample": size / lab.samples,
            "encode_series_s_per_million": seconds * 1e6 / lab.samples,
        }
    return out


def run(labs: list[Lab], repeat: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for lab in labs:
        out[lab.name] = {name: measure_span(lab, ms, repeat) for name, ms in SPANS.items()}
    out["levels_bench_2h"] = levels(labs[0], 2 * HOUR, repeat)
    return out


def show(results: dict[str, Any]) -> None:
    print(
        "\nraw blocks: bytes/sample (pcodec standalone defaults) | encode (whole series at"
        " once), decode s per 1M | read of one series ms"
    )
    for lab, spans in results.items():
        if lab == "levels_bench_2h":
            continue
        print(f"  {lab}")
        for span, r in spans.items():
            print(
                f"    {span:>5}: {r['bytes_per_sample']:.3f}"
                f" ({r['pcodec_standalone_bytes_per_sample']:.3f})"
                f" | {r['encode_s_per_million']:.3f} ({r['encode_series_s_per_million']:.3f})"
                f" {r['decode_s_per_million']:.4f}"
                f" | {r['read_one_series_ms']:.3f} ms for {r['points_per_series']} points"
            )
    print("  pcodec level of the decimal integers (bench, 2h): bytes/sample, encode s per 1M")
    for level, r in results["levels_bench_2h"].items():
        print(f"    {level}: {r['bytes_per_sample']:.3f}, {r['encode_series_s_per_million']:.3f}")
