"""PromQL in `make bench`: the issue's three queries against our server and against
VictoriaMetrics 1.79.5 holding the same samples, measured in the same run.

- `avg(avg_over_time(cpu_usage[5m]))`, step 5m over the whole workload;
- `avg_over_time(cpu_usage{region="eu-central"}[1h])`, step 1h (as the issue words it; the
  workload has no such region, so it also runs with `eu-west`, 25 series);
- `rate(requests_total[5m])` over 100 counters (the workload's values, accumulated), step 1m.

VictoriaMetrics (`victoria-metrics` from Debian) is started on a free port with a temporary
data directory, fed the same samples through /api/v1/import (JSON lines), and asked with
`nocache=1` so that its result cache does not answer repeats. Times are wall-clock per request
on the client, median and p95 over `repeats`; ours also by its Server-Timing header.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import numpy as np
import orjson

from bench.workload import METRIC, Workload

COUNTER = "requests_total"
HOUR_S = 3600


def queries(work: Workload) -> dict[str, dict[str, Any]]:
    """The three measurements' query_range parameters: from the first whole hour an hour into
    the data (so every window is full) to the end, steps on whole hours and minutes."""
    first = (work.start_ms // 1000 // HOUR_S + 2) * HOUR_S
    end = work.end_ms // 1000
    window = {"start": first, "end": end}
    return {
        "avg_avg_over_time_5m": {
            "query": f"avg(avg_over_time({METRIC}[5m]))",
            "step": 300,
            **window,
        },
        "avg_over_time_1h_eu_central": {
            "query": f'avg_over_time({METRIC}{{region="eu-central"}}[1h])',
            "step": 3600,
            **window,
        },
        "avg_over_time_1h_eu_west": {
            "query": f'avg_over_time({METRIC}{{region="eu-west"}}[1h])',
            "step": 3600,
            **window,
        },
        "rate_100_counters_1m": {"query": f"rate({COUNTER}[5m])", "step": 60, **window},
    }


def counter_values(work: Workload) -> np.ndarray:
    """100 counters: the workload's values accumulated (positive increments)."""
    return np.round(np.cumsum(np.abs(work.values), axis=1), 3)


def counter_batches(work: Workload, per_request: int = 10) -> list[bytes]:
    """The counters in the columnar form of POST /backfill/import."""
    stamps = (work.ts / 1000).tolist()
    values = counter_values(work)
    entries = [
        {"metric_name": COUNTER, "labels": labels, "timestamps": stamps, "values": row}
        for labels, row in zip(work.labels, values.tolist(), strict=True)
    ]
    return [
        orjson.dumps({"series": entries[i : i + per_request]})
        for i in range(0, len(entries), per_request)
    ]


def import_lines(work: Workload) -> bytes:
    """Both metrics as VictoriaMetrics' JSON lines (/api/v1/import)."""
    stamps = work.ts.tolist()
    lines = []
    for name, matrix in ((METRIC, work.values), (COUNTER, counter_values(work))):
        for labels, row in zip(work.labels, matrix.tolist(), strict=True):
            metric = {"__name__": name, **labels}
            lines.append(orjson.dumps({"metric": metric, "values": row, "timestamps": stamps}))
    return b"\n".join(lines) + b"\n"


