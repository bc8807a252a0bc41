"""Differential test against a real Prometheus 2.42: it scrapes node_exporter and our own
exporter (exporter.py) every second and remote-writes everything to us (one server per backend,
one Prometheus for both); then the same queries, instant and range, run against Prometheus and
against us over a window both hold fully, and the answers must match: the same series, values
within 1e-6 relative, NaN equal to NaN.

Prometheus 2.42 closes its windows and lookback (`[t - d, t]`) where Prometheus 3 and we leave
them open (`(t - d, t]`). Evaluation times are therefore chosen a few hundred milliseconds away
from every scrape's timestamp, so that no sample lies on a window's edge, and
`test_closed_and_open_windows_differ_on_an_edge` checks the one difference on purpose. A
subquery's inner evaluations are not ours to place: they fall on multiples of its step. When a
scrape's timestamp falls exactly on a whole second too (a scrape phase of 0 ms, or jitter under
load), the subqueries' windows have a sample on their edge, and only then are they left out.
A target stopped half-way gives stale markers; the queries over its series see them end.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from conftest import LiveServer, free_port, fresh_database
from exporter import Exporter

pytestmark = pytest.mark.skipif(
    shutil.which("prometheus") is None or shutil.which("prometheus-node-exporter") is None,
    reason="needs Debian's prometheus and prometheus-node-exporter",
)
RUN_SECONDS = 12  # windows reach 6 s back: the compared window starts 7 s in
NODE_COLLECTORS = ["cpu", "loadavg", "meminfo", "netdev", "stat", "time", "filesystem"]


@dataclass
class Setup:
    prometheus: str
    ours: dict[str, str]  # backend -> base URL
    start: float  # a window every server holds fully, in seconds
    end: float
    offset: float  # fraction of a second away from every scrape timestamp
    on_grid: bool  # a scrape timestamp on a whole second: subquery windows meet samples on edge


def wait_for(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


def prometheus_config(targets: dict[str, int], writers: list[str]) -> dict[str, Any]:
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
            for job, port in targets.items()
        ],
        "remote_write": [
            {
                "url": f"{base}/api/v1/write",
                "metadata_config": {"send_interval": "1s"},
                "queue_config": {
                    "batch_send_deadline": "500ms",
                    "max_samples_per_send": 5000,
                    "min_backoff": "50ms",
                    "max_backoff": "1s",
                },
            }
            for base in writers
        ],
    }


def _backends() -> list[str]:
    wanted = ["sqlite"]
    if os.environ.get("TEST_DATABASE_URL") or os.environ.get("REQUIRE_POSTGRES") == "1":
        wanted.append("postgresql")
    return wanted


def _newest(base: str, expr: str) -> float:
    body = httpx.get(f"{base}/api/v1/query", params={"query": expr}, timeout=10).json()
    result = body["data"]["result"]
    return float(result[0]["value"][1]) if result else 0.0


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("differential")
    with ExitStack() as stack:
        ours: dict[str, str] = {}
        for backend in _backends():
            url = stack.enter_context(fresh_database(backend, tmp / backend, "diff"))
            server = LiveServer(url)
            server.start()
            stack.callback(server.stop)
            ours[backend] = server.base_url
        app_port, gone_port, node_port, prom_port = (free_port() for _ in range(4))
        stack.callback(Exporter(app_port).stop)
        gone = Exporter(gone_port, prefix="gone")
        stack.callback(gone.stop)
        node = subprocess.Popen(
            [
                "prometheus-node-exporter",
                f"--web.listen-address=127.0.0.1:{node_port}",
                "--collector.disable-defaults",
                *(f"--collector.{c}" for c in NODE_COLLECTORS),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        stack.callback(lambda: (node.terminate(), node.wait(10)))
        config = tmp / "prometheus.yml"
        targets = {"app": app_port, "gone": gone_port, "node": node_port}
        config.write_text(yaml.safe_dump(prometheus_config(targets, list(ours.values()))))
        data = Path(tempfile.mkdtemp(dir=tmp))
        prom = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={config}",
                f"--storage.tsdb.path={data}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=stack.enter_context((tmp / "prometheus.log").open("wb")),
        )
        stack.callback(lambda: (prom.terminate(), prom.wait(30)))
        base = f"http://127.0.0.1:{prom_port}"
        wait_for(f"{base}/-/ready")
        while not _newest(base, 'count(up{job="app"})'):  # the first scrapes
            time.sleep(0.1)
        started = time.time()
        time.sleep(RUN_SECONDS * 0.6)
        gone.server.shutdown()  # its series end: Prometheus writes stale markers for them
        time.sleep(max(0.0, started + RUN_SECONDS - time.time()))
        end = time.time() - 2
        for our in ours.values():  # remote write runs behind: wait until we hold the window
            deadline = time.monotonic() + 30
            while _newest(our, 'min(timestamp(up{job="app"}))') < end + 1:
                assert time.monotonic() < deadline, "remote write did not deliver the window"
                time.sleep(0.2)
        failed = _newest(base, "sum(prometheus_remote_storage_samples_failed_total)")
        assert failed == 0, "Prometheus could not write some samples to us"
        stamps = httpx.get(f"{base}/api/v1/query", params={"query": "up[30s]"}).json()
        residues = {
            round(float(t) * 1000) % 1000
            for series in stamps["data"]["result"]
            for t, _ in series["values"]
        }
        offset = (
            next(
                r
                for r in range(137, 1000, 91)
                if all(min(abs(r - x), 1000 - abs(r - x)) > 40 for x in residues)
            )
            / 1000
        )
        first = float(min(float(s["values"][0][0]) for s in stamps["data"]["result"]))
        start = math.floor(first) + 7 + offset
        yield Setup(base, ours, start, math.floor(end) + offset, offset, 0 in residues)
        while _opened:  # the kept-alive connections of every test's queries
            _opened.pop().close()


C_APP = [
    "app_requests_total",
    "app_restarting_total",
    'app_latency_seconds_count{handler="api"}',
]
C_NODE = [
    'node_cpu_seconds_total{mode="idle"}',
    "node_network_receive_bytes_total",
    "node_context_switches_total",
]
GAUGES = [
    "app_temperature_celsius",
    "app_queue_length",
    "app_ratio",
    "node_load1",
    "node_memory_MemFree_bytes",
    "gone_temperature_celsius",
]
SUBQUERY = re.compile(r"\[[^\]]*:[^\]]*\]")
OVER_TIME = ["avg", "min", "max", "sum", "count", "last", "stddev", "stdvar", "present"]


def queries() -> list[str]:
    out: list[str] = []
    for c in C_APP + C_NODE:
        out += [
            f"rate({c}[5s])",
            f"irate({c}[4s])",
            f"increase({c}[6s])",
            f"resets({c}[6s])",
            f"sum(rate({c}[3s]))",
        ]
    for g in GAUGES:
        out += [f"{fn}_over_time({g}[5s])" for fn in OVER_TIME]
        out += [
            g,
            f"{g} offset 3s",
            f"delta({g}[5s])",
            f"idelta({g}[3s])",
            f"deriv({g}[6s])",
            f"predict_linear({g}[6s], 30)",
            f"changes({g}[6s])",
            f"quantile_over_time(0.3, {g}[5s])",
            f"absent_over_time({g}[2s])",
        ]
    out += [
        "up",
        "count(up)",
        "sum by (job) (up)",
        "count by (job) (scrape_samples_scraped)",
        "sum(app_temperature_celsius)",
        "avg(app_temperature_celsius)",
        "max by (queue) (app_queue_length)",
        "min(app_temperature_celsius)",
        "count(node_cpu_seconds_total)",
        "count by (mode) (node_cpu_seconds_total)",
        "sum without (cpu) (rate(node_cpu_seconds_total[5s]))",
        "stddev(app_temperature_celsius)",
        "stdvar by (method) (rate(app_requests_total[5s]))",
        "group by (job) (up)",
        "quantile(0.75, app_temperature_celsius)",
        "quantile by (mode) (0.5, rate(node_cpu_seconds_total[5s]))",
        "topk(2, app_temperature_celsius)",
        "bottomk(1, app_temperature_celsius)",
        'count_values("q", app_queue_length)',
        'sum by (__name__) ({__name__=~"app_.*"})',
        "app_temperature_celsius * 2 - 1",
        "2 ^ app_queue_length",
        "app_queue_length % 5",
        "app_temperature_celsius > 21",
        "app_temperature_celsius > bool 21",
        "22 < app_temperature_celsius",
        "app_queue_length == bool 3",
        "app_temperature_celsius / on(room) app_temperature_celsius",
        "app_latency_seconds_sum / app_latency_seconds_count",
        (
            "app_latency_seconds_sum / ignoring(handler) group_left"
            ' app_latency_seconds_count{handler="api"}'
        ),
        "sum by (handler) (rate(app_latency_seconds_bucket[5s]))",
        (
            "rate(app_requests_total[5s]) / on(method) group_left"
            " sum by (method) (rate(app_requests_total[5s]))"
        ),
        'up and on(job) app_queue_length{queue="q1"}',
        "up unless on(job) app_queue_length",
        'app_ratio or app_queue_length{queue="q1"}',
        'up{job="gone"} or vector(0)',
        "app_temperature_celsius atan2 app_queue_length",
        "abs(app_temperature_celsius - 22)",
        "ceil(app_temperature_celsius)",
        "floor(app_temperature_celsius)",
        "round(app_temperature_celsius, 0.25)",
        "clamp(app_temperature_celsius, 18, 22)",
        "clamp_min(app_queue_length, 4)",
        "clamp_max(app_queue_length, 4)",
        "sqrt(app_temperature_celsius)",
        "exp(app_queue_length / 10)",
        "ln(app_temperature_celsius)",
        "log2(node_memory_MemFree_bytes)",
        "log10(app_temperature_celsius)",
        "sgn(app_temperature_celsius - 21)",
        "scalar(sum(up))",
        "vector(scalar(count(up)))",
        "time()",
        "timestamp(app_queue_length)",
        "timestamp(rate(app_requests_total[5s]))",
        "sort(app_temperature_celsius)",
        "sort_desc(app_temperature_celsius)",
        'label_replace(up, "host", "$1", "instance", "(.*):.*")',
        'label_join(app_requests_total, "ms", "-", "method", "status")',
        'absent(nonexistent{job="x"})',
        "absent(up)",
        'absent(gone_queue_length{queue="q1"})',
        "day_of_week()",
        "hour(vector(time()))",
        "minute()",
        "year()",
        "month()",
        "day_of_month()",
        "day_of_year()",
        "days_in_month()",
        "histogram_quantile(0.5, sum by (le) (rate(app_latency_seconds_bucket[5s])))",
        "histogram_quantile(0.9, sum by (le, handler) (rate(app_latency_seconds_bucket[5s])))",
        "histogram_quantile(0.99, rate(app_latency_seconds_bucket[6s]))",
        "histogram_quantile(0.25, app_latency_seconds_bucket)",
        "max_over_time(rate(app_requests_total[2s])[4s:1s])",
        "avg_over_time(app_temperature_celsius[6s:2s])",
        "min_over_time(sum(app_queue_length)[5s:1s] offset 1s)",
        "rate(app_restarting_total[4s] offset 2s)",
        "sum(app_temperature_celsius offset 2s) - sum(app_temperature_celsius)",
    ]
    return out


_local = threading.local()
_opened: list[httpx.Client] = []


def _get(base: str, path: str, params: dict[str, Any]) -> Any:
    """GET on a kept-alive connection of this thread's own."""
    clients = _local.__dict__.setdefault("clients", {})
    if base not in clients:
        clients[base] = httpx.Client(base_url=base, timeout=30)
        _opened.append(clients[base])
    answer = clients[base].get(path, params=params)
    assert answer.status_code == 200, f"{base}{path} {params}: {answer.text}"
    return answer.json()["data"]


