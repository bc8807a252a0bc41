"""The outside protocols against the real clients, from Debian's packages: Prometheus 2.42 and
vmagent scraping node_exporter every second and remote-writing to us, `influx -import` (plain,
gzip, a bad line), and `vmctl prometheus` importing a TSDB snapshot through /api/v1/import.

One server per backend for the whole module, both written to at once (Prometheus and vmagent
replicate to every URL they are given); keys are required, sent the way each client sends them.
Each outside process runs on 127.0.0.1 on a free port with a temporary directory and is stopped
by the test.
"""

from __future__ import annotations

import gzip
import os
import pty
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cramjam
import httpx
import pytest
import yaml
from conftest import LiveServer, free_port, fresh_database
from prometheus_client.parser import text_string_to_metric_families
from protocol_clients import STALE_NAN_BITS, bits, stored

from app.protocols.remote_write.proto import ReadRequest, ReadResponse

KEY = "real-client-key"
COMPARED = ("node_load1", "node_memory_MemFree_bytes", "node_cpu_seconds_total", "up")
SCRAPE_SECONDS = 4  # after the first scrape
NEEDED = ("prometheus", "prometheus-node-exporter", "vmagent", "influx", "vmctl", "promtool")
pytestmark = pytest.mark.skipif(
    any(shutil.which(c) is None for c in NEEDED),
    reason=f"needs Debian's clients ({', '.join(NEEDED)}): make clients",
)


@dataclass
class Ours:
    backend: str
    database_url: str
    server: LiveServer

    @property
    def base(self) -> str:
        return self.server.base_url


def backends() -> list[str]:
    if os.environ.get("TEST_DATABASE_URL") or os.environ.get("REQUIRE_POSTGRES") == "1":
        return ["sqlite", "postgresql"]
    return ["sqlite"]


@pytest.fixture(scope="module")
def ours(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Ours]]:
    with ExitStack() as stack:
        found = []
        for backend in backends():
            url = stack.enter_context(
                fresh_database(backend, tmp_path_factory.mktemp(backend), "clients")
            )
            server = LiveServer(url, env={"API_KEYS": KEY})
            server.start()
            stack.callback(server.stop)
            found.append(Ours(backend, url, server))
        yield found


class Process:
    """An outside program, its output in a file, stopped (TERM, then KILL) at the end."""

    def __init__(self, command: list[str], directory: Path, name: str, **kwargs: Any) -> None:
        self.log = directory / f"{name}.log"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, cwd=directory, **kwargs
            )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def wait_until(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (httpx.HTTPError, ValueError):  # not up yet, or a plain-text 503 while starting
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def samples_of(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = httpx.get(url, timeout=5).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


# -- Prometheus and vmagent ----------------------------------------------------------------


@dataclass
class Scraped:
    prometheus: str  # base URL, still running
    cutoff_ms: int  # every sample up to this time had been sent when the run ended
    prometheus_metrics: dict[tuple[str, frozenset[tuple[str, str]]], float]
    vmagent_metrics: dict[tuple[str, frozenset[tuple[str, str]]], float]


def prometheus_config(node: str, servers: list[Ours]) -> dict[str, Any]:
    remotes = []
    for i, server in enumerate(servers):
        auth: dict[str, Any] = (
            {"authorization": {"credentials": KEY}}
            if i % 2 == 0
            else {"basic_auth": {"username": "prometheus", "password": KEY}}
        )
        remotes.append(
            {
                "url": f"{server.base}/api/v1/write",
                "queue_config": {"batch_send_deadline": "500ms", "min_backoff": "30ms"},
                "metadata_config": {"send_interval": "1s"},
                **auth,
            }
        )
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "900ms"},
        "scrape_configs": [{"job_name": "node", "static_configs": [{"targets": [node]}]}],
        "remote_write": remotes,
    }


