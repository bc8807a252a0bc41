"""Ingestion through the outside protocols, beside VictoriaMetrics 1.79.5 receiving the same bodies.

The workload's samples (100 series x 10,000 at 10 s) in requests of 10,000 samples, sent one
after the other over one keep-alive connection, bodies encoded before the clock starts:

- remote write: snappy-compressed WriteRequests, each holding every series with the next
  10,000 / series timestamps (as a backfilling sender groups them);
- line protocol: `measurement,host=..,region=.. value=V <ns>`, time-major;
- the item form of /backfill/import: one JSON object per sample, RFC 3339 timestamps.

Each run writes under a metric of its own, so every row is new. The parse cost per sample is
measured in this process, without HTTP or the database: the decoder of each format over every
body, best of three, with the server's garbage-collector thresholds.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

import cramjam
import httpx
import orjson

from bench.promql import VictoriaMetrics
from bench.workload import Workload

REQUEST_SAMPLES = 10_000
RW_HEADERS = {
    "Content-Encoding": "snappy",
    "Content-Type": "application/x-protobuf",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}


def _steps(work: Workload) -> list[tuple[int, int]]:
    per = max(1, REQUEST_SAMPLES // len(work.labels))
    return [(i, min(i + per, work.ts.size)) for i in range(0, work.ts.size, per)]


def remote_write_bodies(work: Workload, metric: str) -> list[bytes]:
    from app.protocols.remote_write.proto import WriteRequest

    bodies = []
    for lo, hi in _steps(work):
        request = WriteRequest()
        stamps = work.ts[lo:hi].tolist()
        for labels, row in zip(work.labels, work.values[:, lo:hi].tolist(), strict=True):
            series = request.timeseries.add()
            series.labels.add(name="__name__", value=metric)
            for name, value in sorted(labels.items()):
                series.labels.add(name=name, value=value)
            for ts, value in zip(stamps, row, strict=True):
                series.samples.add(timestamp=ts, value=value)
        bodies.append(bytes(cramjam.snappy.compress_raw(request.SerializeToString())))
    return bodies


def line_protocol_bodies(work: Workload, measurement: str) -> list[bytes]:
    keys = [
        f"{measurement},host={labels['host']},region={labels['region']} value="
        for labels in work.labels
    ]
    bodies = []
    for lo, hi in _steps(work):
        lines = []
        for t, column in zip(
            work.ts[lo:hi].tolist(), work.values[:, lo:hi].T.tolist(), strict=True
        ):
            stamp = f" {t * 1_000_000}"
            lines += [f"{key}{value!r}{stamp}" for key, value in zip(keys, column, strict=True)]
        bodies.append(("\n".join(lines) + "\n").encode())
    return bodies


def item_bodies(work: Workload, metric: str) -> list[bytes]:
    from app.timeutil import format_ms_array

    bodies = []
    for lo, hi in _steps(work):
        items = []
        stamps = format_ms_array(work.ts[lo:hi])
        for t, column in zip(stamps, work.values[:, lo:hi].T.tolist(), strict=True):
            items += [
                {"metric_name": metric, "value": value, "timestamp": t, "labels": labels}
                for labels, value in zip(work.labels, column, strict=True)
            ]
        bodies.append(orjson.dumps({"metrics": items}))
    return bodies


def send(base_url: str, path: str, bodies: list[bytes], headers: dict[str, str]) -> float:
    """Seconds to send every body, one after the other over one connection."""
    with httpx.Client(base_url=base_url, timeout=600) as client:
        started = time.perf_counter()
        for body in bodies:
            answer = client.post(path, content=body, headers=headers)
            if answer.status_code not in (200, 201, 204):
                raise SystemExit(f"{path} failed: {answer.status_code} {answer.text[:300]}")
        return time.perf_counter() - started


def measure_ours(base_url: str, work: Workload, run: str) -> dict[str, float]:
    """Samples/s of each protocol into the server at `base_url`."""
    json_headers = {"Content-Type": "application/json"}
    rates = {}
    for name, path, bodies, headers in (
        ("remote_write", "/api/v1/write", remote_write_bodies(work, f"rw_{run}"), RW_HEADERS),
        ("line_protocol", "/write?db=bench", line_protocol_bodies(work, f"lp_{run}"), {}),
        ("items", "/backfill/import", item_bodies(work, f"items_{run}"), json_headers),
    ):
        rates[name] = work.samples / send(base_url, path, bodies, headers)
    return rates


def measure_victoria_metrics(work: Workload) -> dict[str, float]:
    """The same remote-write and line-protocol bodies into VictoriaMetrics 1.79.5."""
    with VictoriaMetrics() as vm:
        rw = send(vm.base_url, "/api/v1/write", remote_write_bodies(work, "rw_vm"), RW_HEADERS)
        lp = send(vm.base_url, "/write?db=bench", line_protocol_bodies(work, "lp_vm"), {})
    return {"remote_write": work.samples / rw, "line_protocol": work.samples / lp}


def parse_cost(work: Workload) -> dict[str, float]:
    """Microseconds per sample of each decoder alone (best of three passes over the bodies)."""
    from datetime import timedelta

    from app.protocols.builder import SeriesBuilder
    from app.protocols.influx.common import precision_of
    from app.protocols.influx.parse import read_body
    from app.protocols.native.items import parse_import
    from app.protocols.remote_write.decode import decode_write_request, snappy_block
    from app.protocols.report import WriteReport
    from app.validation import TimeBounds

    bounds = TimeBounds.starting_now(timedelta(minutes=10))
    rw = remote_write_bodies(work, "rw_parse")
    lp = line_protocol_bodies(work, "lp_parse")
    items = item_bodies(work, "items_parse")

    def remote_write(body: bytes) -> None:
        decode_write_request(snappy_block(body, 1 << 30)).builder.build()

    def line_protocol(body: bytes) -> None:
        builder = SeriesBuilder()
        read_body(body, precision_of("ns"), "bench", 0, builder, WriteReport())
        builder.build()

    def item_form(body: bytes) -> None:
        parse_import(orjson.loads(body), bounds, 1 << 30)

    cases: list[tuple[str, list[bytes], Callable[[bytes], None]]] = [
        ("remote_write", rw, remote_write),
        ("line_protocol", lp, line_protocol),
        ("items", items, item_form),
    ]
    out = {}
    gc.collect()
    thresholds = gc.get_threshold()
    gc.set_threshold(50_000, 20, 20)  # as the server runs (app.main._tune_gc)
    for name, bodies, decode in cases:
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            for body in bodies:
                decode(body)
            best = min(best, time.perf_counter() - started)
        out[name] = best / work.samples * 1e6
    gc.set_threshold(*thresholds)
    return out


def table_rows(results: list[dict[str, Any]], victoria: dict[str, float]) -> list[str]:
    """Rows for the protocol part of the summary table."""
    rows = [
        "",
        "| protocol ingestion (samples/s) | "
        + " | ".join(r["backend"] for r in results)
        + " | VictoriaMetrics 1.79.5 | parse cost (us/sample) |",
        "|---" * (len(results) + 3) + "|",
    ]
    cost = results[0].get("protocol_parse_us", {}) if results else {}
    for name, label in (
        ("remote_write", "remote write, 10,000-sample requests"),
        ("line_protocol", "line protocol, 10,000-line requests"),
        ("items", "/backfill/import item form, RFC 3339"),
    ):
        ours = [r["protocols"][name] for r in results]
        cells = [
            f"{v:,.0f}" + (f" ({v / victoria[name]:.2f}x)" if name in victoria else "")
            for v in ours
        ]
        vm = f"{victoria[name]:,.0f}" if name in victoria else "-"
        rows.append(f"| {label} | " + " | ".join(cells) + f" | {vm} | {cost.get(name, 0):.2f} |")
    return rows
