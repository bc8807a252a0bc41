"""Issue 13's storage targets, measured on each backend beside VictoriaMetrics in the same run.

    python -m bench.storage [--series 100] [--points 10000] [--backends sqlite,postgresql]
                            [--stream-samples 10000000] [--repeats 20] [--out FILE]

The workload is the benchmark's (bench/workload.py, 1,000,000 samples by default). Per backend, a
fresh database and the real server (uvicorn subprocess, jobs off):

- columnar import of the workload (`POST /backfill/import`, 10,000 samples per request over one
  connection), durable before each answer;
- `/query/raw` of one series (all its points) and `/query/rollup` at 1h of the 25 series of one
  region, end to end as a client sees them (p50 of `--repeats`);
- the rollup job over everything, as a process (`python -m app.jobs.rollup_job`), then the compact
  job (`python -m app.jobs.compact_job`), which folds the closed days of the rollup tables into
  rollup blocks (with STORAGE_LAYOUT=blocks it also compacts raw samples); the workload ends at
  the last UTC midnight at least 2 hours ago, so that every day of it has closed, as it has a day
  after ingestion;
- bytes per sample on disk, split into raw samples, rollups, invalidation marks, series and the
  rest (SQLite: the `dbstat` table; PostgreSQL: each relation with its indexes and TOAST);
- the server's peak RSS while a streaming NDJSON import of `--stream-samples` samples runs
  (0 skips it).

VictoriaMetrics 1.79.5 (Debian's `victoria-metrics`, a free port, a temporary directory) gets the
same samples by its JSON-lines import; its raw read is `/api/v1/export` of the same series and
its rollup read `avg_over_time(cpu_usage{region=...}[1h])` at step 1h; its disk is the data
directory after `/internal/force_flush`. Without the binary the VictoriaMetrics column says so.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import numpy as np
import orjson
from sqlalchemy.engine import make_url

from bench import calibration, workload
from bench.promql import VictoriaMetrics
from bench.server import Server
from bench.workload import METRIC, Workload

ROOT = Path(__file__).resolve().parents[1]
REGION = "eu-west"
HOST = "host000"
TARGETS = {
    "raw_bytes": 1.6,
    "total_bytes": 4.0,
    "import_vs_vm": {"sqlite": 1.0, "postgresql": 0.7},
    "raw_read_vs_vm": 1.5,
    "rollup_read_vs_vm": 1.0,
    "rollup_job_s": 2.0,
    "stream_rss_mb": 300.0,
}


def p50_ms(call: Callable[[], httpx.Response], repeats: int) -> float:
    call()  # warm connections and caches
    walls = []
    for _ in range(repeats):
        started = time.perf_counter()
        answer = call()
        walls.append((time.perf_counter() - started) * 1000)
        if answer.status_code != 200:
            raise SystemExit(f"{answer.request.url}: {answer.status_code} {answer.text[:300]}")
    return float(np.percentile(walls, 50))


def import_rate(client: httpx.Client, work: Workload) -> float:
    bodies = [orjson.dumps({"series": b}) for b in workload.columnar_batches(work, 10_000)]
    started = time.perf_counter()
    for body in bodies:
        answer = client.post(
            "/backfill/import", content=body, headers={"Content-Type": "application/json"}
        )
        if answer.status_code != 201:
            raise SystemExit(f"import: {answer.status_code} {answer.text[:300]}")
    return work.samples / (time.perf_counter() - started)


def ndjson_lines(samples: int, end_ms: int) -> Iterator[bytes]:
    """`samples` single-sample lines over 1,000 series at 10 s, oldest first, in 1 MB pieces."""
    series, per = 1000, 10_000
    steps = -(-samples // series)
    start_s = end_ms // 1000 - steps * 10
    rng = np.random.default_rng(1)
    for first in range(0, steps, per // series):
        stamps = start_s + 10 * np.arange(first, min(steps, first + per // series))
        values = np.round(rng.normal(50, 10, size=(stamps.size, series)), 3)
        lines = [
            b'{"metric_name":"stream","value":%r,"timestamp":%d,"labels":{"host":"h%d"}}'
            % (value, stamp, host)
            for stamp, row in zip(stamps.tolist(), values.tolist(), strict=True)
            for host, value in enumerate(row)
        ]
        yield b"\n".join(lines) + b"\n"


def stream_peak_rss(server: Server, samples: int, end_ms: int) -> float:
    with httpx.Client(base_url=server.base_url, timeout=3600) as client:
        answer = client.post(
            "/backfill/import?chunk_size=10000",
            content=ndjson_lines(samples, end_ms),
            headers={"Content-Type": "application/x-ndjson"},
        )
    if answer.status_code != 201:
        raise SystemExit(f"streaming import: {answer.status_code} {answer.text[:300]}")
    return server.peak_rss_mb()


def job_seconds(url: str, client: httpx.Client, job: str) -> float:
    """A job's own duration (as /jobs/status records it), run as a process."""
    env = {**os.environ, "DATABASE_URL": url, "LOG_LEVEL": "WARNING"}
    subprocess.run(
        [sys.executable, "-m", f"app.jobs.{job}_job"], cwd=ROOT, env=env, check=True,
        capture_output=True,
    )  # fmt: skip
    status = client.get("/jobs/status").json()
    return float(status["jobs"][job]["duration_ms"]) / 1000


