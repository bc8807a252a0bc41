"""Single-sample latency while the jobs run (issue 17, finding 7), on each backend.

    python -m bench.mixed_load [--seconds 60] [--backends sqlite,postgresql]

The real server (`uvicorn app.main:app`, bench/server.py) with its in-process scheduler running
the rollup job every --rollup-interval and retention every --retention-interval, on a fresh SQLite
file and on a scratch PostgreSQL database (created, then dropped). Before the clock starts, raw
samples of one to three hours ago are imported for `mixed_old` and its raw retention is set to 1h,
so the first retention run has raw rows to drop. Then, for --seconds:

- 8 single writers: `POST /metrics/ingest`, one sample at server time each, one series each,
  closed loop with --pause-ms (10) between requests;
- 2 backfill writers: `POST /backfill/import` of 10,000 samples (20 series x 500 points 10 s
  apart, at a random place in the last day, so each marks some 1,700 one-minute buckets);
- 4 readers: raw and rollup queries over both metrics;
- /jobs/status polled every 200 ms: each job run's start and duration.

Printed per backend: p50/p99/max of single-sample latency (client side, wall clock), overall and
for the writes whose interval overlaps a job run, the count over 100 ms and over 1 s, and the job
runs' durations. Results also go to bench/results/mixed-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import numpy as np
import orjson
from sqlalchemy.engine import make_url

from bench.server import Server

ROOT = Path(__file__).resolve().parents[1]
SINGLE_WRITERS = 8
BACKFILL_WRITERS = 2
READERS = 4
BACKFILL_SERIES = 20
BACKFILL_POINTS = 500  # per series: 10,000 samples per request
STEP_MS = 10_000
HOUR_MS = 3_600_000
OLD_SERIES = 50
POLL_SECONDS = 0.2


@dataclass
class Record:
    """What the load saw; appended to from several threads (list.append is atomic)."""

    singles: list[tuple[float, float, int]] = field(default_factory=list)  # start, end s, status
    backfills: list[tuple[float, int]] = field(default_factory=list)  # seconds, status
    reads: list[tuple[float, int]] = field(default_factory=list)
    jobs: dict[tuple[str, str], int] = field(default_factory=dict)  # (job, start) -> ms
    errors: list[str] = field(default_factory=list)


def _loop(
    rec: Record, base_url: str, stop: threading.Event, step: Callable[[httpx.Client, int], None]
) -> Callable[[], None]:
    def run() -> None:
        with httpx.Client(base_url=base_url, timeout=60) as client:
            n = 0
            while not stop.is_set():
                try:
                    step(client, n)
                except httpx.HTTPError as exc:
                    if len(rec.errors) < 20:
                        rec.errors.append(repr(exc))
                    time.sleep(0.1)
                n += 1

    return run


def single_writer(rec: Record, index: int, pause: float) -> Callable[[httpx.Client, int], None]:
    def step(client: httpx.Client, n: int) -> None:
        body = {"metric_name": "mixed_single", "value": n % 1000, "labels": {"w": f"w{index}"}}
        began = time.time()
        answer = client.post("/metrics/ingest", json=body)
        rec.singles.append((began, time.time(), answer.status_code))
        if answer.status_code != 201 and len(rec.errors) < 20:
            rec.errors.append(f"ingest {answer.status_code}: {answer.text[:200]}")
        time.sleep(pause)

    return step


def backfill_writer(rec: Record, writer: int, pause: float) -> Callable[[httpx.Client, int], None]:
    """History imported backwards in time: request n holds the n-th stretch of 500 points
    before the last two hours, of this writer's own 20 series."""
    rng = random.Random(writer)
    first = int(time.time() * 1000) - 2 * HOUR_MS
    span = BACKFILL_POINTS * STEP_MS

    def step(client: httpx.Client, n: int) -> None:
        start = first - (n + 1) * span
        stamps = [(start + i * STEP_MS) / 1000 for i in range(BACKFILL_POINTS)]
        series = [
            {
                "metric_name": "mixed_backfill",
                "labels": {"host": f"b{writer}-{s:02d}"},
                "timestamps": stamps,
                "values": [rng.random() * 100 for _ in stamps],
            }
            for s in range(BACKFILL_SERIES)
        ]
        body = orjson.dumps({"series": series})
        began = time.perf_counter()
        answer = client.post(
            "/backfill/import", content=body, headers={"content-type": "application/json"}
        )
        rec.backfills.append((time.perf_counter() - began, answer.status_code))
        if answer.status_code != 201 and len(rec.errors) < 20:
            rec.errors.append(f"backfill {answer.status_code}: {answer.text[:200]}")
        time.sleep(pause)

    return step


