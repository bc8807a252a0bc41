"""Several server processes on one PostgreSQL database: throughput with 1, 2 and 4 workers.

For each worker count, a fresh database and `uvicorn app.main:app --workers N`, then:
- import: the workload's columnar batches (about `--batch` samples each), posted by
  `IMPORT_CLIENTS` concurrent clients (each its own keep-alive connection), bodies encoded before
  the clock starts; samples per second of wall time for all of them;
- single-sample ingestion: wrk as in the main run (`--clients` connections, `--wrk-seconds`,
  median of `--wrk-runs`).
The client runs on the same machine as the server and the database.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any

import asyncpg
import httpx
import numpy as np
import orjson
from sqlalchemy.engine import make_url

from bench import workload
from bench.server import Server, run_wrk
from bench.workload import METRIC, Workload

IMPORT_CLIENTS = 4


async def _admin(url: str, statement: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def concurrent_import(base_url: str, bodies: list[bytes], clients: int) -> float:
    """Samples per second when `clients` threads post `bodies` between them (round robin)."""
    shares = [bodies[i::clients] for i in range(clients)]
    failures: list[str] = []
    ready = threading.Barrier(clients + 1)

    def post(share: list[bytes]) -> None:
        headers = {"content-type": "application/json"}
        with httpx.Client(base_url=base_url, timeout=600) as client:
            client.get("/health")  # connect before the clock starts
            ready.wait()
            for body in share:
                answer = client.post("/backfill/import", content=body, headers=headers)
                if answer.status_code != 201:
                    failures.append(f"{answer.status_code} {answer.text[:300]}")

    threads = [threading.Thread(target=post, args=(share,)) for share in shares]
    for thread in threads:
        thread.start()
    ready.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    if failures:
        raise SystemExit(f"import with several workers failed: {failures[0]}")
    return seconds


def measure(admin_url: str, counts: list[int], work: Workload, args: Any) -> list[dict[str, Any]]:
    bodies = [
        orjson.dumps({"series": b})
        for b in workload.columnar_batches(work, args.batch, f"{METRIC}_workers")
    ]
    results = []
    for workers in counts:
        name = f"bench_workers_{os.getpid()}_{workers}"
        asyncio.run(_admin(admin_url, f'CREATE DATABASE "{name}"'))
        url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        env = {"DATABASE_URL": url, "SCHEDULER_ENABLED": "false", "LOG_LEVEL": "WARNING"}
        try:
            print(f"  {workers} worker(s) ...", flush=True)
            with Server(env, workers=workers) as server:
                seconds = concurrent_import(server.base_url, bodies, IMPORT_CLIENTS)
                runs = [
                    run_wrk(server.base_url, args.clients, args.wrk_seconds)
                    for _ in range(args.wrk_runs)
                ]
        finally:
            asyncio.run(_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        results.append(
            {
                "workers": workers,
                "import_clients": IMPORT_CLIENTS,
                "import_per_s": work.samples / seconds,
                "single_ingest_runs": runs,
                "single_ingest_req_s": float(np.median(runs)),
            }
        )
    return results


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| PostgreSQL, workers | import, 4 clients (samples/s) | single-sample ingest (req/s) |",
        "|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['workers']} | {r['import_per_s']:,.0f} | {r['single_ingest_req_s']:,.0f} |"
        )
    return "\n".join(lines)