def closed_end(now_ms: int) -> int:
    """The last UTC midnight at least 2 hours before `now_ms`: every day before it has closed
    (ROLLUP_GRACE and the fold's hour of margin included)."""
    end = now_ms - 2 * 3_600_000
    return end - end % 86_400_000


def sizes_of(name: str, url: str) -> dict[str, int]:
    if name == "sqlite":
        return sqlite_bytes(Path(make_url(url).database or ""))
    return asyncio.run(postgres_bytes(url))


def group_of(table: str) -> str:
    if table.startswith("samples") or table == "blocks":
        return "raw"
    if table.startswith("rollup_dirty") or table.startswith("claimed"):
        return "marks"
    if table.startswith("rollup_") and table != "rollup_state":  # rollup_blocks too
        return "rollups"
    if table.startswith("series"):
        return "series"
    return "other"


def sqlite_bytes(path: Path) -> dict[str, int]:
    """Bytes per table group, each table counted with its indexes (dbstat, page sizes)."""
    db = sqlite3.connect(path)
    try:
        indexes = dict(db.execute("SELECT name, tbl_name FROM sqlite_master WHERE type='index'"))
        out: dict[str, int] = {}
        for name, size in db.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name"):
            group = group_of(indexes.get(name, name))
            out[group] = out.get(group, 0) + int(size)
    finally:
        db.close()
    wal = path.with_name(path.name + "-wal")
    if wal.exists():
        out["other"] = out.get("other", 0) + wal.stat().st_size
    return out


async def postgres_bytes(url: str) -> dict[str, int]:
    """Bytes per table group: every table's pg_total_relation_size (indexes and TOAST in)."""
    conn = await asyncpg.connect(make_url(url).render_as_string(hide_password=False))
    try:
        rows = await conn.fetch(
            "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind = 'r' AND n.nspname = 'public'"
        )
    finally:
        await conn.close()
    out: dict[str, int] = {}
    for name, size in rows:
        out[group_of(name)] = out.get(group_of(name), 0) + int(size)
    return out


async def vacuum_analyze(url: str) -> None:
    conn = await asyncpg.connect(make_url(url).render_as_string(hide_password=False))
    try:
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()


