"""vmalert (VictoriaMetrics 1.79.5, Debian's) evaluating a recording rule and an alerting rule
against our query API and writing the results back to us through remote write."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml
from conftest import LiveServer, free_port

pytestmark = pytest.mark.skipif(shutil.which("vmalert") is None, reason="needs vmalert")

RULES = {
    "groups": [
        {
            "name": "service",
            "interval": "1s",
            "rules": [
                {
                    "record": "job:requests:rate1m",
                    "expr": "sum by (job) (rate(requests_total[1m]))",
                },
                {
                    "alert": "Busy",
                    "expr": "sum by (job) (rate(requests_total[1m])) > 1",
                },
            ],
        }
    ]
}


def seed_recent(base_url: str) -> float:
    """requests_total for job api (2/s over two series) and job web (0.5/s) up to now."""
    now = time.time()
    stamps = [now - 600 + 5 * i for i in range(121)]
    series = [
        {
            "metric_name": "requests_total",
            "labels": {"job": job, "instance": inst},
            "timestamps": stamps,
            "values": [per_s * 5 * i for i in range(121)],
        }
        for job, inst, per_s in (
            ("api", "a", 1.5),
            ("api", "b", 0.5),
            ("web", "c", 0.5),
        )
    ]
    answer = httpx.post(f"{base_url}/backfill/import", json={"series": series}, timeout=30)
    assert answer.status_code == 201, answer.text
    return now


def test_vmalert_records_through_us(live_server: LiveServer, tmp_path: Path) -> None:
    base = live_server.base_url
    seed_recent(base)
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump(RULES))
    port = free_port()
    log = (tmp_path / "vmalert.log").open("wb")
    process = subprocess.Popen(
        [
            "vmalert",
            f"-rule={rules}",
            f"-datasource.url={base}",
            f"-remoteWrite.url={base}",
            "-remoteWrite.flushInterval=200ms",
            "-evaluationInterval=1s",
            f"-httpListenAddr=127.0.0.1:{port}",
            f"-notifier.url=http://127.0.0.1:{free_port()}",  # nobody listens: alerts stay here
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        recorded: dict[str, float] = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(recorded) < 2:
            time.sleep(0.5)
            answer = httpx.get(f"{base}/api/v1/query", params={"query": "job:requests:rate1m"})
            assert answer.status_code == 200, answer.text
            recorded = {
                r["metric"]["job"]: float(r["value"][1]) for r in answer.json()["data"]["result"]
            }
        assert recorded == pytest.approx({"api": 2.0, "web": 0.5}), tmp_path / "vmalert.log"
        # vmalert's own view: the rule ran without errors, the alert fires for job api only.
        groups = httpx.get(f"http://127.0.0.1:{port}/api/v1/rules").json()["data"]["groups"]
        health = {r["name"]: r.get("lastError", "") for g in groups for r in g["rules"]}
        assert health == {"job:requests:rate1m": "", "Busy": ""}
        alerts = httpx.get(f"http://127.0.0.1:{port}/api/v1/alerts").json()["data"]["alerts"]
        assert [a["labels"]["job"] for a in alerts] == ["api"]
        # The alert's state went through remote write too, as vmalert's ALERTS series.
        answer = httpx.get(f"{base}/api/v1/query", params={"query": 'ALERTS{alertname="Busy"}'})
        assert [r["metric"]["job"] for r in answer.json()["data"]["result"]] == ["api"]
    finally:
        process.terminate()
        process.wait(10)
        log.close()
