"""Alert rules and alerts over HTTP on both backends: /alerts/rules CRUD, the rules file at
start-up, GET /alerts after the alert job, /jobs/status and /metrics."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import run_inline
from fastapi.testclient import TestClient

from app.services.alerting.rules import RuleError

ANOMALY_RULE = {
    "metric": "cpu_usage",
    "match": '{region="eu"}',
    "anomaly": {"likelihood": 0.9999},
    "for": "1m",
    "labels": {"severity": "page"},
    "annotations": {"summary": "{{ $labels.host }}: {{ $value }}"},
}
HOT_RULE = {"metric": "temp", "threshold": {"op": ">", "value": 80}, "for": "20s"}


def test_rules_are_created_replaced_listed_and_deleted(client: TestClient) -> None:
    created = client.put("/alerts/rules/cpu_anomaly", json=ANOMALY_RULE)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["name"] == "cpu_anomaly" and body["source"] == "api"
    assert body["anomaly"] == {"method": "auto", "likelihood": 0.9999}
    assert (body["for"], body["keep_firing_for"], body["last_evaluation"]) == ("1m", "0s", None)
    replaced = client.put("/alerts/rules/cpu_anomaly", json={**ANOMALY_RULE, "for": "5m"})
    assert replaced.status_code == 200 and replaced.json()["for"] == "5m"
    assert client.put("/alerts/rules/hot", json=HOT_RULE).status_code == 201
    listed = client.get("/alerts/rules").json()["rules"]
    assert [r["name"] for r in listed] == ["cpu_anomaly", "hot"]
    assert client.get("/alerts/rules/hot").json()["threshold"] == {"op": ">", "value": 80.0}
    assert client.delete("/alerts/rules/hot").json() == {"name": "hot", "status": "deleted"}
    assert client.delete("/alerts/rules/hot").status_code == 404
    missing = client.get("/alerts/rules/hot")
    assert missing.status_code == 404 and "hot" in missing.json()["detail"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"threshold": {"op": ">", "value": 1}}, "metric"),
        ({"metric": "m", "anomaly": {"likelihood": 3}}, "anomaly.likelihood"),
        ({"metric": "m", "expr": "up == 0", "anomaly": {}}, "expr"),
        ({"metric": "m", "anomaly": {}, "for": "yesterday"}, "for"),
        ({"metric": "m", "anomaly": {}, "match": '{a=~"("}'}, "match"),
    ],
)
def test_bad_rules_are_a_422_naming_the_field(
    client: TestClient, body: dict[str, Any], field: str
) -> None:
    answer = client.put("/alerts/rules/r", json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"].startswith(field)
    assert client.put("/alerts/rules/bad%20name", json=HOT_RULE).status_code == 422
    assert (
        client.put(
            "/alerts/rules/r", content=b"[1]", headers={"content-type": "application/json"}
        ).status_code
        == 422
    )


def test_writing_rules_needs_a_write_key(make_client: Callable[..., TestClient]) -> None:
    client = make_client(api_keys=["writer"], read_api_keys=["reader"])
    assert client.put("/alerts/rules/hot", json=HOT_RULE).status_code == 401
    read = {"authorization": "Bearer reader"}
    assert client.put("/alerts/rules/hot", json=HOT_RULE, headers=read).status_code == 401
    write = {"authorization": "Bearer writer"}
    assert client.put("/alerts/rules/hot", json=HOT_RULE, headers=write).status_code == 201
    assert client.get("/alerts/rules").status_code == 401
    assert client.get("/alerts", headers=read).status_code == 200
    assert client.delete("/alerts/rules/hot", headers=read).status_code == 401


def test_the_rules_file_is_loaded_at_start_up(
    make_client: Callable[..., TestClient], tmp_path: Path
) -> None:
    rules_file = tmp_path / "rules.yml"
    rules_file.write_text(
        "rules:\n"
        "  - name: from_file\n    metric: cpu_usage\n    anomaly: {likelihood: 0.999}\n"
        "  - name: hot\n    metric: temp\n    threshold: {op: '>', value: 90}\n",
        encoding="utf-8",
    )
    client = make_client(alert_rules_file=str(rules_file))
    assert client.put("/alerts/rules/mine", json=HOT_RULE).status_code == 201
    rules = {r["name"]: r for r in client.get("/alerts/rules").json()["rules"]}
    assert {n: r["source"] for n, r in rules.items()} == {
        "from_file": "file",
        "hot": "file",
        "mine": "api",
    }
    # The file changes: its rules follow at the next start; rules created over HTTP stay.
    rules_file.write_text(
        "rules:\n  - {name: hot, metric: temp, threshold: {op: '>', value: 95}}\n"
    )
    again = make_client(alert_rules_file=str(rules_file))
    rules = {r["name"]: r for r in again.get("/alerts/rules").json()["rules"]}
    assert set(rules) == {"hot", "mine"}
    assert rules["hot"]["threshold"]["value"] == 95.0
    rules_file.write_text("rules:\n  - {name: broken, metric: temp}\n")
    with pytest.raises(RuleError, match=r"rules\[0\] \(broken\): anomaly"):
        make_client(alert_rules_file=str(rules_file))


def now_s() -> float:
    return float(int(time.time()) - int(time.time()) % 10)


def test_alerts_and_history_after_the_alert_job(client: TestClient, database_url: str) -> None:
    end = now_s()
    ts = end - 10 * np.arange(30)[::-1]  # five minutes of 10 s samples: what a new rule judges
    values = np.full(30, 20.0)
    values[5:15] = 99.0  # hot for 100 s, from 250 s ago
    values[25:] = 99.0  # and again for the last 50 s
    body = {
        "series": [
            {
                "metric_name": "temp",
                "labels": {"room": "a"},
                "timestamps": ts.tolist(),
                "values": values.tolist(),
            }
        ]
    }
    assert client.post("/backfill/import", json=body).status_code == 201
    assert client.put("/alerts/rules/hot", json=HOT_RULE).status_code == 201
    outcome = run_inline(database_url, "alert", now=int(end * 1000) + 1)
    assert "rules: 1, series: 1" in outcome.detail
    answer = client.get("/alerts", params={"state": "all"}).json()
    [alert] = answer["alerts"]
    assert alert["state"] == "firing"
    assert alert["labels"] == {"alertname": "hot", "room": "a"}
    assert alert["value"] == 99.0
    history = [(h["state"], h["at"]) for h in reversed(answer["history"])]
    iso = lambda s: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(s))  # noqa: E731
    assert history == [
        ("pending", iso(ts[5])),
        ("firing", iso(ts[7])),  # for 20 s
        ("resolved", iso(ts[15])),
        ("pending", iso(ts[25])),
        ("firing", iso(ts[27])),
    ]
    # Run again: nothing new to judge, nothing recorded twice.
    run_inline(database_url, "alert", now=int(end * 1000) + 5000)
    assert len(client.get("/alerts", params={"state": "all"}).json()["history"]) == 5
    assert client.get("/alerts", params={"state": "resolved"}).json()["alerts"] == []
    assert client.get("/alerts", params={"rule": "nope"}).json() == {"alerts": [], "history": []}
    status = client.get("/jobs/status").json()["jobs"]["alert"]
    assert status["runs"] == 2 and status["status"] == "ok"
    prometheus_rules = client.get("/api/v1/rules").json()
    assert prometheus_rules["status"] == "success"
    [rule] = prometheus_rules["data"]["groups"][0]["rules"]
    assert (rule["name"], rule["state"], rule["type"], rule["health"]) == (
        "hot",
        "firing",
        "alerting",
        "ok",
    )
    assert rule["query"] == "temp > 80" and rule["duration"] == 20.0
    [firing] = client.get("/api/v1/alerts").json()["data"]["alerts"]
    assert firing == {
        "labels": {"alertname": "hot", "room": "a"},
        "annotations": {},
        "state": "firing",
        "activeAt": iso(ts[25]),
        "value": "9.9e+01",
    }
    metrics = client.get("/metrics").text
    assert 'metrics_alerts{state="firing"} 1.0' in metrics
    assert 'metrics_job_last_success{job="alert"} 1.0' in metrics
    # The rule goes: its firing alert resolves at the next run, then is dropped.
    assert client.delete("/alerts/rules/hot").status_code == 200
    run_inline(database_url, "alert", now=int(end * 1000) + 9000)
    after = client.get("/alerts", params={"state": "all"}).json()
    assert after["alerts"] == [] and after["history"][0]["state"] == "resolved"
