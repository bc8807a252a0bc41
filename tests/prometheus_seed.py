"""A small, hand-computable data set for the Prometheus API tests, written through
POST /backfill/import. Samples every 15 s over 20 minutes from T0 (s = seconds since T0):

- http_requests_total{job="api", instance="a", method="get"}: 2 * s (2/s)
- http_requests_total{job="api", instance="b", method="get"}: s, reset to 0 at s = 600
- http_requests_total{job="web", instance="c", method="post"}: 0.5 * s
- temperature{room="x"}: 20 + s / 60 (a gauge); temperature{room="y"}: 30
- latency_bucket{le=...}: counters rising 1, 3, 4, 5 per second for le 0.1, 0.5, 1, +Inf
- build_info{job="api", version="1.0"}, build_info{job="web", version="2.0"}: 1
"""

from __future__ import annotations

from typing import Any

import httpx

T0 = 1_764_763_200  # 2025-12-03T12:00:00Z
STEP = 15
POINTS = 81  # s = 0 .. 1200
AT = T0 + 900  # the evaluation time most cases use


def _series(metric: str, labels: dict[str, str], value: Any) -> dict[str, Any]:
    seconds = [i * STEP for i in range(POINTS)]
    return {
        "metric_name": metric,
        "labels": labels,
        "timestamps": [T0 + s for s in seconds],
        "values": [float(value(s)) for s in seconds],
    }


def seed(client: httpx.Client) -> None:
    """Write the data set (a TestClient is an httpx.Client too)."""
    series = [
        _series(
            "http_requests_total", {"job": "api", "instance": "a", "method": "get"}, lambda s: 2 * s
        ),
        _series(
            "http_requests_total",
            {"job": "api", "instance": "b", "method": "get"},
            lambda s: s if s < 600 else s - 600,
        ),
        _series(
            "http_requests_total",
            {"job": "web", "instance": "c", "method": "post"},
            lambda s: 0.5 * s,
        ),
        _series("temperature", {"room": "x"}, lambda s: 20 + s / 60),
        _series("temperature", {"room": "y"}, lambda s: 30),
        _series("build_info", {"job": "api", "version": "1.0"}, lambda s: 1),
        _series("build_info", {"job": "web", "version": "2.0"}, lambda s: 1),
    ]
    for le, per_second in (("0.1", 1), ("0.5", 3), ("1", 4), ("+Inf", 5)):
        series.append(_series("latency_bucket", {"le": le}, lambda s, r=per_second: r * s))
    answer = client.post("/backfill/import", json={"series": series})
    assert answer.status_code == 201, answer.text
