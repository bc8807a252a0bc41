"""The synthetic data generator: pure generation, and the CLI as a real subprocess.

CLI tests talk to a small in-process HTTP stub (or to nothing at all), never to the real service;
tests/services/test_data_generator_live.py runs the generator against the real app.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from app.services import anomaly
from app.services import data_generator as gen

ROOT = Path(__file__).resolve().parents[2]
CMD = [sys.executable, "-m", "app.services.data_generator"]
EXACT = ["--metric", "cpu_usage", "--pattern", "sine_wave", "--duration", "300", "--interval", "5"]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CMD, *args], cwd=ROOT, capture_output=True, text=True, timeout=60)


# --- pure generation --------------------------------------------------------------------------


def test_exact_command_plans_60_points_ending_now() -> None:
    end = 1_764_763_200_000
    series = gen.generate_series("sine_wave", duration=300, interval=5, end_ms=end)
    assert gen.point_count(300, 5) == 60
    assert series.timestamps_ms.size == series.values.size == 60
    assert series.timestamps_ms[-1] == end
    assert np.all(np.diff(series.timestamps_ms) == 5000)
    assert series.spike_indices.size == 0


@pytest.mark.parametrize("pattern", gen.PATTERNS)
def test_generation_is_reproducible_from_the_seed(pattern: str) -> None:
    first, spikes = gen.generate(pattern, 500, 7)
    again, spikes_again = gen.generate(pattern, 500, 7)
    other, _ = gen.generate(pattern, 500, 8)
    assert np.array_equal(first, again)
    assert np.array_equal(spikes, spikes_again)
    assert not np.array_equal(first, other)
    assert np.all(np.isfinite(first))


def test_noise_free_shapes() -> None:
    params = gen.PatternParams(span=100.0, noise=0.0, period=40.0)
    t = np.arange(50) * 2.0
    sine, _ = gen.generate("sine_wave", 50, interval=2.0, params=params)
    trend, _ = gen.generate("linear_trend", 50, interval=2.0, params=params)
    flat, _ = gen.generate("noise", 50, interval=2.0, params=params)
    assert sine == pytest.approx(50.0 + 20.0 * np.sin(2 * np.pi * t / 40.0))
    assert trend == pytest.approx(40.0 + 20.0 * t / 100.0)
    assert np.all(flat == 50.0)


def test_first_continues_the_pattern() -> None:
    """Live mode generates in chunks: a chunk starting at `first` continues the time axis."""
    params = gen.PatternParams(span=300.0, noise=0.0)
    whole, _ = gen.generate("combined", 15, interval=5.0, params=params)
    tail, _ = gen.generate("combined", 10, interval=5.0, params=params, first=5)
    assert tail == pytest.approx(whole[5:])


@pytest.mark.parametrize(("n", "spikes"), [(5, 0), (19, 0), (20, 1), (60, 1), (149, 1), (1000, 10)])
def test_about_one_percent_spikes(n: int, spikes: int) -> None:
    _, positions = gen.generate("spike", n)
    assert positions.size == spikes
    assert np.all(np.diff(positions) > 1)
    assert np.all((positions >= 0) & (positions < n))


@pytest.mark.parametrize("pattern", ["spike", "combined"])
@pytest.mark.parametrize("n", [60, 1000, 10_000])
@pytest.mark.parametrize("seed", [42, 1, 2])
def test_spikes_are_exactly_what_zscore_finds(pattern: str, n: int, seed: int) -> None:
    values, spikes = gen.generate(pattern, n, seed, params=gen.PatternParams(span=n))
    assert spikes.size >= 1
    assert anomaly.zscore(values, 3.0).indices.tolist() == spikes.tolist()
    assert set(spikes.tolist()) <= set(anomaly.mad(values, 3.5).indices.tolist())
    ts = np.arange(n, dtype=np.int64) * 1000
    rolling = anomaly.rolling_zscore(ts, values, 3_600_000, 3.0)
    assert set(spikes.tolist()) <= set(rolling.indices.tolist())


@pytest.mark.parametrize("n", [60, 1000, 10_000])
def test_noise_has_no_false_alarms_at_threshold_4(n: int) -> None:
    values, spikes = gen.generate("noise", n)
    assert spikes.size == 0
    assert np.max(np.abs(values - 50.0)) <= 3.0 * gen.NOISE_CLIP
    assert anomaly.zscore(values, 4.0).indices.size == 0
    for seed in range(20):
        assert anomaly.zscore(gen.generate("noise", n, seed)[0], 4.0).indices.size == 0


@pytest.mark.parametrize("pattern", ["noise", "sine_wave", "linear_trend"])
def test_spikeless_patterns_are_quiet_at_threshold_4(pattern: str) -> None:
    series = gen.generate_series(pattern, duration=86_400, interval=10, end_ms=0)
    assert anomaly.zscore(series.values, 4.0).indices.size == 0


def test_series_label_sets() -> None:
    assert gen.series_label_sets({}, 1, "host") == [{}]
    assert gen.series_label_sets({"dc": "x"}, 2, "host") == [
        {"dc": "x", "host": "server1"},
        {"dc": "x", "host": "server2"},
    ]
    assert gen.series_label_sets({"region": "r"}, 2, "region") == [
        {"region": "r1"},
        {"region": "r2"},
    ]


def test_time_formats() -> None:
    assert gen.rfc3339_ms(np.array([1_764_763_200_250])) == ["2025-12-03T12:00:00.250Z"]
    assert gen.parse_time("1764763200.25") == 1_764_763_200_250
    assert gen.parse_time("2025-12-03T12:00:00Z") == 1_764_763_200_000
    assert gen.parse_time("2025-12-03T13:00:00+01:00") == 1_764_763_200_000
    assert gen.parse_time("2025-12-03T12:00:00") == 1_764_763_200_000


def test_detail_flattens_validation_errors() -> None:
    errors = [{"loc": ["body", "metrics", i, "value"], "msg": "bad"} for i in range(5)]
    response = httpx.Response(422, json={"detail": errors})
    assert gen._detail(response) == (
        "body.metrics.0.value: bad; body.metrics.1.value: bad; body.metrics.2.value: bad "
        "(and 2 more)"
    )
    assert gen._detail(httpx.Response(502, text="<html>bad gateway</html>")) == (
        "<html>bad gateway</html>"
    )


# --- the CLI, without a server ----------------------------------------------------------------


def assert_clean_failure(result: subprocess.CompletedProcess[str], code: int) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_help_documents_the_design() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    assert "server1" in result.stdout
    assert all(pattern in result.stdout for pattern in gen.PATTERNS)


def test_unknown_pattern() -> None:
    result = run_cli("--pattern", "sawtooth")
    assert_clean_failure(result, 2)
    assert "invalid choice: 'sawtooth'" in result.stderr


def test_unreachable_service() -> None:
    result = run_cli(*EXACT, "--base-url", "http://127.0.0.1:9")
    assert_clean_failure(result, 1)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("data_generator: error: cannot reach http://127.0.0.1:9")


@pytest.mark.parametrize(
    "args",
    [
        ["--end", "yesterday"],
        ["--count", "5"],
        ["--duration", "1", "--interval", "5"],
        ["--interval", "0"],
        ["--series", "-2"],
        ["--label", "no-equals-sign"],
        ["--base-url", "localhost:8000"],
        ["--live", "--end", "0"],
    ],
)
def test_bad_arguments(args: list[str]) -> None:
    result = run_cli(*args)
    assert_clean_failure(result, 2)
    assert "error:" in result.stderr


# --- the CLI against a stub server ------------------------------------------------------------


@dataclass
class Stub:
    url: str = ""
    status: int = 201
    reply: dict[str, Any] = field(default_factory=lambda: {"status": "ok"})
    requests: list[tuple[str, dict[str, str], Any]] = field(default_factory=list)


@pytest.fixture
def stub() -> Iterator[Stub]:
    state = Stub()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            state.requests.append((self.path, dict(self.headers), json.loads(body)))
            payload = json.dumps(state.reply).encode()
            self.send_response(state.status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def epoch_ms(stamp: str) -> int:
    return round(datetime.fromisoformat(stamp).timestamp() * 1000)


def test_exact_command_imports_60_points_at_once(stub: Stub) -> None:
    before = time.time() * 1000
    result = run_cli(*EXACT, "--base-url", stub.url)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no progress bar when stderr is not a terminal
    assert len(result.stdout.strip().splitlines()) == 1
    assert "imported 60 points of cpu_usage" in result.stdout
    [(path, _, body)] = stub.requests
    assert path == "/backfill/import"
    items = body["metrics"]
    assert len(items) == 60
    assert {item["metric_name"] for item in items} == {"cpu_usage"}
    assert all(item["labels"] == {} for item in items)
    stamps = [epoch_ms(item["timestamp"]) for item in items]
    assert np.all(np.diff(stamps) == 5000)
    assert before - 1000 <= stamps[-1] <= time.time() * 1000
    expected = gen.generate_series("sine_wave", duration=300, interval=5, end_ms=stamps[-1])
    assert [item["value"] for item in items] == expected.values.tolist()


def test_series_batches_labels_and_api_key(stub: Stub) -> None:
    args = ["--series", "3", "--batch-size", "25", "--duration", "100", "--interval", "2"]
    result = run_cli(*args, "--label", "region=eu", "--api-key", "sekrit", "--base-url", stub.url)
    assert result.returncode == 0, result.stderr
    assert [len(body["metrics"]) for _, _, body in stub.requests] == [25] * 6
    assert {headers["authorization"] for _, headers, _ in stub.requests} == {"Bearer sekrit"}
    items = [item for _, _, body in stub.requests for item in body["metrics"]]
    for i in range(3):
        mine = [
            item for item in items if item["labels"] == {"region": "eu", "host": f"server{i + 1}"}
        ]
        values, _ = gen.generate("sine_wave", 50, 42 + i, interval=2, params=gen.PatternParams(100))
        assert [item["value"] for item in mine] == values.tolist()


def test_historical_end(stub: Stub) -> None:
    result = run_cli(*EXACT, "--end", "2025-12-03T12:00:00Z", "--base-url", stub.url)
    assert result.returncode == 0, result.stderr
    items = stub.requests[0][2]["metrics"]
    assert items[-1]["timestamp"] == "2025-12-03T12:00:00.000Z"
    assert items[0]["timestamp"] == "2025-12-03T11:55:05.000Z"


def test_rejected_request_shows_the_servers_detail(stub: Stub) -> None:
    stub.status, stub.reply = 422, {"detail": "metrics[3].value: must be a finite number"}
    result = run_cli(*EXACT, "--base-url", stub.url)
    assert_clean_failure(result, 1)
    assert result.stderr.strip() == (
        "data_generator: error: POST /backfill/import rejected with HTTP 422: "
        "metrics[3].value: must be a finite number (after 0 points)"
    )


def test_live_with_count(stub: Stub) -> None:
    result = run_cli(
        "--live", "--count", "3", "--interval", "0.05", "--series", "2", "--base-url", stub.url
    )
    assert result.returncode == 0, result.stderr
    assert "sent 6 points" in result.stdout
    assert [path for path, _, _ in stub.requests] == ["/metrics/ingest"] * 6
    stamps = [epoch_ms(body["timestamp"]) for _, _, body in stub.requests]
    assert stamps[0] == stamps[1]
    assert stamps[2] - stamps[0] == stamps[4] - stamps[2] == 50
    hosts = [body["labels"]["host"] for _, _, body in stub.requests]
    assert hosts == ["server1", "server2"] * 3
    for i in range(2):  # the same values as the pure function, series i with seed 42 + i
        values, _ = gen.generate("sine_wave", 3, 42 + i, interval=0.05, params=gen.PatternParams())
        assert [body["value"] for _, _, body in stub.requests[i::2]] == values.tolist()


def test_live_stops_cleanly_on_ctrl_c(stub: Stub) -> None:
    process = subprocess.Popen(
        [*CMD, "--live", "--interval", "0.05", "--base-url", stub.url],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while len(stub.requests) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=30)
    finally:  # a generator that did not stop must not outlive the test, nor leave its pipes open
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert stdout.startswith("stopped by Ctrl-C: sent ")
    assert len(stub.requests) >= 3


# --- labelled anomalies (--anomalies) -----------------------------------------------------------


def test_labelled_anomalies_are_planted_and_written(stub: Stub, tmp_path: Path) -> None:
    labels_file = tmp_path / "labels.jsonl"
    args = ["--pattern", "daily", "--duration", "259200", "--interval", "60", "--end", "1767225600"]
    args += ["--anomalies", "spike,missing", "--anomaly-every", "21600", "--series", "2"]
    args += ["--warmup", "172800"]
    result = run_cli(*args, "--labels-out", str(labels_file), "--base-url", stub.url)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in labels_file.read_text().splitlines()]
    # 3 days, 2 days of warm-up, then one anomaly every 6 h: 4 per series, spike and missing.
    assert len(records) == 8
    assert [r["kind"] for r in records[:4]] == ["spike", "missing", "spike", "missing"]
    assert {r["labels"]["host"] for r in records} == {"server1", "server2"}
    items = [item for _, _, body in stub.requests for item in body["metrics"]]
    one = sorted(
        (epoch_ms(i["timestamp"]), i["value"]) for i in items if i["labels"]["host"] == "server1"
    )
    stamps = np.array([t for t, _ in one])
    gap = records[1]
    assert not ((stamps >= epoch_ms(gap["start"])) & (stamps <= epoch_ms(gap["end"]))).any()
    assert len(one) < 3 * 1440  # the missing samples are not sent
    spike_at = epoch_ms(records[0]["start"])
    value = dict(one)[spike_at]
    nearby = [v for t, v in one if 0 < abs(t - spike_at) <= 600_000]
    assert value - np.median(nearby) > 10  # 6 to 12 noise sigmas (3 each) above its neighbours


@pytest.mark.parametrize(
    "args",
    [
        ["--anomalies", "spike", "--pattern", "sine_wave"],
        ["--anomalies", "seasonal_break", "--pattern", "noise"],
        ["--anomalies", "earthquake", "--pattern", "daily"],
        ["--anomalies", "spike", "--pattern", "daily", "--live"],
        ["--labels-out", "x.jsonl"],
    ],
)
def test_bad_anomaly_arguments(args: list[str]) -> None:
    result = run_cli(*args)
    assert_clean_failure(result, 2)
    assert "error:" in result.stderr


def test_daily_pattern_follows_the_time_of_day() -> None:
    params = gen.PatternParams(span=86_400.0, noise=0.0, amplitude=40.0)
    series = gen.generate_series(
        "daily", duration=86_400, interval=3600, end_ms=1_767_225_600_000 - 3_600_000, params=params
    )
    by_hour = dict(
        zip(((series.timestamps_ms // 3_600_000) % 24).tolist(), series.values, strict=True)
    )
    assert by_hour[3] < 55.0 < by_hour[14]  # quiet nights, busy afternoons