def reader(rec: Record) -> Callable[[httpx.Client, int], None]:
    def step(client: httpx.Client, n: int) -> None:
        now = time.time()
        choices: list[tuple[str, dict[str, Any]]] = [
            ("/query/raw", {"metric_name": "mixed_single", "start_time": now - 300}),
            ("/query/rollup", {"metric_name": "mixed_single", "window": "1m"}),
            (
                "/query/rollup",
                {"metric_name": "mixed_backfill", "window": "5m", "start_time": now - 6 * 3600},
            ),
            (
                "/query/raw",
                {
                    "metric_name": "mixed_backfill",
                    "label": f"host:b{n % 2}-{n % BACKFILL_SERIES:02d}",
                    "start_time": now - 6 * 3600,
                },
            ),
        ]
        path, params = choices[n % len(choices)]
        began = time.perf_counter()
        answer = client.get(path, params=params)
        rec.reads.append((time.perf_counter() - began, answer.status_code))
        time.sleep(0.05)

    return step


def _ms(stamp: str) -> int:
    return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000)


def job_poller(rec: Record, base_url: str, stop: threading.Event) -> Callable[[], None]:
    def run() -> None:
        with httpx.Client(base_url=base_url, timeout=60) as client:
            while True:
                try:
                    status = client.get("/jobs/status").json()["jobs"]
                    for job in ("rollup", "retention"):
                        row = status[job]
                        if row["last_run"] and row["duration_ms"] is not None:
                            rec.jobs[(job, row["last_run"])] = int(row["duration_ms"])
                except httpx.HTTPError:
                    pass
                if stop.wait(POLL_SECONDS):
                    return

    return run