class VictoriaMetrics:
    """victoria-metrics on 127.0.0.1, a free port, a temporary data directory."""

    def __init__(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.data = Path(tempfile.mkdtemp(prefix="bench-vm-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> VictoriaMetrics:
        if shutil.which("victoria-metrics") is None:
            raise SystemExit("victoria-metrics is missing: make clients")
        self.process = subprocess.Popen(
            [
                "victoria-metrics",
                f"-storageDataPath={self.data}",
                f"-httpListenAddr=127.0.0.1:{self.port}",
                "-retentionPeriod=100y",
                "-search.latencyOffset=0s",
                "-loggerLevel=ERROR",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base_url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("victoria-metrics did not start")

    def load(self, work: Workload) -> None:
        with httpx.Client(base_url=self.base_url, timeout=600) as client:
            answer = client.post("/api/v1/import", content=import_lines(work))
            if answer.status_code >= 300:
                raise SystemExit(f"victoria-metrics import failed: {answer.text[:300]}")
            client.get("/internal/force_flush")
            # Imported data becomes searchable after a moment: wait until all series count.
            deadline = time.monotonic() + 60
            wanted = 2 * len(work.labels)
            while time.monotonic() < deadline:
                found = client.get(
                    "/api/v1/query",
                    params={
                        "query": 'count({__name__=~"cpu_usage|requests_total"})',
                        "time": work.end_ms / 1000,
                    },
                ).json()["data"]["result"]
                if found and int(found[0]["value"][1]) == wanted:
                    return
                time.sleep(0.5)
        raise SystemExit("victoria-metrics did not show the imported series")

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=60)
        shutil.rmtree(self.data, ignore_errors=True)


def _server_ms(answer: httpx.Response) -> float | None:
    for part in answer.headers.get("server-timing", "").split(","):
        if "dur=" in part:
            return float(part.split("dur=")[1].split(";")[0])
    return None


def timed(
    base_url: str, params: dict[str, Any], repeats: int, extra: dict[str, Any] | None = None
) -> dict[str, float]:
    """Median and p95 of wall-clock milliseconds per query_range request (server-side too
    where the server says), and the size of the answer."""
    walls, servers = [], []
    with httpx.Client(base_url=base_url, timeout=600) as client:
        for i in range(repeats + 1):
            started = time.perf_counter()
            answer = client.get("/api/v1/query_range", params={**params, **(extra or {})})
            elapsed = (time.perf_counter() - started) * 1000
            if answer.status_code != 200:
                raise SystemExit(f"{base_url} {params['query']}: {answer.text[:300]}")
            if i == 0:
                result = answer.json()["data"]["result"]
                continue  # the first run warms caches and connections
            walls.append(elapsed)
            server = _server_ms(answer)
            if server is not None:
                servers.append(server)
    out = {
        "p50": float(np.percentile(walls, 50)),
        "p95": float(np.percentile(walls, 95)),
        "series": float(len(result)),
        "points": float(sum(len(s["values"]) for s in result)),
    }
    if servers:
        out["server_p50"] = float(np.percentile(servers, 50))
    return out


def measure(base_url: str, work: Workload, repeats: int, vm: bool = False) -> dict[str, Any]:
    extra = {"nocache": "1"} if vm else None
    return {name: timed(base_url, params, repeats, extra) for name, params in queries(work).items()}


def load_counters(client: httpx.Client, work: Workload) -> None:
    for body in counter_batches(work):
        answer = client.post(
            "/backfill/import", content=body, headers={"content-type": "application/json"}
        )
        if answer.status_code != 201:
            raise SystemExit(f"counter import failed: {answer.status_code} {answer.text[:300]}")


def table_rows(results: list[dict[str, Any]], vm: dict[str, Any]) -> list[str]:
    """Markdown rows: each query's p50 per backend, VictoriaMetrics', and the ratios."""
    names = [r["backend"] for r in results]
    lines = [
        "| PromQL query_range, p50 ms (wall) | "
        + " | ".join(names)
        + " | VictoriaMetrics | ratio to VM |",
        "|---|" + "---|" * (len(names) + 2),
    ]
    for query in vm:
        ours = [r["promql_ms"][query]["p50"] for r in results]
        ratios = "; ".join(f"{o / vm[query]['p50']:.1f}x" for o in ours)
        lines.append(
            f"| {query} | "
            + " | ".join(f"{o:.1f}" for o in ours)
            + f" | {vm[query]['p50']:.1f} | {ratios} |"
        )
    return lines


def main() -> int:
    """Only this comparison, on SQLite: `python -m bench.promql [--series N --points M]`."""
    import argparse
    import os
    import subprocess as sp
    import sys

    from bench import workload
    from bench.server import ROOT, Server

    parser = argparse.ArgumentParser(prog="python -m bench.promql", description=__doc__)
    parser.add_argument("--series", type=int, default=100)
    parser.add_argument("--points", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    work = workload.build(args.series, args.points, 20251203, int(time.time() * 1000))
    with tempfile.TemporaryDirectory(prefix="bench-promql-") as tmp:
        url = args.database_url or f"sqlite:///{tmp}/bench.db"
        env = {
            "DATABASE_URL": url,
            "SCHEDULER_ENABLED": "false",
            "LOG_LEVEL": "WARNING",
            "ACCESS_LOG": "false",
        }
        with Server(env) as server, httpx.Client(base_url=server.base_url, timeout=600) as client:
            for body in workload.columnar_batches(work, 50_000):
                client.post(
                    "/backfill/import",
                    content=orjson.dumps({"series": body}),
                    headers={"content-type": "application/json"},
                )
            load_counters(client, work)
            sp.run(
                [sys.executable, "-m", "app.jobs.rollup_job"],
                cwd=ROOT,
                check=True,
                env={**os.environ, "DATABASE_URL": url, "LOG_LEVEL": "WARNING"},
            )
            ours = measure(server.base_url, work, args.repeats)
        with VictoriaMetrics() as vm:
            vm.load(work)
            victoria = measure(vm.base_url, work, args.repeats, vm=True)
    print("\n".join(table_rows([{"backend": "ours", "promql_ms": ours}], victoria)))
    print(orjson.dumps({"ours": ours, "victoria_metrics": victoria}).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
