"""POST /metrics/ingest: acceptance, time formats, validation (table-driven), last write wins.

The many table-driven cases run against `shared_client`: one app per backend on one database for
the whole module (cheap), so each case writes only under its own metric name, and a rejected case
checks that the catalogue did not change. Cases that need an empty database use `client`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

T0 = "2025-12-03T12:00:00Z"
T0_S = 1_764_763_200  # T0 in epoch seconds
WINDOW = {"start_time": "2025-12-03T11:00:00Z", "end_time": "2025-12-03T13:00:00Z"}


def iso_ms(ms: int) -> str:
    """Epoch milliseconds -> RFC 3339 in UTC, formatted as answers are (`.250Z` only if needed)."""
    seconds, millis = divmod(ms, 1000)
    base = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{millis:03d}Z" if millis else f"{base}Z"


def parse_ms(text: str) -> int:
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return round(parsed.timestamp() * 1000)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def ingest(client: TestClient, **sample: Any) -> Any:
    return client.post("/metrics/ingest", json=sample)


def raw(client: TestClient, metric: str, **params: Any) -> dict[str, Any]:
    answer = client.get("/query/raw", params={"metric_name": metric, **params})
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def points(
    client: TestClient, metric: str, **params: Any
) -> list[tuple[dict[str, str], str, float]]:
    """Every (labels, timestamp, value) of a metric, in answer order."""
    body = raw(client, metric, **{**WINDOW, **params})
    return [(s["labels"], p["timestamp"], p["value"]) for s in body["series"] for p in s["points"]]


def names(client: TestClient) -> list[str]:
    answer = client.get("/metrics/names")
    assert answer.status_code == 200
    return answer.json()["names"]  # type: ignore[no-any-return]


@pytest.fixture
def metric() -> str:
    """A metric name no other test uses."""
    return f"m_{uuid.uuid4().hex[:12]}"


# -- acceptance -----------------------------------------------------------------------------


def test_ingest_answers_201_and_stores_the_sample(client: TestClient) -> None:
    answer = ingest(
        client,
        metric_name="cpu_usage",
        value=75.5,
        timestamp=T0,
        labels={"host": "server1", "region": "us-west"},
    )
    assert answer.status_code == 201
    assert answer.json()["status"] == "ok"
    assert points(client, "cpu_usage") == [({"host": "server1", "region": "us-west"}, T0, 75.5)]
    assert names(client) == ["cpu_usage"]


def test_timestamp_is_optional_and_defaults_to_server_time(
    shared_client: TestClient, metric: str
) -> None:
    before = now_ms()
    answer = ingest(shared_client, metric_name=metric, value=1.0, labels={"host": "a"})
    after = now_ms()
    assert answer.status_code == 201
    body = raw(shared_client, metric)  # default range: the last hour up to now
    [series] = body["series"]
    [point] = series["points"]
    assert point["value"] == 1.0
    assert before - 1 <= parse_ms(point["timestamp"]) <= after + 1


def test_labels_are_optional(shared_client: TestClient, metric: str) -> None:
    assert ingest(shared_client, metric_name=metric, value=2, timestamp=T0).status_code == 201
    assert points(shared_client, metric) == [({}, T0, 2.0)]


def test_null_timestamp_and_null_labels_mean_defaults(
    shared_client: TestClient, metric: str
) -> None:
    before = now_ms()
    answer = ingest(shared_client, metric_name=metric, value=3, timestamp=None, labels=None)
    assert answer.status_code == 201
    [series] = raw(shared_client, metric)["series"]
    assert series["labels"] == {}
    [point] = series["points"]
    assert parse_ms(point["timestamp"]) >= before - 1


def test_integer_values_and_negative_values_are_numbers(
    shared_client: TestClient, metric: str
) -> None:
    assert ingest(shared_client, metric_name=metric, value=-7, timestamp=T0_S).status_code == 201
    assert (
        ingest(shared_client, metric_name=metric, value=1e100, timestamp=T0_S + 1).status_code
        == 201
    )
    assert (
        ingest(shared_client, metric_name=metric, value=-0.125, timestamp=T0_S + 2).status_code
        == 201
    )
    assert [v for _, _, v in points(shared_client, metric)] == [-7.0, 1e100, -0.125]


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        pytest.param("2025-12-03T12:00:00Z", "2025-12-03T12:00:00Z", id="rfc3339-Z"),
        pytest.param("2025-12-03T14:00:00+02:00", "2025-12-03T12:00:00Z", id="offset-plus-2h"),
        pytest.param("2025-12-03T07:30:00-04:30", "2025-12-03T12:00:00Z", id="offset-minus-4h30"),
        pytest.param("2025-12-04T01:00:00+13:00", "2025-12-03T12:00:00Z", id="offset-day-change"),
        pytest.param("2025-12-03T12:00:00", "2025-12-03T12:00:00Z", id="no-offset-is-utc"),
        pytest.param("2025-12-03T12:00:00+00:00", "2025-12-03T12:00:00Z", id="offset-zero"),
        pytest.param("2025-12-03T12:00:00.250Z", "2025-12-03T12:00:00.250Z", id="millis"),
        pytest.param(
            "2025-12-03T13:00:00.007+01:00", "2025-12-03T12:00:00.007Z", id="millis-offset"
        ),
        pytest.param(T0_S, "2025-12-03T12:00:00Z", id="epoch-int"),
        pytest.param(T0_S + 0.25, "2025-12-03T12:00:00.250Z", id="epoch-float-ms"),
        pytest.param(T0_S + 0.001, "2025-12-03T12:00:00.001Z", id="epoch-float-1ms"),
        pytest.param(T0_S + 59.999, "2025-12-03T12:00:59.999Z", id="epoch-float-999ms"),
        pytest.param(str(T0_S), "2025-12-03T12:00:00Z", id="epoch-numeric-string"),
        pytest.param(f"{T0_S}.5", "2025-12-03T12:00:00.500Z", id="epoch-numeric-string-frac"),
    ],
)
def test_time_formats_are_stored_as_the_right_instant(
    shared_client: TestClient, metric: str, sent: object, stored: str
) -> None:
    answer = ingest(shared_client, metric_name=metric, value=1.5, timestamp=sent)
    assert answer.status_code == 201, answer.text
    assert points(shared_client, metric) == [({}, stored, 1.5)]


def test_timestamp_five_minutes_ahead_is_accepted(shared_client: TestClient, metric: str) -> None:
    ahead = now_ms() + 5 * 60_000
    answer = ingest(shared_client, metric_name=metric, value=9, timestamp=iso_ms(ahead))
    assert answer.status_code == 201, answer.text
    body = raw(
        shared_client, metric, start_time=iso_ms(ahead - 1000), end_time=iso_ms(ahead + 1000)
    )
    assert body["series"] == [
        {"labels": {}, "points": [{"timestamp": iso_ms(ahead), "value": 9.0}]}
    ]


@pytest.mark.parametrize(
    "stamp",
    [
        pytest.param(lambda now: iso_ms(now + 11 * 60_000), id="iso-11min-ahead"),
        pytest.param(lambda now: (now + 11 * 60_000) / 1000, id="epoch-11min-ahead"),
        pytest.param(lambda now: iso_ms(now + 86_400_000), id="iso-1day-ahead"),
    ],
)
def test_timestamp_beyond_max_future_skew_is_rejected(
    shared_client: TestClient, metric: str, stamp: Callable[[int], object]
) -> None:
    answer = ingest(shared_client, metric_name=metric, value=9, timestamp=stamp(now_ms()))
    assert answer.status_code == 422
    detail = answer.json()["detail"]
    assert "timestamp" in detail
    assert "MAX_FUTURE_SKEW" in detail
    assert metric not in names(shared_client)


def test_max_future_skew_is_configurable(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_future_skew="1m")
    now = now_ms()
    assert (
        ingest(client, metric_name="m", value=1, timestamp=iso_ms(now + 2 * 60_000)).status_code
        == 422
    )
    assert (
        ingest(client, metric_name="m", value=1, timestamp=iso_ms(now + 30_000)).status_code == 201
    )


# -- validation -----------------------------------------------------------------------------

LONG = "a" * 256
OK_SAMPLE: dict[str, Any] = {"metric_name": "m", "value": 1.0, "timestamp": T0}


def sample(**changes: Any) -> dict[str, Any]:
    """OK_SAMPLE with fields replaced; a value of ... drops the field."""
    out = {**OK_SAMPLE, **changes}
    return {k: v for k, v in out.items() if v is not ...}


# (body, expected status, fragments the detail must contain). bytes are sent as they are.
INVALID: list[Any] = [
    pytest.param(sample(metric_name=...), 422, ["metric_name"], id="metric-missing"),
    pytest.param(sample(metric_name=""), 422, ["metric_name"], id="metric-empty"),
    pytest.param(sample(metric_name="1cpu"), 422, ["metric_name"], id="metric-leading-digit"),
    pytest.param(sample(metric_name="cpu-usage"), 422, ["metric_name"], id="metric-dash"),
    pytest.param(sample(metric_name="cpu usage"), 422, ["metric_name"], id="metric-space"),
    pytest.param(sample(metric_name="cpu.usage"), 422, ["metric_name"], id="metric-dot"),
    pytest.param(sample(metric_name="cpü"), 422, ["metric_name"], id="metric-non-ascii"),
    pytest.param(sample(metric_name=LONG), 422, ["metric_name", "255"], id="metric-256-chars"),
    pytest.param(sample(metric_name=5), 422, ["metric_name"], id="metric-number"),
    pytest.param(sample(metric_name=None), 422, ["metric_name"], id="metric-null"),
    pytest.param(sample(labels={"1host": "a"}), 422, ["labels", "1host"], id="label-name-digit"),
    pytest.param(sample(labels={"ho-st": "a"}), 422, ["labels", "ho-st"], id="label-name-dash"),
    pytest.param(sample(labels={"": "a"}), 422, ["labels"], id="label-name-empty"),
    pytest.param(sample(labels={"host": 5}), 422, ["labels.host"], id="label-value-number"),
    pytest.param(sample(labels={"host": None}), 422, ["labels.host"], id="label-value-null"),
    pytest.param(sample(labels={"host": True}), 422, ["labels.host"], id="label-value-bool"),
    pytest.param(sample(labels={"host": ["a"]}), 422, ["labels.host"], id="label-value-array"),
    pytest.param(
        sample(labels={"host": "x" * 1025}), 422, ["labels.host", "1024"], id="label-value-1025"
    ),
    pytest.param(
        sample(labels={f"l{i}": "v" for i in range(33)}), 422, ["labels", "32"], id="33-labels"
    ),
    pytest.param(sample(labels=["host", "a"]), 422, ["labels"], id="labels-array"),
    pytest.param(sample(labels="host=a"), 422, ["labels"], id="labels-string"),
    pytest.param(sample(value=...), 422, ["value"], id="value-missing"),
    pytest.param(sample(value="1.5"), 422, ["value"], id="value-string"),
    pytest.param(sample(value=True), 422, ["value"], id="value-bool"),
    pytest.param(sample(value=None), 422, ["value"], id="value-null"),
    pytest.param(sample(value=[1]), 422, ["value"], id="value-array"),
    pytest.param(b'{"metric_name":"m","value":NaN}', 400, ["body", "JSON"], id="value-NaN"),
    pytest.param(b'{"metric_name":"m","value":Infinity}', 400, ["body", "JSON"], id="value-Inf"),
    pytest.param(b'{"metric_name":"m","value":1e999}', 400, ["body", "JSON"], id="value-1e999"),
    pytest.param(sample(timestamp="yesterday"), 422, ["timestamp"], id="ts-words"),
    pytest.param(sample(timestamp="2025-13-03T12:00:00Z"), 422, ["timestamp"], id="ts-month-13"),
    pytest.param(sample(timestamp="2025-12-03T25:00:00Z"), 422, ["timestamp"], id="ts-hour-25"),
    pytest.param(sample(timestamp=""), 422, ["timestamp"], id="ts-empty"),
    pytest.param(sample(timestamp="NaN"), 422, ["timestamp"], id="ts-nan-string"),
    pytest.param(sample(timestamp="inf"), 422, ["timestamp"], id="ts-inf-string"),
    pytest.param(sample(timestamp=True), 422, ["timestamp"], id="ts-bool"),
    pytest.param(sample(timestamp={"s": 1}), 422, ["timestamp"], id="ts-object"),
    pytest.param(sample(timestamp=[T0]), 422, ["timestamp"], id="ts-array"),
    pytest.param(sample(timestamp=1e12), 422, ["timestamp"], id="ts-epoch-year-33658"),
    pytest.param(sample(timestamp=-1e12), 422, ["timestamp"], id="ts-epoch-before-year-1"),
    pytest.param(b"not json", 400, ["body", "JSON"], id="body-not-json"),
    pytest.param(b"", 400, ["body"], id="body-empty"),
    pytest.param(b'{"metric_name": "m", "value": 1', 400, ["body"], id="body-truncated"),
    pytest.param([OK_SAMPLE], 422, ["body"], id="body-array"),
    pytest.param("m", 422, ["body"], id="body-string"),
    pytest.param(1.5, 422, ["body"], id="body-number"),
    pytest.param(b"null", 422, ["body"], id="body-null"),
]


@pytest.mark.parametrize(("body", "status", "fragments"), INVALID)
def test_invalid_sample_is_rejected_and_nothing_written(
    shared_client: TestClient, body: object, status: int, fragments: list[str]
) -> None:
    before = names(shared_client)
    if isinstance(body, bytes):
        answer = shared_client.post(
            "/metrics/ingest", content=body, headers={"content-type": "application/json"}
        )
    else:
        answer = shared_client.post("/metrics/ingest", json=body)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json"
    detail = answer.json()["detail"]
    assert isinstance(detail, str)
    for fragment in fragments:
        assert fragment in detail
    after = names(shared_client)
    assert after == before
    assert "m" not in after  # no case wrote its sample


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"metric_name": "a" * 255}, id="metric-255-chars"),
        pytest.param({"metric_name": "_x:y_9"}, id="metric-underscore-colon"),
        pytest.param({"metric_name": ":colon_first"}, id="metric-colon-first"),
        pytest.param({"labels": {"host": "x" * 1024}}, id="label-value-1024"),
        pytest.param({"labels": {f"l{i}": "v" for i in range(32)}}, id="32-labels"),
        pytest.param({"labels": {"_private": "a", "A9": ""}}, id="label-name-edge"),
        pytest.param({"labels": {"path": '/a b/ü"q"?x=1'}}, id="label-value-any-text"),
    ],
)
def test_boundary_samples_are_accepted(
    shared_client: TestClient, metric: str, changes: dict[str, Any]
) -> None:
    body = sample(**{"metric_name": metric, **changes})
    answer = shared_client.post("/metrics/ingest", json=body)
    assert answer.status_code == 201, answer.text
    assert points(shared_client, body["metric_name"]) == [(body.get("labels", {}), T0, 1.0)]


# -- last write wins ------------------------------------------------------------------------


def test_same_series_and_timestamp_twice_keeps_the_last_value(
    shared_client: TestClient, metric: str
) -> None:
    for value in (1.0, 2.0, 3.5):
        assert (
            ingest(
                shared_client, metric_name=metric, value=value, timestamp=T0, labels={"h": "a"}
            ).status_code
            == 201
        )
    assert points(shared_client, metric) == [({"h": "a"}, T0, 3.5)]


def test_same_instant_in_other_formats_is_the_same_timestamp(
    shared_client: TestClient, metric: str
) -> None:
    assert ingest(shared_client, metric_name=metric, value=1, timestamp=T0).status_code == 201
    assert ingest(shared_client, metric_name=metric, value=2, timestamp=T0_S).status_code == 201
    assert (
        ingest(
            shared_client, metric_name=metric, value=3, timestamp="2025-12-03T13:00:00+01:00"
        ).status_code
        == 201
    )
    assert points(shared_client, metric) == [({}, T0, 3.0)]


def test_last_write_wins_within_one_backfill(shared_client: TestClient, metric: str) -> None:
    items = [
        {"metric_name": metric, "value": 1, "timestamp": T0, "labels": {"h": "a"}},
        {"metric_name": metric, "value": 5, "timestamp": T0_S + 1, "labels": {"h": "a"}},
        {"metric_name": metric, "value": 2, "timestamp": T0_S, "labels": {"h": "a"}},
    ]
    answer = shared_client.post("/backfill/import", json={"metrics": items})
    assert answer.status_code == 201, answer.text
    assert points(shared_client, metric) == [
        ({"h": "a"}, T0, 2.0),
        ({"h": "a"}, "2025-12-03T12:00:01Z", 5.0),
    ]


def test_last_write_wins_across_ingest_and_backfill(shared_client: TestClient, metric: str) -> None:
    assert (
        ingest(
            shared_client, metric_name=metric, value=1, timestamp=T0, labels={"h": "a"}
        ).status_code
        == 201
    )
    backfill = {
        "metrics": [{"metric_name": metric, "value": 2, "timestamp": T0, "labels": {"h": "a"}}]
    }
    assert shared_client.post("/backfill/import", json=backfill).status_code == 201
    assert points(shared_client, metric) == [({"h": "a"}, T0, 2.0)]
    assert (
        ingest(
            shared_client, metric_name=metric, value=3, timestamp=T0, labels={"h": "a"}
        ).status_code
        == 201
    )
    assert points(shared_client, metric) == [({"h": "a"}, T0, 3.0)]


def test_label_key_order_does_not_make_another_series(
    shared_client: TestClient, metric: str
) -> None:
    first = {"host": "a", "region": "x", "az": "1"}
    second = {"region": "x", "az": "1", "host": "a"}
    assert (
        ingest(shared_client, metric_name=metric, value=1, timestamp=T0, labels=first).status_code
        == 201
    )
    assert (
        ingest(shared_client, metric_name=metric, value=2, timestamp=T0, labels=second).status_code
        == 201
    )
    later = T0_S + 10
    assert (
        ingest(
            shared_client, metric_name=metric, value=4, timestamp=later, labels=second
        ).status_code
        == 201
    )
    body = raw(shared_client, metric, **WINDOW)
    assert body["series"] == [
        {
            "labels": {"az": "1", "host": "a", "region": "x"},
            "points": [
                {"timestamp": T0, "value": 2.0},
                {"timestamp": "2025-12-03T12:00:10Z", "value": 4.0},
            ],
        }
    ]


def test_different_label_sets_are_different_series(shared_client: TestClient, metric: str) -> None:
    for labels, value in (({"host": "a"}, 1), ({"host": "a", "region": "x"}, 2), ({}, 3)):
        assert (
            ingest(
                shared_client, metric_name=metric, value=value, timestamp=T0, labels=labels
            ).status_code
            == 201
        )
    # Same timestamp, three series: nothing overwrote anything.
    assert sorted(
        (v, tuple(sorted(lab.items()))) for lab, _, v in points(shared_client, metric)
    ) == [
        (1.0, (("host", "a"),)),
        (2.0, (("host", "a"), ("region", "x"))),
        (3.0, ()),
    ]


def test_same_labels_under_other_metric_is_another_series(client: TestClient) -> None:
    assert (
        ingest(client, metric_name="m1", value=1, timestamp=T0, labels={"h": "a"}).status_code
        == 201
    )
    assert (
        ingest(client, metric_name="m2", value=2, timestamp=T0, labels={"h": "a"}).status_code
        == 201
    )
    assert points(client, "m1") == [({"h": "a"}, T0, 1.0)]
    assert points(client, "m2") == [({"h": "a"}, T0, 2.0)]
    assert names(client) == ["m1", "m2"]


def test_far_past_timestamps_are_accepted(shared_client: TestClient, metric: str) -> None:
    old = datetime(2001, 2, 3, 4, 5, 6, tzinfo=UTC)
    assert (
        ingest(shared_client, metric_name=metric, value=1, timestamp=old.timestamp()).status_code
        == 201
    )
    params = {
        "start_time": (old - timedelta(seconds=1)).isoformat(),
        "end_time": (old + timedelta(seconds=1)).isoformat(),
    }
    assert points(shared_client, metric, **params) == [({}, "2001-02-03T04:05:06Z", 1.0)]