def seed(client: httpx.Client) -> None:
    """Raw samples one to three hours old under `mixed_old`, then a raw retention of 1h for it;
    and one sample of each metric the readers ask for."""
    now = int(time.time() * 1000)
    start = now - now % HOUR_MS - 3 * HOUR_MS
    stamps = [(start + i * STEP_MS) / 1000 for i in range(2 * HOUR_MS // STEP_MS)]
    series = [
        {"metric_name": "mixed_old", "labels": {"host": f"o{s:02d}"}, "timestamps": stamps,
         "values": [float(i % 97) for i in range(len(stamps))]}
        for s in range(OLD_SERIES)
    ]  # fmt: skip
    for body in ({"series": series}, {"series": [{**series[0], "metric_name": "mixed_backfill"}]}):
        answer = client.post("/backfill/import", json=body)
        answer.raise_for_status()
    client.post(
        "/metrics/ingest", json={"metric_name": "mixed_single", "value": 0}
    ).raise_for_status()
    client.put("/retention/mixed_old", json={"raw": "1h"}).raise_for_status()


def run_load(base_url: str, args: argparse.Namespace) -> Record:
    rec = Record()
    with httpx.Client(base_url=base_url, timeout=120) as client:
        seed(client)
    stop = threading.Event()
    steps = [single_writer(rec, i, args.pause_ms / 1000) for i in range(SINGLE_WRITERS)]
    steps += [backfill_writer(rec, i, args.backfill_pause) for i in range(BACKFILL_WRITERS)]
    steps += [reader(rec) for _ in range(READERS)]
    threads = [threading.Thread(target=_loop(rec, base_url, stop, step)) for step in steps]
    polling = threading.Event()
    poller = threading.Thread(target=job_poller(rec, base_url, polling))
    for thread in [*threads, poller]:
        thread.start()
    time.sleep(args.seconds)
    stop.set()
    for thread in threads:
        thread.join(timeout=120)
    # A job run still going when the load stopped is recorded when it ends: keep polling until
    # every job has run once more since then (or a minute has passed).
    seen = len(rec.jobs)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(rec.jobs) < seen + 2:
        time.sleep(POLL_SECONDS)
    polling.set()
    poller.join(timeout=60)
    return rec


def _stats(latencies_ms: np.ndarray) -> dict[str, float]:
    if latencies_ms.size == 0:
        return {"n": 0}
    return {
        "n": int(latencies_ms.size),
        "p50": float(np.percentile(latencies_ms, 50)),
        "p99": float(np.percentile(latencies_ms, 99)),
        "max": float(latencies_ms.max()),
        "over_100ms": int((latencies_ms > 100).sum()),
        "over_1s": int((latencies_ms > 1000).sum()),
    }


def summarize(rec: Record) -> dict[str, Any]:
    singles = np.array([(s, e) for s, e, _ in rec.singles], dtype=np.float64).reshape(-1, 2)
    latency = (singles[:, 1] - singles[:, 0]) * 1000
    windows = sorted((_ms(start) / 1000, job, ms) for (job, start), ms in rec.jobs.items())
    overlaps = np.zeros(len(singles), dtype=bool)
    for start, _, ms in windows:
        overlaps |= (singles[:, 0] <= start + ms / 1000) & (singles[:, 1] >= start)
    durations: dict[str, list[int]] = {}
    for _, job, ms in windows:
        durations.setdefault(job, []).append(ms)
    return {
        "single": _stats(latency),
        "single_during_jobs": _stats(latency[overlaps]),
        "single_outside_jobs": _stats(latency[~overlaps]),
        "single_errors": sum(1 for *_, status in rec.singles if status != 201),
        "backfill_requests": len(rec.backfills),
        "backfill_p50_ms": float(np.median([s for s, _ in rec.backfills]) * 1000)
        if rec.backfills
        else None,
        "backfill_errors": sum(1 for _, status in rec.backfills if status != 201),
        "reads": len(rec.reads),
        "read_errors": sum(1 for _, status in rec.reads if status != 200),
        "job_runs_ms": durations,
        "errors": rec.errors[:10],
    }


async def _pg_admin(url: str, statement: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def measure(name: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    env = {
        "SCHEDULER_ENABLED": "true",
        "ROLLUP_INTERVAL": args.rollup_interval,
        "RETENTION_INTERVAL": args.retention_interval,
        "LOG_LEVEL": "WARNING",
        "ACCESS_LOG": "false",
    }
    if name == "sqlite":
        env["DATABASE_URL"] = f"sqlite:///{tmp / 'mixed.db'}"
        with Server(env) as server:
            return {
                "backend": name,
                **summarize(run_load(server.base_url, args)),
            }
    db = f"bench_mixed_{os.getpid()}"
    asyncio.run(_pg_admin(args.postgres_url, f'CREATE DATABASE "{db}"'))
    env["DATABASE_URL"] = (
        make_url(args.postgres_url).set(database=db).render_as_string(hide_password=False)
    )
    try:
        with Server(env) as server:
            return {
                "backend": name,
                **summarize(run_load(server.base_url, args)),
            }
    finally:
        asyncio.run(_pg_admin(args.postgres_url, f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))


def table_rows(results: list[dict[str, Any]]) -> list[str]:
    def fmt(s: dict[str, float]) -> str:
        if not s.get("n"):
            return "-"
        head = f"{s['p50']:.1f} / {s['p99']:.1f} / {s['max']:.0f}"
        return f"{head} (n={s['n']}, >100ms: {s['over_100ms']})"

    lines = [
        "| mixed load, single-sample ingest (ms) p50 / p99 / max | " + " | ".join(
            r["backend"] for r in results) + " |",
        "|---|" + "---|" * len(results),
    ]  # fmt: skip
    for label, key in (
        ("all writes", "single"),
        ("writes overlapping a job run", "single_during_jobs"),
        ("writes outside job runs", "single_outside_jobs"),
    ):
        lines.append(f"| {label} | " + " | ".join(fmt(r[key]) for r in results) + " |")
    for job in ("rollup", "retention"):
        cells = []
        for r in results:
            runs = r["job_runs_ms"].get(job, [])
            cells.append(", ".join(str(ms) for ms in runs) or "-")
        lines.append(f"| {job} job runs (ms) | " + " | ".join(cells) + " |")
    lines.append(
        "| backfills (n, p50 ms); errors (single, backfill, read) | "
        + " | ".join(
            f"{r['backfill_requests']}, {r['backfill_p50_ms'] or 0:.0f};"
            f" {r['single_errors']}, {r['backfill_errors']}, {r['read_errors']}"
            for r in results
        )
        + " |"
    )
    return lines


def add_arguments(parser: argparse.ArgumentParser, seconds: bool = True) -> None:
    """The mixed load's options (also `python -m bench.run`'s, which names --mixed-seconds)."""
    if seconds:
        parser.add_argument("--seconds", type=float, default=60.0, help="length of the load")
    parser.add_argument("--pause-ms", dest="pause_ms", type=float, default=10.0,
                        help="pause of each single writer between its requests")  # fmt: skip
    parser.add_argument("--backfill-pause", type=float, default=1.0,
                        help="seconds each backfill writer waits between its imports")  # fmt: skip
    parser.add_argument("--rollup-interval", default="10s")
    parser.add_argument("--retention-interval", default="15s")


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    results = []
    with tempfile.TemporaryDirectory(prefix="metrics-mixed-") as tmp:
        for name in args.backends.split(","):
            print(f"mixed load on {name} for {args.seconds:g} s ...", flush=True)
            results.append(measure(name, args, Path(tmp)))
    return results


def report(args: argparse.Namespace) -> int:
    """Run, print the table, keep the JSON in bench/results/."""
    results = run(args)
    print("\n".join(table_rows(results)))
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    suffix = f"-{args.label}" if getattr(args, "label", "") else ""
    path = out / time.strftime(f"mixed-%Y%m%dT%H%M%S{suffix}.json")
    path.write_text(json.dumps({"args": vars(args), "results": results}, indent=2))
    print(f"results written to {path.relative_to(ROOT)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.mixed_load", description=__doc__)
    add_arguments(parser)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1/postgres"),
    )
    parser.add_argument("--label", default="", help="a word for the results file name")
    return report(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