def ours(name: str, url: str, work: Workload, args: argparse.Namespace) -> dict[str, Any]:
    env = {"DATABASE_URL": url, "SCHEDULER_ENABLED": "false", "LOG_LEVEL": "WARNING"}
    result: dict[str, Any] = {"backend": name}
    whole: dict[str, Any] = {"start_time": work.start_ms / 1000, "end_time": work.end_ms / 1000}
    with Server(env) as server, httpx.Client(base_url=server.base_url, timeout=600) as client:
        result["import_per_s"] = import_rate(client, work)
        result["rollup_job_s"] = job_seconds(url, client, "rollup")
        before = sizes_of(name, url)  # PostgreSQL: before any VACUUM
        result["bytes_per_sample_before_fold"] = {
            k: v / work.samples for k, v in sorted(before.items())
        }
        result["compact_job_s"] = job_seconds(url, client, "compact")
        result["layout"] = os.environ.get("STORAGE_LAYOUT", "blocks")
        if name == "postgresql":
            asyncio.run(vacuum_analyze(url))
        raw: dict[str, Any] = {"metric_name": METRIC, "label": f"host:{HOST}", **whole}
        rollup: dict[str, Any] = {
            "metric_name": METRIC,
            "window": "1h",
            "label": f"region:{REGION}",
            **whole,
        }
        result["raw_read_ms"] = p50_ms(lambda: client.get("/query/raw", params=raw), args.repeats)
        result["rollup_read_ms"] = p50_ms(
            lambda: client.get("/query/rollup", params=rollup), args.repeats
        )
        sizes = sizes_of(name, url)
        result["bytes_per_sample"] = {k: v / work.samples for k, v in sorted(sizes.items())}
        result["bytes_per_sample"]["total"] = sum(sizes.values()) / work.samples
        if args.stream_samples:
            result["stream_samples"] = args.stream_samples
            result["stream_peak_rss_mb"] = stream_peak_rss(
                server, args.stream_samples, work.start_ms
            )
    return result


def vm_lines(work: Workload) -> bytes:
    """The workload as VictoriaMetrics' JSON lines (/api/v1/import), one line per series."""
    stamps = work.ts.tolist()
    lines = [
        orjson.dumps(
            {"metric": {"__name__": METRIC, **labels}, "values": row, "timestamps": stamps}
        )
        for labels, row in zip(work.labels, work.values.tolist(), strict=True)
    ]
    return b"\n".join(lines) + b"\n"


def victoria_metrics(work: Workload, args: argparse.Namespace) -> dict[str, Any]:
    try:
        vm = VictoriaMetrics().__enter__()
    except SystemExit as missing:
        return {"missing": str(missing)}
    try:
        body = vm_lines(work)
        result: dict[str, Any] = {}
        with httpx.Client(base_url=vm.base_url, timeout=600) as client:
            started = time.perf_counter()
            answer = client.post("/api/v1/import", content=body)
            result["import_per_s"] = work.samples / (time.perf_counter() - started)
            if answer.status_code >= 300:
                raise SystemExit(f"victoria-metrics import: {answer.text[:300]}")
            client.get("/internal/force_flush")
            count: dict[str, Any] = {"query": f"count({METRIC})", "time": work.end_ms / 1000}
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # imported data is searchable after a moment
                found = client.get("/api/v1/query", params=count).json()["data"]["result"]
                if found and int(found[0]["value"][1]) == len(work.labels):
                    break
                time.sleep(0.5)
            export: dict[str, Any] = {
                "match[]": f'{METRIC}{{host="{HOST}"}}',
                "start": work.start_ms / 1000,
                "end": work.end_ms / 1000,
            }
            query: dict[str, Any] = {
                "query": f'avg_over_time({METRIC}{{region="{REGION}"}}[1h])',
                "start": work.start_ms / 1000 + 3600,
                "end": work.end_ms / 1000,
                "step": "1h",
                "nocache": "1",
            }
            result["raw_read_ms"] = p50_ms(
                lambda: client.get("/api/v1/export", params=export), args.repeats
            )
            result["rollup_read_ms"] = p50_ms(
                lambda: client.get("/api/v1/query_range", params=query), args.repeats
            )
        if vm.process is not None:  # its disk as a stop leaves it (in-memory parts written)
            vm.process.terminate()
            vm.process.wait(timeout=60)
            vm.process = None
        size = sum(p.stat().st_size for p in vm.data.rglob("*") if p.is_file())
        result["bytes_per_sample"] = {"total": size / work.samples}
        return result
    finally:
        vm.__exit__(None, None, None)


