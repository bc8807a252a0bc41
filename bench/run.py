"""`make bench`: build the workload, run the real server on each backend, print one table.

    python -m bench.run [--series 100] [--points 10000] [--backends sqlite,postgresql]

Measures, per backend: bulk import samples/s (item and columnar forms) and its ratio to the
backend's own bulk insert of the same rows (same run and database; the columnar import and the
bulk insert alternate --import-runs times and their medians are compared), single-sample ingest
req/s with 32 keep-alive clients (wrk; median of --wrk-runs) and its ratio to a bare ASGI app under
the same load, the rollup job's duration, p50/p95 of each query (server-side, from the
Server-Timing header), anomaly detection over every point, peak server RSS and bytes per sample on
disk; then, on PostgreSQL, import (4 concurrent clients) and single-sample throughput with
--workers server processes (bench/workers.py); and single-sample latency under mixed load while the
jobs run, --mixed-seconds on each backend (bench/mixed_load.py). A fixed CPU task
timed at the start and the end (bench/calibration.py) tells how fast the machine was. Results also
go to bench/results/<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import numpy as np
import orjson
from sqlalchemy.engine import make_url

from bench import calibration, ceiling, mixed_load, promql, protocols, storage, workers, workload
from bench.server import Server, run_wrk
from bench.workload import METRIC, Workload

ROOT = Path(__file__).resolve().parents[1]
QUERY_REPEATS = 20


def timed_post(client: httpx.Client, path: str, bodies: list[bytes]) -> float:
    started = time.perf_counter()
    for body in bodies:
        answer = client.post(path, content=body, headers={"content-type": "application/json"})
        if answer.status_code != 201:
            raise SystemExit(f"import failed: {answer.status_code} {answer.text[:300]}")
    return time.perf_counter() - started


def server_ms(answer: httpx.Response, fallback: float) -> float:
    timing = answer.headers.get("server-timing", "")
    for part in timing.split(","):
        if "dur=" in part:
            return float(part.split("dur=")[1].split(";")[0])
    return fallback


def percentiles(client: httpx.Client, path: str, params: dict[str, Any]) -> dict[str, float]:
    samples = []
    for _ in range(QUERY_REPEATS):
        started = time.perf_counter()
        answer = client.get(path, params=params)
        elapsed = (time.perf_counter() - started) * 1000
        if answer.status_code != 200:
            raise SystemExit(f"{path} failed: {answer.status_code} {answer.text[:300]}")
        samples.append(server_ms(answer, elapsed))
    return {"p50": float(np.percentile(samples, 50)), "p95": float(np.percentile(samples, 95))}


def measure_backend(
    name: str, url: str, work: Workload, args: argparse.Namespace, tmp: Path
) -> dict[str, Any]:
    result: dict[str, Any] = {"backend": name, "samples": work.samples}
    env = {"DATABASE_URL": url, "SCHEDULER_ENABLED": "false", "LOG_LEVEL": "WARNING"}
    items = [orjson.dumps({"metrics": b}) for b in workload.item_batches(work, args.batch)]
    with Server(env) as server, httpx.Client(base_url=server.base_url, timeout=600) as client:
        seconds = timed_post(client, "/backfill/import", items)
        result["import_items_per_s"] = work.samples / seconds
        result["peak_rss_mb"] = server.peak_rss_mb()
        result["rollup_job_s"] = rollup_job_seconds(url, client)
        result["disk_bytes_per_sample"] = disk_bytes(name, url) / work.samples
        result["queries_ms"] = query_timings(client, work)
        promql.load_counters(client, work)
        result["promql_ms"] = promql.measure(server.base_url, work, args.promql_repeats)
        result.update(columnar_against_ceiling(name, url, work, args, client, tmp))
        runs = [
            run_wrk(server.base_url, args.clients, args.wrk_seconds) for _ in range(args.wrk_runs)
        ]
        result["single_ingest_runs"] = runs
        result["single_ingest_req_s"] = float(np.median(runs))
        result["protocols"] = protocols.measure_ours(server.base_url, work, name)
    return result


def columnar_against_ceiling(
    name: str, url: str, work: Workload, args: argparse.Namespace, client: httpx.Client, tmp: Path
) -> dict[str, Any]:
    """The columnar import and the backend's own bulk insert of the same rows, alternated
    `--import-runs` times on the database the server uses, so both see the same machine and the
    same background work (checkpoints, autovacuum); the medians are reported. Each import writes
    the same values under a new metric: fresh rows every time."""
    imports, ceilings = [], []
    for run in range(args.import_runs):
        if name == "sqlite":
            ceilings.append(ceiling.sqlite_ceiling(work, tmp / f"ceiling{run}.db"))
        else:
            ceilings.append(ceiling.postgres_ceiling(work, url))
        metric = f"{METRIC}_columnar{run}"
        bodies = [
            orjson.dumps({"series": b}) for b in workload.columnar_batches(work, args.batch, metric)
        ]
        imports.append(work.samples / timed_post(client, "/backfill/import", bodies))
    return {
        "import_columnar_runs": imports,
        "ceiling_runs": ceilings,
        "import_columnar_per_s": float(np.median(imports)),
        "ceiling_per_s": float(np.median(ceilings)),
    }


def rollup_job_seconds(url: str, client: httpx.Client) -> float:
    env = {**os.environ, "DATABASE_URL": url, "LOG_LEVEL": "WARNING"}
    subprocess.run(
        [sys.executable, "-m", "app.jobs.rollup_job"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    status = client.get("/jobs/status").json()
    return float(status["jobs"]["rollup"]["duration_ms"]) / 1000


def query_timings(client: httpx.Client, work: Workload) -> dict[str, dict[str, float]]:
    whole = {"start_time": work.start_ms / 1000, "end_time": work.end_ms / 1000}
    return {
        "raw_1_series": percentiles(
            client, "/query/raw", {"metric_name": METRIC, "label": "host:host000", **whole}
        ),
        "rollup_1h_25_series": percentiles(
            client,
            "/query/rollup",
            {"metric_name": METRIC, "window": "1h", "label": "region:us-east", **whole},
        ),
        "rollup_1m_1_series": percentiles(
            client,
            "/query/rollup",
            {"metric_name": METRIC, "window": "1m", "label": "host:host000", **whole},
        ),
        "anomaly_all_points": percentiles(
            client, "/anomaly/detect", {"metric_name": METRIC, "threshold": 4, **whole}
        ),
        "anomaly_auto_all_points": percentiles(
            client, "/anomaly/detect", {"metric_name": METRIC, "method": "auto", **whole}
        ),
    }


def disk_bytes(name: str, url: str) -> int:
    if name == "sqlite":
        path = Path(make_url(url).database or "")
        return sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file())
    return asyncio.run(_pg_size(url))


async def _pg_size(url: str) -> int:
    conn = await asyncpg.connect(make_url(url).render_as_string(hide_password=False))
    try:
        return int(await conn.fetchval("SELECT pg_database_size(current_database())"))
    finally:
        await conn.close()


async def _pg_admin(url: str, statement: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def run_backend(name: str, work: Workload, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    if name == "sqlite":
        result = measure_backend(name, f"sqlite:///{tmp / 'bench.db'}", work, args, tmp)
    else:
        admin = args.postgres_url
        db = f"bench_{os.getpid()}"
        asyncio.run(_pg_admin(admin, f'CREATE DATABASE "{db}"'))
        url = make_url(admin).set(database=db).render_as_string(hide_password=False)
        try:
            result = measure_backend(name, url, work, args, tmp)
        finally:
            asyncio.run(_pg_admin(admin, f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
    result["import_ratio"] = result["import_columnar_per_s"] / result["ceiling_per_s"]
    result["import_items_ratio"] = result["import_items_per_s"] / result["ceiling_per_s"]
    return result


def table(results: list[dict[str, Any]]) -> str:
    rows = [
        ("bulk import, items (samples/s)", lambda r: f"{r['import_items_per_s']:,.0f}"),
        (
            "bulk import, columnar (samples/s, median)",
            lambda r: f"{r['import_columnar_per_s']:,.0f}",
        ),
        (
            "backend bulk insert ceiling (samples/s, median)",
            lambda r: f"{r['ceiling_per_s']:,.0f}",
        ),
        (
            "import / ceiling (items; columnar)",
            lambda r: f"{r['import_items_ratio']:.0%}; {r['import_ratio']:.0%}",
        ),
        (
            "single-sample ingest, 32 clients (req/s, median)",
            lambda r: f"{r['single_ingest_req_s']:,.0f}",
        ),
        ("bare ASGI app, same load (req/s, median)", lambda r: f"{r['http_ceiling_req_s']:,.0f}"),
        ("single-sample ingest / bare ASGI", lambda r: f"{r['single_ingest_ratio']:.0%}"),
        ("rollup job, 1m+5m+1h for all samples (s)", lambda r: f"{r['rollup_job_s']:.2f}"),
    ]
    for query in (
        "raw_1_series",
        "rollup_1h_25_series",
        "rollup_1m_1_series",
        "anomaly_all_points",
    ):
        rows.append(
            (
                f"{query} p50 / p95 (ms)",
                lambda r, q=query: (
                    f"{r['queries_ms'][q]['p50']:.1f} / {r['queries_ms'][q]['p95']:.1f}"
                ),
            )
        )
    rows += [
        ("peak server RSS, item import (MB)", lambda r: f"{r['peak_rss_mb']:.0f}"),
        ("disk bytes per sample (after rollup job)", lambda r: f"{r['disk_bytes_per_sample']:.1f}"),
    ]
    names = [r["backend"] for r in results]
    width = max(len(label) for label, _ in rows)
    lines = [f"| {'measure'.ljust(width)} | " + " | ".join(names) + " |"]
    lines.append(f"|{'-' * (width + 2)}|" + "|".join("-" * (len(n) + 2) for n in names) + "|")
    for label, fmt in rows:
        lines.append(f"| {label.ljust(width)} | " + " | ".join(fmt(r) for r in results) + " |")
    return "\n".join(lines)


def protocols_only(args: argparse.Namespace) -> int:
    """`--protocols-only`: each backend's protocol ingestion, VictoriaMetrics', the parse cost."""
    work = workload.build(args.series, args.points, args.seed, int(time.time() * 1000))
    machine = calibration.measure()
    results = []
    with tempfile.TemporaryDirectory(prefix="metrics-bench-") as tmp:
        for name in args.backends.split(","):
            print(f"protocols into {name} ...", flush=True)
            results.append(_protocols_backend(name, work, args, Path(tmp)))
    results[0]["protocol_parse_us"] = protocols.parse_cost(work)
    print("the same protocol bodies into VictoriaMetrics ...", flush=True)
    victoria = protocols.measure_victoria_metrics(work)
    after = calibration.measure()
    print("\n".join(protocols.table_rows(results, victoria)))
    print(
        f"machine: Python loop {machine['python_loop_ms']:.0f} ms at the start,"
        f" {after['python_loop_ms']:.0f} ms at the end"
    )
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    path = out / time.strftime("protocols-%Y%m%dT%H%M%S.json")
    meta = {"calibration": machine, "calibration_after": after, "victoria_metrics": victoria}
    path.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    print(f"results written to {path.relative_to(ROOT)}")
    return 0


def _protocols_backend(
    name: str, work: Workload, args: argparse.Namespace, tmp: Path
) -> dict[str, Any]:
    env = {"SCHEDULER_ENABLED": "false", "LOG_LEVEL": "WARNING", "ACCESS_LOG": "false"}
    if name == "sqlite":
        with Server({**env, "DATABASE_URL": f"sqlite:///{tmp / 'protocols.db'}"}) as server:
            return {
                "backend": name,
                "protocols": protocols.measure_ours(server.base_url, work, name),
            }
    db = f"bench_protocols_{os.getpid()}"
    asyncio.run(_pg_admin(args.postgres_url, f'CREATE DATABASE "{db}"'))
    url = make_url(args.postgres_url).set(database=db).render_as_string(hide_password=False)
    try:
        with Server({**env, "DATABASE_URL": url}) as server:
            return {
                "backend": name,
                "protocols": protocols.measure_ours(server.base_url, work, name),
            }
    finally:
        asyncio.run(_pg_admin(args.postgres_url, f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--series", type=int, default=100)
    parser.add_argument("--points", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=20251203)
    parser.add_argument("--batch", type=int, default=50_000, help="samples per import request")
    parser.add_argument("--clients", type=int, default=32, help="wrk connections")
    parser.add_argument("--wrk-seconds", type=int, default=10)
    parser.add_argument(
        "--wrk-runs", type=int, default=3, help="wrk runs per server; the median is reported"
    )
    parser.add_argument(
        "--import-runs",
        type=int,
        default=3,
        help="columnar imports, each after a ceiling run; the medians are compared",
    )
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument(
        "--workers",
        default="1,2,4",
        help="worker counts for the several-processes run on PostgreSQL ('' to skip)",
    )
    parser.add_argument(
        "--only-workers", action="store_true", help="run only the several-processes measurement"
    )
    parser.add_argument(
        "--promql-repeats", type=int, default=10, help="runs of each PromQL query (bench/promql.py)"
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1/postgres"),
    )
    parser.add_argument(
        "--protocols-only",
        action="store_true",
        help="only the protocol ingestion figures (bench/protocols.py) and their parse cost",
    )
    parser.add_argument(
        "--storage",
        choices=("yes", "no", "only"),
        default="yes",
        help="issue 13's storage targets beside VictoriaMetrics (bench/storage.py)",
    )
    parser.add_argument(
        "--stream-samples",
        type=int,
        default=10_000_000,
        help="samples of the streaming import whose peak RSS bench/storage.py reports (0: none)",
    )
    parser.add_argument("--repeats", type=int, default=20, help="reads per storage measurement")
    parser.add_argument(
        "--mixed-seconds",
        type=float,
        default=60.0,
        help="length of the mixed load with the jobs running (bench/mixed_load.py; 0 to skip)",
    )
    parser.add_argument(
        "--mixed-only", action="store_true", help="run only the mixed load (bench/mixed_load.py)"
    )
    mixed_load.add_arguments(parser, seconds=False)
    args = parser.parse_args(argv)
    args.seconds = args.mixed_seconds
    if args.protocols_only:
        return protocols_only(args)
    if args.storage == "only":
        report = storage.run(args)
        print(storage.table(report["ours"], report["victoria_metrics"], args.points))
        return 0
    if args.mixed_only:
        return mixed_load.report(args)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed for the single-sample test: apt-get install wrk")
    work = workload.build(args.series, args.points, args.seed, int(time.time() * 1000))
    machine = calibration.measure()
    print(
        f"machine: Python loop {machine['python_loop_ms']:.0f} ms, "
        f"numpy sort {machine['numpy_sort_ms']:.0f} ms (bench/calibration.py)",
        flush=True,
    )
    print("measuring the HTTP ceiling (a bare ASGI app under the same wrk load) ...", flush=True)
    with Server({}, app="bench.bare_asgi:app") as bare:
        http_runs = [
            run_wrk(bare.base_url, args.clients, args.wrk_seconds) for _ in range(args.wrk_runs)
        ]
    http_ceiling = float(np.median(http_runs))
    results = []
    backends = [] if args.only_workers else args.backends.split(",")
    with tempfile.TemporaryDirectory(prefix="metrics-bench-") as tmp:
        for name in backends:
            print(f"benchmarking {name} with {work.samples:,} samples ...", flush=True)
            result = run_backend(name, work, args, Path(tmp))
            result["http_ceiling_req_s"] = http_ceiling
            result["single_ingest_ratio"] = result["single_ingest_req_s"] / http_ceiling
            results.append(result)
    victoria: dict[str, Any] = {}
    victoria_protocols: dict[str, float] = {}
    if results:
        results[0]["protocol_parse_us"] = protocols.parse_cost(work)
        print("the same protocol bodies into VictoriaMetrics ...", flush=True)
        victoria_protocols = protocols.measure_victoria_metrics(work)
        print("the same PromQL queries against VictoriaMetrics ...", flush=True)
        with promql.VictoriaMetrics() as vm:
            vm.load(work)
            victoria = promql.measure(vm.base_url, work, args.promql_repeats, vm=True)
    counts = [int(n) for n in args.workers.split(",") if n.strip()]
    several: list[dict[str, Any]] = []
    if counts:
        print(f"several workers on PostgreSQL: {counts} ...", flush=True)
        several = workers.measure(args.postgres_url, counts, work, args)
    storage_report: dict[str, Any] = {}
    if args.storage == "yes" and backends:
        storage_report = storage.run(args)
    mixed = mixed_load.run(args) if args.mixed_seconds > 0 else []
    after = calibration.measure()
    if results:
        print(table(results))
        print("\n".join(promql.table_rows(results, victoria)))
        print("\n".join(protocols.table_rows(results, victoria_protocols)))
    if several:
        print(workers.table(several))
    if storage_report:
        print(
            storage.table(storage_report["ours"], storage_report["victoria_metrics"], args.points)
        )
    if mixed:
        print("\n".join(mixed_load.table_rows(mixed)))
    print(
        f"machine at the end: Python loop {after['python_loop_ms']:.0f} ms, "
        f"numpy sort {after['numpy_sort_ms']:.0f} ms"
    )
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    path = out / time.strftime("%Y%m%dT%H%M%S.json")
    meta = {
        "series": args.series,
        "points": args.points,
        "cpus": os.cpu_count(),
        "http_ceiling_req_s": http_ceiling,
        "calibration": machine,
        "calibration_after": after,
        "http_ceiling_runs": http_runs,
        "victoria_metrics_promql_ms": victoria,
        "victoria_metrics_protocols": victoria_protocols,
    }
    everything = {
        "meta": meta,
        "results": results,
        "workers": several,
        "storage": storage_report,
        "mixed_load": mixed,
    }
    path.write_text(json.dumps(everything, indent=2))
    print(f"results written to {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
