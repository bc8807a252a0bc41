"""The framework-free path of POST /metrics/ingest (app.api.hot_ingest).

It answers plain writes itself and hands everything else to the route; either way the answer must
be the route's own. Each case is sent twice to the same app, once with the path on and once with it
off, and the two answers (status, body, headers that matter) and what was stored must agree.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from app.main import MetricsApp, create_app
from tests.conftest import run_inline, test_settings

KEY = "hot-path-key"
HOUR_MS = 3_600_000


class Switch:
    """Turns the hot path of a started app on and off, and counts hand-overs to the route."""

    def __init__(self, client: TestClient) -> None:
        app = client.app
        assert isinstance(app, MetricsApp)
        started: Any = app.hot_ingest
        assert isinstance(started, functools.partial)
        framework = started.keywords["framework"]
        self.app, self.handed_over = app, 0

        async def counted(scope: Any, receive: Any, send: Any) -> None:
            self.handed_over += 1
            await framework(scope, receive, send)

        self.on_path = functools.partial(started.func, **{**started.keywords, "framework": counted})

    def on(self) -> None:
        self.app.hot_ingest = self.on_path

    def off(self) -> None:
        self.app.hot_ingest = None


@pytest.fixture
def hot(make_client: Callable[..., TestClient]) -> tuple[TestClient, Switch]:
    client = make_client(api_keys=[KEY], max_series_per_metric=2, max_body_bytes=2048)
    return client, Switch(client)


def answer_of(response: Any) -> tuple[int, object, str | None, str | None]:
    assert response.headers["server-timing"].startswith("app;dur=")
    return (
        response.status_code,
        response.json(),
        response.headers.get("content-type"),
        response.headers.get("www-authenticate"),
    )


def send_both_ways(
    client: TestClient, switch: Switch, **request: Any
) -> tuple[tuple[int, object, str | None, str | None], int]:
    """The answer with the hot path on (checked equal to the route's), and the hand-overs."""
    request.setdefault("headers", {"X-API-Key": KEY})

    def post() -> Any:
        body = request.get("content")  # a generator function: a fresh chunked body each time
        fresh = {"content": body()} if callable(body) else {}
        return client.post("/metrics/ingest", **{**request, **fresh})

    switch.off()
    through_route = answer_of(post())
    switch.on()
    before = switch.handed_over
    through_hot_path = answer_of(post())
    assert through_hot_path == through_route
    return through_hot_path, switch.handed_over - before


def now_s() -> float:
    return round(time.time() - 60, 3)


def sample(**extra: Any) -> dict[str, Any]:
    return {"metric_name": "hot", "value": 1.5, "timestamp": now_s(), **extra}


def stored(client: TestClient, metric: str) -> list[tuple[str, float]]:
    params = {"metric_name": metric, "start_time": time.time() - 3600, "end_time": time.time()}
    body = client.get("/query/raw", params=params, headers={"X-API-Key": KEY}).json()
    return sorted((p["timestamp"], p["value"]) for s in body.get("series", []) for p in s["points"])


@pytest.mark.parametrize(
    "request_args",
    [
        {"json": sample()},
        {"json": sample(labels={"host": "a", "region": "eu"}, value=-2.25)},
        {"json": {"metric_name": "hot", "value": 7}},  # no timestamp: the server's time
        {"json": sample(), "headers": {"Authorization": f"Bearer {KEY}"}},
    ],
    ids=["plain", "labels", "server-time", "bearer"],
)
def test_plain_writes_are_answered_without_the_framework(
    hot: tuple[TestClient, Switch], request_args: dict[str, Any]
) -> None:
    client, switch = hot
    answer, handed_over = send_both_ways(client, switch, **request_args)
    stored_raw = {"status": "ok", "raw": 1, "rollups_only": 0, "beyond_retention": 0}
    assert answer[:2] == (201, stored_raw) and answer[2] == "application/json"
    assert handed_over == 0
    assert stored(client, "hot")  # written (twice, last write wins)


LARGE = {"metric_name": "hot", "value": 1.0, "labels": {"k": "v" * 3000}}


def chunks() -> Iterator[bytes]:
    yield b'{"metric_name": "hot", "value": 1, "labels": {"k": "'
    yield b"v" * 3000
    yield b'"}}'


@pytest.mark.parametrize(
    ("request_args", "status", "detail"),
    [
        ({"json": sample(), "headers": {}}, 401, "write API key is required"),
        ({"json": sample(), "headers": {"X-API-Key": "wrong"}}, 401, "write API key"),
        ({"content": b"{not json", "headers": {"X-API-Key": KEY}}, 400, "not valid JSON"),
        ({"json": sample(value="high")}, 422, "value"),
        ({"json": sample(metric_name="1bad")}, 422, "metric_name"),
        ({"json": [sample()]}, 422, ""),
        ({"json": sample(timestamp=time.time() + 86_400)}, 422, "timestamp"),
        ({"json": LARGE}, 413, "MAX_BODY_BYTES"),
        ({"content": chunks, "headers": {"X-API-Key": KEY}}, 413, "MAX_BODY_BYTES"),
    ],
    ids=[
        "no-key",
        "wrong-key",
        "not-json",
        "bad-value",
        "bad-name",
        "array",
        "future",
        "declared-too-large",
        "chunked-too-large",
    ],
)
def test_everything_else_is_answered_by_the_route(
    hot: tuple[TestClient, Switch], request_args: dict[str, Any], status: int, detail: str
) -> None:
    client, switch = hot
    answer, handed_over = send_both_ways(client, switch, **request_args)
    assert answer[0] == status and detail in str(answer[1])
    assert handed_over == 1
    assert stored(client, "hot") == []


@pytest.mark.parametrize(
    ("precision", "scale", "status", "handed_over"),
    [
        ("ms", 1000, 201, 0),
        ("us", 10**6, 201, 0),
        ("ns", 10**9, 201, 0),
        ("s", 1000, 422, 1),
        ("days", 1, 422, 1),
    ],
)
def test_precision_both_ways(
    hot: tuple[TestClient, Switch], precision: str, scale: int, status: int, handed_over: int
) -> None:
    """Numeric timestamps in `precision`: plain ones on the hot path; a number that is no time
    in seconds (422 naming `precision`) and an unknown precision through the route."""
    client, switch = hot
    stamp = int(now_s() * scale)
    request = {"json": sample(timestamp=stamp), "params": {"precision": precision}}
    answer, handed = send_both_ways(client, switch, **request)
    assert answer[0] == status and handed == handed_over
    if status == 422:
        assert "precision" in str(answer[1])
    else:
        assert stored(client, "hot")


def test_refusals_of_the_commit_answer_as_the_route_does(
    hot: tuple[TestClient, Switch], database_url: str
) -> None:
    client, switch = hot
    for host in ("a", "b"):  # max_series_per_metric=2: a third series is refused at commit
        assert send_both_ways(client, switch, json=sample(labels={"host": host}))[0][0] == 201
    (status, body, _, _), handed_over = send_both_ways(
        client, switch, json=sample(labels={"host": "c"})
    )
    assert status == 429 and "hot" in str(body) and handed_over == 0

    # Into a rollup bucket whose raw data retention has dropped: refused by the store, inside the
    # commit (docs/rollups-and-retention.md#writes-older-than-raw-retention).
    old = time.time() - 3 * 3600
    written = client.post(
        "/metrics/ingest",
        json={"metric_name": "short", "value": 1.0, "timestamp": old},
        headers={"X-API-Key": KEY},
    )
    assert written.status_code == 201
    policy = client.put("/retention/short", json={"raw": "1h"}, headers={"X-API-Key": KEY})
    assert policy.status_code == 200
    run_inline(database_url, "retention")
    late = {"metric_name": "short", "value": 2.0, "timestamp": old + 1}
    (status, body, _, _), handed_over = send_both_ways(client, switch, json=late)
    assert status == 422 and "already holds data whose raw samples are not kept" in str(body)
    assert handed_over == 0

    # Older than every retention of its metric: not stored, and said so.
    short = {kind: "1h" for kind in ("raw", "1m", "5m", "1h")}
    policy = client.put("/retention/gone", json=short, headers={"X-API-Key": KEY})
    assert policy.status_code == 200
    gone = {"metric_name": "gone", "value": 2.0, "timestamp": old}
    (status, body, _, _), handed_over = send_both_ways(client, switch, json=gone)
    assert (status, body) == (
        201,
        {"status": "ok", "raw": 0, "rollups_only": 0, "beyond_retention": 1},
    )
    assert handed_over == 0


def test_hot_path_requests_are_counted_and_logged_like_the_route(
    hot: tuple[TestClient, Switch],
) -> None:
    client, switch = hot
    switch.on()
    headers = {"X-API-Key": KEY}
    for _ in range(3):
        assert client.post("/metrics/ingest", json=sample(), headers=headers).status_code == 201
    for host, status in (("x", 201), ("y", 429)):  # the third series is over the limit
        answer = client.post("/metrics/ingest", json=sample(labels={"host": host}), headers=headers)
        assert answer.status_code == status
    assert switch.handed_over == 0
    found = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(client.get("/metrics", headers=headers).text)
        for s in family.samples
    }
    route = (("method", "POST"), ("route", "/metrics/ingest"))
    assert found["metrics_http_requests_total", (*route, ("status", "201"))] == 4
    assert found["metrics_http_requests_total", (*route, ("status", "429"))] == 1
    assert found["metrics_http_request_duration_seconds_count", route] == 5
    reason = (("reason", "cardinality"), ("route", "/metrics/ingest"))
    assert found["metrics_rejected_writes_total", reason] == 1
    assert found["metrics_ingested_samples_total", ()] == 4
    assert found["metrics_http_requests_in_progress", ()] == 1  # the scrape itself


def test_the_hot_path_runs_only_while_the_app_does(database_url: str) -> None:
    app = create_app(test_settings(database_url))
    assert app.hot_ingest is None  # not started: the route answers (and says why)
    with TestClient(app) as client:
        assert app.hot_ingest is not None
        assert client.post("/metrics/ingest", json=sample()).status_code == 201
    assert app.hot_ingest is None