def _close(a: str, b: str) -> bool:
    x, y = float(a), float(b)
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    if math.isinf(x) or math.isinf(y):
        return x == y
    return abs(x - y) <= 1e-6 * max(abs(x), abs(y)) or abs(x - y) < 1e-12


def _differences(expected: Any, got: Any) -> list[str]:
    if expected["resultType"] != got["resultType"]:
        return [f"result type {got['resultType']} instead of {expected['resultType']}"]
    if expected["resultType"] in ("scalar", "string"):
        same = expected["result"][0] == got["result"][0] and _close(
            expected["result"][1], got["result"][1]
        )
        return [] if same else [f"{got['result']} instead of {expected['result']}"]
    key = "value" if expected["resultType"] == "vector" else "values"

    def by_labels(data: Any) -> dict[tuple[tuple[str, str], ...], list[Any]]:
        rows = {}
        for item in data["result"]:
            points = [item[key]] if key == "value" else item[key]
            rows[tuple(sorted(item["metric"].items()))] = points
        return rows

    want, have = by_labels(expected), by_labels(got)
    problems = []
    if set(want) != set(have):
        problems.append(f"series {sorted(set(have) ^ set(want))[:3]} in one answer only")
    for labels in set(want) & set(have):
        a, b = want[labels], have[labels]
        if [p[0] for p in a] != [p[0] for p in b] or not all(
            _close(x[1], y[1]) for x, y in zip(a, b, strict=True)
        ):
            problems.append(f"{dict(labels)}: {b[:4]} instead of {a[:4]}")
    return problems