@pytest.fixture(scope="module")
def scraped(ours: list[Ours]) -> Iterator[Scraped]:
    """node_exporter scraped every second by Prometheus (job node) and vmagent (job vmagent),
    both remote-writing to every server; then node_exporter stops, so stale markers follow."""
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        work = Path(tmp)
        node_port, prom_port, vm_port = free_port(), free_port(), free_port()
        node = Process(
            [
                "prometheus-node-exporter",
                f"--web.listen-address=127.0.0.1:{node_port}",
                "--collector.disable-defaults",
                *(f"--collector.{c}" for c in ("cpu", "loadavg", "meminfo", "time")),
            ],
            work,
            "node_exporter",
        )
        stack.callback(node.stop)
        (work / "prometheus.yml").write_text(
            yaml.safe_dump(prometheus_config(f"127.0.0.1:{node_port}", ours))
        )
        prometheus = Process(
            [
                "prometheus",
                "--config.file=prometheus.yml",
                f"--storage.tsdb.path={work / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            work,
            "prometheus",
        )
        stack.callback(prometheus.stop)
        scrape = {
            "global": {"scrape_interval": "1s"},
            "scrape_configs": [
                {"job_name": "vmagent", "static_configs": [{"targets": [f"127.0.0.1:{node_port}"]}]}
            ],
        }
        (work / "vmagent.yml").write_text(yaml.safe_dump(scrape))
        urls = [f"-remoteWrite.url={s.base}/api/v1/write" for s in ours]
        tokens = [f"-remoteWrite.bearerToken={KEY}" for _ in ours]
        vmagent = Process(
            [
                "vmagent",
                "-promscrape.config=vmagent.yml",
                f"-httpListenAddr=127.0.0.1:{vm_port}",
                f"-remoteWrite.tmpDataPath={work / 'vmagent-data'}",
                *urls,
                *tokens,
            ],
            work,
            "vmagent",
        )
        stack.callback(vmagent.stop)
        prom, vm = f"http://127.0.0.1:{prom_port}", f"http://127.0.0.1:{vm_port}"
        try:
            wait_until(lambda: _scraping(prom), "Prometheus' first scrape")  # about 5 s in
            time.sleep(SCRAPE_SECONDS)
            node.stop()  # the next scrapes fail: stale markers for every series of the target
            time.sleep(2)
            cutoff_ms = int(time.time() * 1000) - 1500
            wait_until(lambda: _flushed(samples_of(f"{prom}/metrics")), "remote write to flush")
        except AssertionError:
            raise AssertionError(prometheus.tail() + vmagent.tail()) from None
        yield Scraped(prom, cutoff_ms, samples_of(f"{prom}/metrics"), samples_of(f"{vm}/metrics"))


def _scraping(prometheus: str) -> bool:
    answer = httpx.get(f"{prometheus}/api/v1/query", params={"query": "up"}, timeout=2).json()
    return any(r["value"][1] == "1" for r in answer.get("data", {}).get("result", []))


def _flushed(metrics: dict[tuple[str, frozenset[tuple[str, str]]], float]) -> bool:
    pending = [
        v for (name, _), v in metrics.items() if name == "prometheus_remote_storage_samples_pending"
    ]
    sent = [
        v for (name, _), v in metrics.items() if name == "prometheus_remote_storage_samples_total"
    ]
    return bool(pending) and not any(pending) and all(v > 0 for v in sent)


def remote_read(
    prometheus: str, metric: str, end_ms: int
) -> dict[tuple[tuple[str, str], ...], list[tuple[int, int]]]:
    """Every raw sample Prometheus holds for `metric` of job node, read through its remote-read
    API (which, unlike PromQL, returns stale markers too), as {labels: [(ts, bits)]}."""
    request = ReadRequest()
    query = request.queries.add(start_timestamp_ms=0, end_timestamp_ms=end_ms)
    query.matchers.add(type=0, name="__name__", value=metric)
    query.matchers.add(type=0, name="job", value="node")
    request.accepted_response_types.append(0)  # SAMPLES
    answer = httpx.post(
        f"{prometheus}/api/v1/read",
        content=bytes(cramjam.snappy.compress_raw(request.SerializeToString())),
        headers={"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    response = ReadResponse.FromString(bytes(cramjam.snappy.decompress_raw(answer.content)))
    out = {}
    for series in response.results[0].timeseries:
        labels = tuple(
            sorted((lab.name, lab.value) for lab in series.labels if lab.name != "__name__")
        )
        out[labels] = [(s.timestamp, bits(s.value)) for s in series.samples]
    return out


def test_prometheus_remote_writes_every_sample_bit_for_bit(
    scraped: Scraped, ours: list[Ours]
) -> None:
    failed = [
        v
        for (name, _), v in scraped.prometheus_metrics.items()
        if name
        in (
            "prometheus_remote_storage_samples_failed_total",
            "prometheus_remote_storage_samples_dropped_total",
            "prometheus_remote_storage_metadata_failed_total",
        )
    ]
    assert failed and not any(failed), failed
    for metric in COMPARED:
        expected = remote_read(scraped.prometheus, metric, scraped.cutoff_ms)
        assert expected and all(len(points) >= SCRAPE_SECONDS for points in expected.values())
        for server in ours:
            found = {
                labels: [p for p in points if p[0] <= scraped.cutoff_ms]
                for labels, points in stored(server.database_url, metric).items()
                if ("job", "node") in labels
            }
            assert found == expected, (server.backend, metric)


def test_stale_markers_arrive_when_the_target_goes(scraped: Scraped, ours: list[Ours]) -> None:
    for server in ours:
        for labels, points in stored(server.database_url, "node_load1").items():
            if ("job", "node") in labels:
                assert points[-1][1] == STALE_NAN_BITS, server.backend
                assert all(b != STALE_NAN_BITS for _, b in points[:-1])


def test_metadata_is_stored(scraped: Scraped, ours: list[Ours]) -> None:
    import asyncio

    from conftest import test_settings

    from app.storage.store import Store

    async def read(url: str) -> dict[str, list[dict[str, str]]]:
        store = Store.open(test_settings(url))
        try:
            return await store.metric_metadata("node_load1", None)
        finally:
            await store.close()

    for server in ours:
        [entry] = asyncio.run(read(server.database_url))["node_load1"]
        assert entry["type"] == "gauge" and "load average" in entry["help"]


def test_vmagent_gets_only_2xx(scraped: Scraped, ours: list[Ours]) -> None:
    codes = {
        dict(labels).get("status_code"): value
        for (name, labels), value in scraped.vmagent_metrics.items()
        if name == "vmagent_remotewrite_requests_total"
    }
    assert codes and all(code.startswith("2") for code in codes if code), codes
    assert sum(codes.values()) > 0
    for server in ours:
        series = stored(server.database_url, "node_load1")
        assert any(("job", "vmagent") in labels for labels in series), server.backend


# -- influx -import ------------------------------------------------------------------------


def influx_import(server: Ours, path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    port = server.base.rsplit(":", 1)[1]
    command = ["influx", "-host", "127.0.0.1", "-port", port, "-username", "u"]
    command += ["-password", KEY, "-import", "-path", str(path), "-precision", "ns", *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


IMPORT_FILE = """# DDL
CREATE DATABASE imported
CREATE RETENTION POLICY oneday ON imported DURATION 1d REPLICATION 1
# DML
# CONTEXT-DATABASE: imported
# CONTEXT-RETENTION-POLICY: oneday
"""


def test_influx_import_of_a_file_and_a_gzipped_one(ours: list[Ours], tmp_path: Path) -> None:
    now_ns = time.time_ns() // 10**9 * 10**9 - 60 * 10**9
    lines = [f"weather,city=c{i % 3} temp={i / 4},hum={i}i {now_ns + i * 10**9}" for i in range(30)]
    plain = tmp_path / "plain.txt"
    plain.write_text(IMPORT_FILE + "\n".join(lines) + "\n")
    packed = tmp_path / "packed.txt.gz"
    other = [line.replace("weather", "weather_gz") for line in lines]
    packed.write_bytes(gzip.compress((IMPORT_FILE + "\n".join(other) + "\n").encode()))
    for server in ours:
        done = influx_import(server, plain)
        assert done.returncode == 0, done.stdout + done.stderr
        done = influx_import(server, packed, "-compressed")
        assert done.returncode == 0, done.stdout + done.stderr
        for metric in ("weather_temp", "weather_gz_temp"):
            found = stored(server.database_url, metric)
            assert sorted(found) == [(("city", f"c{i}"), ("db", "imported")) for i in range(3)]
            assert sum(len(p) for p in found.values()) == 30
        hum = stored(server.database_url, "weather_hum")[(("city", "c1"), ("db", "imported"))]
        assert hum[0] == (now_ns // 10**6 + 1000, bits(1.0))


def test_influx_import_with_a_bad_line(ours: list[Ours], tmp_path: Path) -> None:
    now_ns = time.time_ns() // 10**9 * 10**9 - 30 * 10**9
    body = f"partial v=1 {now_ns}\npartial v= {now_ns}\npartial v=3 {now_ns + 10**9}\n"
    path = tmp_path / "bad.txt"
    path.write_text(IMPORT_FILE + body)
    for server in ours:
        done = influx_import(server, path)
        output = done.stdout + done.stderr
        assert done.returncode != 0 and "partial write" in output, output
        assert stored(server.database_url, "partial_v") == {
            (("db", "imported"),): [
                (now_ns // 10**6, bits(1.0)),
                (now_ns // 10**6 + 1000, bits(3.0)),
            ]
        }


# -- vmctl ---------------------------------------------------------------------------------


def test_vmctl_imports_a_prometheus_snapshot(ours: list[Ours], tmp_path: Path) -> None:
    """Debian's vmctl 1.79.5 migrates a Prometheus TSDB (`vmctl prometheus`) into /api/v1/import
    (its `influx` and `opentsdb` modes need those servers, `vm-native` the native format). The
    snapshot is made by promtool from OpenMetrics text; vmctl wants a terminal, given by a pty."""
    start = int(time.time()) // 60 * 60 - 1800
    values = {("a", i): i * 1.25 for i in range(20)} | {("b", i): -(i**2) / 3 for i in range(20)}
    text = ["# TYPE vmctl_demo gauge"]
    text += [
        f'vmctl_demo{{host="{h}"}} {v!r} {start + i * 30}' for (h, i), v in sorted(values.items())
    ]
    (tmp_path / "data.om").write_text("\n".join([*text, "# EOF"]) + "\n")
    subprocess.run(
        ["promtool", "tsdb", "create-blocks-from", "openmetrics", "data.om", "snapshot"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        timeout=60,
    )
    command = ["vmctl", "prometheus", "-s", "--prom-snapshot", str(tmp_path / "snapshot")]
    command += ["--vm-user", "vmctl", "--vm-password", KEY, "--vm-disable-progress-bar"]
    for server in ours:
        # Debian's vmctl 1.79.5 now and then reads only part of a snapshot (its own summary then
        # says "total samples: 20" or 0, with no request failed): run it again, as a user would;
        # importing the same samples twice stores them once.
        for _ in range(3):
            output = run_in_pty([*command, "--vm-addr", server.base])
            if "total samples: 40;" in output:
                break
        assert "total samples: 40;" in output, output
        found = stored(server.database_url, "vmctl_demo")
        for host in ("a", "b"):
            expected = [((start + i * 30) * 1000, bits(values[(host, i)])) for i in range(20)]
            assert found[(("host", host),)] == expected, server.backend


def run_in_pty(command: list[str], timeout: float = 60) -> str:
    leader, follower = pty.openpty()
    try:
        process = subprocess.Popen(command, stdin=follower, stdout=follower, stderr=follower)
        os.close(follower)
        chunks = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the pty closes once the program exits
                break
            if not chunk or time.monotonic() > deadline:
                break
            chunks.append(chunk)
        process.wait(timeout=10)
    finally:
        os.close(leader)
    output = b"".join(chunks).decode(errors="replace")
    assert process.returncode == 0, output
    return output
