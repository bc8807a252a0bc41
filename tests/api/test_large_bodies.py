"""Memory under large bodies, in a real server process: a JSON import costs at most about 1.5
times its body at its peak (it cost about 5 times: a 61 MB import added 303 MB), also when
several arrive at once, and the server answers other requests meanwhile.

The figures behind these bounds are in docs/performance.md ("Large bodies")."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import orjson
import pytest
from conftest import LiveServer, fresh_database

PATIENCE = 120.0


def peak_rss_mb(pid: int) -> tuple[float, float]:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    fields = {line.split(":")[0]: float(line.split()[1]) / 1024 for line in status if "kB" in line}
    return fields["VmRSS"], fields["VmHWM"]


def import_body(copy: int, now: float) -> bytes:
    items = [
        {
            "metric_name": "large",
            "value": float(i),
            "timestamp": now - 200_000 + i + copy / 10,
            "labels": {"host": f"server-{i % 100}", "pad": "p" * 500},
        }
        for i in range(40_000)
    ]
    return orjson.dumps({"metrics": items})


@pytest.mark.parametrize(
    "backend_name", ["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)]
)
def test_json_imports_cost_about_their_size_at_their_peak(
    backend_name: str, tmp_path: Path
) -> None:
    """The parsing is the same on both backends; PostgreSQL's run is in the slow set."""
    with fresh_database(backend_name, tmp_path, "large") as url:
        live_server = LiveServer(url)
        live_server.start()
        try:
            check_peak(live_server)
        finally:
            live_server.stop()


def check_peak(live_server: LiveServer) -> None:
    assert live_server.process is not None
    pid = live_server.process.pid
    now = time.time()
    bodies = [import_body(copy, now) for copy in range(3)]  # 3 x 25 MB, sent at once
    total_mb = sum(len(body) for body in bodies) / 1e6
    with httpx.Client(base_url=live_server.base_url, timeout=PATIENCE) as client:
        assert client.post("/backfill/import", json={"metrics": []}).status_code == 201  # warm
        before, _ = peak_rss_mb(pid)
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # restart the peak (VmHWM) count
        answers: list[httpx.Response] = []

        def send(body: bytes) -> None:
            headers = {"content-type": "application/json"}
            answers.append(client.post("/backfill/import", content=body, headers=headers))

        senders = [threading.Thread(target=send, args=(body,)) for body in bodies]
        for sender in senders:
            sender.start()
        health = 0
        while any(sender.is_alive() for sender in senders):
            assert client.get("/health").status_code == 200
            health += 1
        for sender in senders:
            sender.join()
        _, peak = peak_rss_mb(pid)
    assert [a.status_code for a in answers] == [201, 201, 201], [a.text for a in answers]
    added = peak - before
    assert added < 1.5 * total_mb, f"{added:.0f} MB at the peak for {total_mb:.0f} MB of bodies"
    assert health > 0