def test_same_answers_as_prometheus(setup: Setup) -> None:
    exprs = queries()
    assert len(exprs) >= 150
    cases: list[tuple[str, dict[str, Any]]] = []
    if setup.on_grid:
        print("\na scrape timestamp on a whole second: subqueries not compared in this run")
        exprs = [e for e in exprs if not SUBQUERY.search(e)]
    for expr in exprs:
        for at in (setup.start, setup.end):
            cases.append(("/api/v1/query", {"query": expr, "time": f"{at:.3f}"}))
        step = 2 if "[" in expr else 1
        cases.append(
            (
                "/api/v1/query_range",
                {
                    "query": expr,
                    "start": f"{setup.start:.3f}",
                    "end": f"{setup.end:.3f}",
                    "step": step,
                },
            )
        )
    servers = [setup.prometheus, *setup.ours.values()]
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(lambda c: [_get(s, *c) for s in servers], cases))
    failures = []
    for (path, params), (expected, *ours) in zip(cases, answers, strict=True):
        for backend, got in zip(setup.ours, ours, strict=True):
            for problem in _differences(expected, got):
                failures.append(f"{backend} {path} {params['query']!r}: {problem}")
    compared = len(cases) * len(setup.ours)
    print(
        f"\ndifferential: {len(exprs)} expressions, {compared} answers compared, "
        f"{compared - len({f.split(':')[0] for f in failures})} equal"
    )
    assert not failures, "\n".join(failures[:40])