def table(results: list[dict[str, Any]], vm: dict[str, Any], points: int) -> str:
    """Our backends and VictoriaMetrics side by side, with the targets of issue 13."""

    def ratio(r: dict[str, Any], key: str) -> str:
        return f" ({r[key] / vm[key]:.2f}x VM)" if key in vm else ""

    rows: list[tuple[str, Callable[[dict[str, Any]], str], str]] = [
        (
            "columnar import (samples/s)",
            lambda r: f"{r['import_per_s']:,.0f}" + ratio(r, "import_per_s"),
            ">= 1.0x VM (SQLite), 0.7x (PostgreSQL)",
        ),
        (
            f"raw read, 1 series, {points:,} points (ms, p50)",
            lambda r: f"{r['raw_read_ms']:.1f}" + ratio(r, "raw_read_ms"),
            "<= 1.5x VM",
        ),
        (
            "1h rollups of 25 series (ms, p50)",
            lambda r: f"{r['rollup_read_ms']:.1f}" + ratio(r, "rollup_read_ms"),
            "<= 1x VM",
        ),
        ("rollup job, all samples (s)", lambda r: f"{r['rollup_job_s']:.2f}", "<= 2"),
        ("compact job, after it (s)", lambda r: f"{r.get('compact_job_s', 0):.2f}", "-"),
        (
            "disk, rollups + marks before the compact job (B/sample)",
            lambda r: (
                f"{r.get('bytes_per_sample_before_fold', {}).get('rollups', 0):.2f} + "
                f"{r.get('bytes_per_sample_before_fold', {}).get('marks', 0):.2f}"
            ),
            "-",
        ),
        (
            "disk, raw samples (B/sample)",
            lambda r: f"{r['bytes_per_sample'].get('raw', 0):.2f}",
            "<= 1.6",
        ),
        (
            "disk, rollups + marks (B/sample)",
            lambda r: (
                f"{r['bytes_per_sample'].get('rollups', 0):.2f} + "
                f"{r['bytes_per_sample'].get('marks', 0):.2f}"
            ),
            "<= 2.5",
        ),
        (
            "disk, everything (B/sample)",
            lambda r: f"{r['bytes_per_sample']['total']:.2f}",
            "<= 4",
        ),
        (
            "peak RSS, streaming import (MB)",
            lambda r: f"{r.get('stream_peak_rss_mb', float('nan')):.0f}",
            "<= 300 (10M samples)",
        ),
    ]
    names = [r["backend"] for r in results]
    head = "| measure | " + " | ".join(names) + " | VictoriaMetrics 1.79.5 | target |"
    lines = [head, "|" + "---|" * (len(names) + 3)]
    for label, fmt, target in rows:
        cells = [fmt(r) for r in results]
        if "missing" in vm:
            peer = "-"
        elif label.startswith("columnar"):
            peer = f"{vm['import_per_s']:,.0f}"
        elif label.startswith("raw read"):
            peer = f"{vm['raw_read_ms']:.1f}"
        elif label.startswith("1h rollups"):
            peer = f"{vm['rollup_read_ms']:.1f}"
        elif label.startswith("disk, everything"):
            peer = f"{vm['bytes_per_sample']['total']:.2f}"
        else:
            peer = "-"
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {peer} | {target} |")
    if "missing" in vm:
        lines.append(f"\nVictoriaMetrics not measured: {vm['missing']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = workload.build(args.series, args.points, args.seed, closed_end(int(time.time() * 1000)))
    before = calibration.measure()
    results = []
    with tempfile.TemporaryDirectory(prefix="metrics-bench-storage-") as tmp:
        for name in args.backends.split(","):
            print(f"storage targets on {name} ...", flush=True)
            if name == "sqlite":
                results.append(ours(name, f"sqlite:///{Path(tmp) / 'storage.db'}", work, args))
                continue
            admin = args.postgres_url
            db = f"bench_storage_{os.getpid()}"
            asyncio.run(_admin(admin, f'CREATE DATABASE "{db}"'))
            url = make_url(admin).set(database=db).render_as_string(hide_password=False)
            try:
                results.append(ours(name, url, work, args))
            finally:
                asyncio.run(_admin(admin, f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
    print("VictoriaMetrics ...", flush=True)
    vm = victoria_metrics(work, args)
    return {
        "samples": work.samples,
        "calibration_ms": [before, calibration.measure()],
        "ours": results,
        "victoria_metrics": vm,
        "targets": TARGETS,
    }


async def _admin(url: str, statement: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.storage", description=__doc__)
    p.add_argument("--series", type=int, default=100)
    p.add_argument("--points", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--backends", default="sqlite,postgresql")
    p.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    p.add_argument("--stream-samples", type=int, default=10_000_000)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--out", type=Path)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    report = run(args)
    print(table(report["ours"], report["victoria_metrics"], args.points))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
