"""Grafana's Prometheus data source, replayed: the requests it sends when a data source is
saved and a dashboard opens (as PROTOCOLS.md lists them), with its encodings, on both
backends. Grafana itself is not packaged for this machine."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from prometheus_seed import AT, T0, seed

FORM = {"Content-Type": "application/x-www-form-urlencoded", "X-Grafana-Org-Id": "1"}


def post(client: TestClient, path: str, body: str) -> dict:  # type: ignore[type-arg]
    answer = client.post(path, content=body, headers=FORM)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    data = answer.json()
    assert data["status"] == "success", data
    return data  # type: ignore[no-any-return]


def test_data_source_test_and_dashboard_load(shared_client: TestClient) -> None:
    client = shared_client
    seed(client)
    start, end, step = T0 + 300, AT, 30  # Grafana aligns start and end to the step
    start, end = start - start % step, end - end % step

    # "Save & test": the health check, then the build info to pick the flavour and version.
    health = post(client, "/api/v1/query", "query=1%2B1&time=4")
    assert health["data"] == {"resultType": "scalar", "result": [4, "2"]}
    info = client.get("/api/v1/status/buildinfo").json()["data"]
    assert info["version"].split(".")[0] >= "2" and "features" not in info

    # Start-up of the query editor: metric names, label names, metadata, exemplars, rules.
    names = client.get("/api/v1/label/__name__/values", params={"start": start, "end": end}).json()[
        "data"
    ]
    assert "http_requests_total" in names
    labels = post(
        client,
        "/api/v1/labels",
        f"match%5B%5D=http_requests_total&start={start}&end={end}",
    )["data"]
    assert labels == ["__name__", "instance", "job", "method"]
    values = client.get(
        "/api/v1/label/job/values",
        params={"match[]": 'http_requests_total{method="get"}', "start": start, "end": end},
    ).json()["data"]
    assert values == ["api"]
    assert client.get("/api/v1/metadata").json()["status"] == "success"
    exemplars = post(
        client,
        "/api/v1/query_exemplars",
        f"query=rate(http_requests_total%5B1m0s%5D)&start={start * 1000}&end={end * 1000}",
    )
    assert exemplars["data"] == []
    assert client.get("/api/v1/rules").json()["data"] == {"groups": []}

    # A panel: a range query in POST form with a $__rate_interval rendered as 1m0s.
    panel = post(
        client,
        "/api/v1/query_range",
        "query=sum+by+%28job%29+%28rate%28http_requests_total%5B1m0s%5D%29%29"
        f"&start={start}&end={end}&step={step}",
    )
    series = {s["metric"]["job"]: s["values"] for s in panel["data"]["result"]}
    assert set(series) == {"api", "web"}
    assert series["web"][-1][0] == end
    assert float(series["web"][-1][1]) == pytest.approx(0.5)
    assert all(t % step == 0 for t, _ in series["api"])
    # A second panel with $__rate_interval = 1m15s and an instant table query.
    post(
        client,
        "/api/v1/query_range",
        f"query=rate(http_requests_total%5B1m15s%5D)&start={start}&end={end}&step=15",
    )
    table = post(client, "/api/v1/query", f"query=build_info&time={end}")
    assert len(table["data"]["result"]) == 2
    # Grafana falls back to GET after a 400 or 405: both give the same answer here.
    again = client.get("/api/v1/query", params={"query": "build_info", "time": end}).json()
    assert again == table