def test_same_metadata_as_prometheus(setup: Setup) -> None:
    """The metadata Prometheus scraped, as remote write delivered it (sent every second here)."""
    theirs = _get(setup.prometheus, "/api/v1/metadata", {})
    wanted = {k: v for k, v in theirs.items() if k.startswith("app_")}
    assert "app_requests_total" in wanted or "app_requests" in wanted
    for base in setup.ours.values():
        deadline = time.monotonic() + 10
        while True:
            ours = _get(base, "/api/v1/metadata", {})
            mine = {k: v for k, v in ours.items() if k in wanted}
            if mine.keys() == wanted.keys() or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        for name, entries in wanted.items():
            pairs = {(e["type"], e["help"]) for e in entries}
            assert {(e["type"], e["help"]) for e in mine.get(name, [])} == pairs, name


def test_closed_and_open_windows_differ_on_an_edge(setup: Setup) -> None:
    """A sample exactly `range` before the evaluation time: Prometheus 2.42 counts it, we (as
    Prometheus 3) do not. The one place where the two must differ."""
    data = _get(
        setup.prometheus,
        "/api/v1/query",
        {"query": 'up{job="app"}[30s]', "time": f"{setup.end:.3f}"},
    )
    sample = float(data["result"][0]["values"][-8][0])  # s + 5 s is still inside the window
    at = f"{sample + 5:.3f}"
    params = {"query": 'count_over_time(up{job="app"}[5s])', "time": at}
    theirs = float(_get(setup.prometheus, "/api/v1/query", params)["result"][0]["value"][1])
    for base in setup.ours.values():
        mine = float(_get(base, "/api/v1/query", params)["result"][0]["value"][1])
        assert mine == theirs - 1
    stale = {
        "query": "gone_queue_length",
        "time": f"{setup.end:.3f}",
    }  # target gone: stale
    assert _get(setup.prometheus, "/api/v1/query", stale)["result"] == []
    for base in setup.ours.values():
        assert _get(base, "/api/v1/query", stale)["result"] == []
