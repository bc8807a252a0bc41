"""The data generator run exactly as a user would, against a real uvicorn server."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from conftest import LiveServer

from app.services import data_generator as gen

ROOT = Path(__file__).resolve().parents[2]
CMD = [sys.executable, "-m", "app.services.data_generator"]
EXACT = ["--metric", "cpu_usage", "--pattern", "sine_wave", "--duration", "300", "--interval", "5"]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CMD, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def get(server: LiveServer, path: str, **params: Any) -> Any:
    answer = httpx.get(f"{server.base_url}{path}", params=params, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


def to_ms(stamp: str) -> int:
    return round(datetime.fromisoformat(stamp).timestamp() * 1000)


def test_exact_command_writes_60_points(live_server: LiveServer) -> None:
    before = time.time() * 1000
    result = run_cli(*EXACT, "--base-url", live_server.base_url)
    assert result.returncode == 0, result.stderr
    assert "imported 60 points of cpu_usage" in result.stdout
    [series] = get(live_server, "/query/raw", metric_name="cpu_usage")["series"]
    points = series["points"]
    assert len(points) == 60
    stamps = [to_ms(p["timestamp"]) for p in points]
    assert set(np.diff(stamps).tolist()) == {5000}
    assert before - 1000 <= stamps[-1] <= time.time() * 1000
    expected = gen.generate_series("sine_wave", duration=300, interval=5, end_ms=stamps[-1])
    assert [p["value"] for p in points] == expected.values.tolist()
    detected = get(live_server, "/anomaly/detect", metric_name="cpu_usage")
    assert detected["series"][0]["anomalies"] == []


def test_planted_spikes_are_detected(live_server: LiveServer) -> None:
    args = ["--metric", "spiky", "--pattern", "spike", "--duration", "3000", "--interval", "10"]
    result = run_cli(*args, "--series", "2", "--seed", "7", "--base-url", live_server.base_url)
    assert result.returncode == 0, result.stderr
    assert "imported 600 points" in result.stdout
    detected = get(live_server, "/anomaly/detect", metric_name="spiky", threshold=4)
    assert [s["labels"] for s in detected["series"]] == [{"host": "server1"}, {"host": "server2"}]
    raw = get(live_server, "/query/raw", metric_name="spiky")["series"]
    for i, series in enumerate(detected["series"]):
        assert raw[i]["labels"] == series["labels"]
        end = to_ms(raw[i]["points"][-1]["timestamp"])
        planted = gen.generate_series("spike", duration=3000, interval=10, end_ms=end, seed=7 + i)
        assert planted.spike_indices.size == 3
        flagged = [to_ms(a["timestamp"]) for a in series["anomalies"]]
        assert flagged == planted.timestamps_ms[planted.spike_indices].tolist()


def test_live_mode_with_count(live_server: LiveServer) -> None:
    args = ["--live", "--count", "3", "--interval", "0.2", "--metric", "beat", "--series", "2"]
    result = run_cli(*args, "--base-url", live_server.base_url)
    assert result.returncode == 0, result.stderr
    assert "sent 6 points of beat" in result.stdout
    raw = get(live_server, "/query/raw", metric_name="beat")["series"]
    assert [s["labels"] for s in raw] == [{"host": "server1"}, {"host": "server2"}]
    for series in raw:
        stamps = [to_ms(p["timestamp"]) for p in series["points"]]
        assert np.diff(stamps).tolist() == [200, 200]


def test_api_key_is_sent(database_url: str) -> None:
    server = LiveServer(database_url, env={"API_KEYS": "sekrit,other"})
    server.start()
    try:
        refused = run_cli(*EXACT, "--base-url", server.base_url)
        assert refused.returncode == 1
        assert "Traceback" not in refused.stderr
        assert "rejected with HTTP 401" in refused.stderr
        assert "API key" in refused.stderr  # the server's detail
        result = run_cli(*EXACT, "--api-key", "sekrit", "--base-url", server.base_url)
        assert result.returncode == 0, result.stderr
    finally:
        server.stop()


def test_server_rejection_shows_its_detail(live_server: LiveServer) -> None:
    future = str(time.time() + 86_400)  # beyond MAX_FUTURE_SKEW
    result = run_cli(*EXACT, "--end", future, "--base-url", live_server.base_url)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(
        "data_generator: error: POST /backfill/import rejected with HTTP 422"
    )
    assert get(live_server, "/metrics/names")["names"] == []
