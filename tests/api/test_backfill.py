"""POST /backfill/import: counts, all-or-nothing, MAX_BATCH and MAX_BODY_BYTES, the columnar form.

Most cases run against `shared_client` (one app per backend on one database for the whole module)
and write only under their own metric names; cases with other settings use `make_client`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

T0 = "2025-12-03T12:00:00Z"
T0_S = 1_764_763_200  # T0 in epoch seconds
WINDOW = {"start_time": "2025-12-03T11:00:00Z", "end_time": "2025-12-03T13:00:00Z"}


@pytest.fixture
def metric() -> str:
    """A metric name no other test uses."""
    return f"m_{uuid.uuid4().hex[:12]}"


def parse_ms(text: str) -> int:
    return round(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def backfill(client: TestClient, body: object) -> Any:
    return client.post("/backfill/import", json=body)


def series_of(client: TestClient, metric: str) -> list[dict[str, Any]]:
    answer = client.get("/query/raw", params={"metric_name": metric, **WINDOW})
    assert answer.status_code == 200, answer.text
    return answer.json()["series"]  # type: ignore[no-any-return]


def names(client: TestClient) -> list[str]:
    answer = client.get("/metrics/names")
    assert answer.status_code == 200
    return answer.json()["names"]  # type: ignore[no-any-return]


def item(metric: str, value: float, ts: object = T0, **labels: str) -> dict[str, Any]:
    return {"metric_name": metric, "value": value, "timestamp": ts, "labels": labels}


def at(second: int) -> str:
    """T0 plus some seconds, as it appears in answers."""
    return f"2025-12-03T12:{second // 60:02d}:{second % 60:02d}Z"


# -- success --------------------------------------------------------------------------------


def test_backfill_answers_201_with_the_count_and_stores_every_item(
    shared_client: TestClient, metric: str
) -> None:
    items = [
        item(metric, 1.0, T0, host="a"),
        item(metric, 2.5, T0_S + 60, host="a"),
        item(metric, -3, "2025-12-03T13:02:00+01:00", host="a"),
        {"metric_name": metric, "value": 4, "timestamp": T0_S + 1.5, "labels": {"host": "b"}},
        {"metric_name": metric, "value": 5, "timestamp": "2025-12-03T12:00:30"},
    ]
    answer = backfill(shared_client, {"metrics": items})
    assert answer.status_code == 201, answer.text
    assert answer.json()["imported"] == 5
    assert series_of(shared_client, metric) == [
        {"labels": {}, "points": [{"timestamp": at(30), "value": 5.0}]},
        {
            "labels": {"host": "a"},
            "points": [
                {"timestamp": at(0), "value": 1.0},
                {"timestamp": at(60), "value": 2.5},
                {"timestamp": at(120), "value": -3.0},
            ],
        },
        {
            "labels": {"host": "b"},
            "points": [{"timestamp": "2025-12-03T12:00:01.500Z", "value": 4.0}],
        },
    ]


def test_backfill_items_without_timestamp_get_server_time(
    shared_client: TestClient, metric: str
) -> None:
    answer = backfill(shared_client, {"metrics": [{"metric_name": metric, "value": 7}]})
    assert answer.status_code == 201, answer.text
    assert answer.json()["imported"] == 1
    # The default range is the last hour up to now.
    body = shared_client.get("/query/raw", params={"metric_name": metric}).json()
    assert [p["value"] for s in body["series"] for p in s["points"]] == [7.0]


def test_empty_import_writes_nothing(shared_client: TestClient) -> None:
    before = names(shared_client)
    answer = backfill(shared_client, {"metrics": []})
    assert answer.status_code == 201, answer.text
    assert answer.json()["imported"] == 0
    assert names(shared_client) == before


def test_a_larger_import_is_complete(shared_client: TestClient, metric: str) -> None:
    items = [item(metric, float(i), T0_S + i // 4, host=f"h{i % 4}") for i in range(2000)]
    answer = backfill(shared_client, {"metrics": items})
    assert answer.status_code == 201, answer.text
    assert answer.json()["imported"] == 2000
    series = shared_client.get(
        "/query/raw",
        params={"metric_name": metric, "start_time": T0_S, "end_time": T0_S + 500},
    ).json()["series"]
    assert [s["labels"] for s in series] == [{"host": f"h{k}"} for k in range(4)]
    for k, s in enumerate(series):
        assert [p["value"] for p in s["points"]] == [float(i) for i in range(k, 2000, 4)]


# Doubles whose every bit must survive a bulk write (on PostgreSQL, the binary COPY built by numpy).
EDGE_VALUES = [1e100, -1e100, 5e-324, -5e-324, 2.2250738585072014e-308, -0.0, 0.1, 1 / 3, -7.5]


def test_bulk_writes_store_every_value_and_timestamp_exactly(
    shared_client: TestClient, metric: str
) -> None:
    """2,400 new rows: above COPY_MIN_ROWS, so PostgreSQL takes the COPY path."""
    stamps = [T0_S * 1000 - 3_000_000 + 2_501 * i for i in range(1200)]  # ms, not whole seconds
    values = [EDGE_VALUES[i % len(EDGE_VALUES)] / (1 + i % 7) for i in range(1200)]
    body = {
        "series": [
            {
                "metric_name": metric,
                "labels": {"host": host},
                "timestamps": [t / 1000 for t in stamps],
                "values": values,
            }
            for host in ("a", "b")
        ]
    }
    answer = backfill(shared_client, body)
    assert answer.status_code == 201, answer.text
    for found in series_of(shared_client, metric):
        stored = [(parse_ms(p["timestamp"]), p["value"]) for p in found["points"]]
        assert stored == list(zip(stamps, values, strict=True))  # (SQLite keeps -0.0 as 0.0)


# -- all or nothing -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        pytest.param({"metric_name": "9lives", "value": 1}, "metric_name", id="metric-name"),
        pytest.param({"metric_name": "ok", "value": "1"}, "value", id="value-string"),
        pytest.param({"metric_name": "ok"}, "value", id="value-missing"),
        pytest.param({"metric_name": "ok", "value": 1, "timestamp": "soon"}, "timestamp", id="ts"),
        pytest.param(
            {"metric_name": "ok", "value": 1, "timestamp": "2999-01-01T00:00:00Z"},
            "MAX_FUTURE_SKEW",
            id="ts-future",
        ),
        pytest.param(
            {"metric_name": "ok", "value": 1, "labels": {"host": "x" * 1025}},
            "labels.host",
            id="label-value-long",
        ),
        pytest.param(
            {"metric_name": "ok", "value": 1, "labels": {"a-b": "x"}}, "labels", id="label"
        ),
        pytest.param(5, "metrics[3]", id="not-an-object"),
    ],
)
def test_one_bad_item_rejects_the_whole_import(
    shared_client: TestClient, metric: str, bad: object, reason: str
) -> None:
    other = f"{metric}_other"
    if isinstance(bad, dict) and bad.get("metric_name") == "ok":
        bad = {**bad, "metric_name": metric}
    assert backfill(shared_client, {"metrics": [item(metric, 100.0, T0, h="a")]}).status_code == 201
    items = [
        item(metric, 1.0, T0, h="a"),  # would overwrite the existing point
        item(other, 2.0, T0, h="b"),  # would create a metric
        item(metric, 3.0, T0_S + 60, h="c"),  # would create a series
        bad,
        item(metric, 5.0, T0_S + 120, h="a"),
    ]
    answer = backfill(shared_client, {"metrics": items})
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"]
    assert "metrics[3]" in detail
    assert reason in detail
    for index in (0, 1, 2, 4):
        assert f"metrics[{index}]" not in detail
    assert series_of(shared_client, metric) == [
        {"labels": {"h": "a"}, "points": [{"timestamp": T0, "value": 100.0}]}
    ]
    assert other not in names(shared_client)


def test_one_bad_value_in_columnar_form_rejects_the_whole_import(
    shared_client: TestClient, metric: str
) -> None:
    body = {
        "series": [
            {"metric_name": metric, "labels": {"h": "a"}, "timestamps": [T0_S], "values": [1.0]},
            {
                "metric_name": metric,
                "labels": {"h": "b"},
                "timestamps": [T0_S, T0_S + 1, T0_S + 2],
                "values": [1.0, 2.0, True],
            },
        ]
    }
    answer = backfill(shared_client, body)
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"]
    assert "series[1]" in detail
    assert "values[2]" in detail
    assert metric not in names(shared_client)


# -- limits ---------------------------------------------------------------------------------


def test_max_batch_is_inclusive_and_one_more_is_413(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_batch=10)
    ten = [item("fits", float(i), T0_S + i) for i in range(10)]
    answer = backfill(client, {"metrics": ten})
    assert answer.status_code == 201, answer.text
    assert answer.json()["imported"] == 10
    eleven = [item("too_many", float(i), T0_S + i) for i in range(11)]
    answer = backfill(client, {"metrics": eleven})
    assert answer.status_code == 413, answer.text
    detail = answer.json()["detail"]
    assert "MAX_BATCH" in detail
    assert "10" in detail
    assert names(client) == ["fits"]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(
            {
                "series": [
                    {"metric_name": "too_many", "timestamps": list(range(11)), "values": [1] * 11}
                ]
            },
            id="columnar-11",
        ),
        pytest.param(
            {
                "series": [
                    {"metric_name": "too_many", "timestamps": list(range(6)), "values": [1] * 6},
                    {
                        "metric_name": "too_many",
                        "labels": {"h": "b"},
                        "timestamps": list(range(5)),
                        "values": [1] * 5,
                    },
                ]
            },
            id="columnar-6-plus-5",
        ),
        pytest.param(
            {
                "metrics": [item("too_many", float(i), T0_S + i) for i in range(6)],
                "series": [
                    {"metric_name": "too_many", "timestamps": list(range(5)), "values": [1] * 5}
                ],
            },
            id="items-6-plus-columnar-5",
        ),
    ],
)
def test_max_batch_counts_samples_in_every_form(
    make_client: Callable[..., TestClient], body: dict[str, Any]
) -> None:
    client = make_client(max_batch=10)
    answer = backfill(client, body)
    assert answer.status_code == 413, answer.text
    assert "MAX_BATCH" in answer.json()["detail"]
    assert names(client) == []


def _body_of_size(size: int) -> bytes:
    """An import body of exactly `size` bytes (padding goes into a label value)."""
    base = {"metrics": [{"metric_name": "sized", "value": 1, "timestamp": T0, "labels": {"p": ""}}]}
    pad = size - len(orjson.dumps(base))
    base["metrics"][0]["labels"]["p"] = "x" * pad
    raw = orjson.dumps(base)
    assert len(raw) == size
    return raw


def test_max_body_bytes_is_inclusive_and_one_more_is_413(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(max_body_bytes=1000)
    headers = {"content-type": "application/json"}
    answer = client.post("/backfill/import", content=_body_of_size(1001), headers=headers)
    assert answer.status_code == 413, answer.text
    assert "MAX_BODY_BYTES" in answer.json()["detail"]
    assert names(client) == []
    answer = client.post("/backfill/import", content=_body_of_size(1000), headers=headers)
    assert answer.status_code == 201, answer.text
    assert answer.json()["imported"] == 1
    assert names(client) == ["sized"]


def test_max_body_bytes_holds_without_content_length(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(max_body_bytes=1000)
    raw = _body_of_size(3000)

    def chunks() -> Iterator[bytes]:  # a generator body is sent chunked, with no Content-Length
        for start in range(0, len(raw), 256):
            yield raw[start : start + 256]

    answer = client.post(
        "/backfill/import", content=chunks(), headers={"content-type": "application/json"}
    )
    assert answer.status_code == 413, answer.text
    assert "MAX_BODY_BYTES" in answer.json()["detail"]
    assert names(client) == []


def test_max_body_bytes_applies_to_single_ingest(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_body_bytes=1000)
    sample = {"metric_name": "big", "value": 1, "timestamp": T0, "labels": {"p": "x" * 1000}}
    answer = client.post("/metrics/ingest", json=sample)
    assert answer.status_code == 413, answer.text
    assert "MAX_BODY_BYTES" in answer.json()["detail"]
    assert names(client) == []


# -- columnar form --------------------------------------------------------------------------


def test_columnar_form_stores_the_same_as_the_item_form(
    shared_client: TestClient, metric: str
) -> None:
    by_items, by_columns = f"{metric}_items", f"{metric}_columns"
    data = [
        ({"host": "a", "dc": "x"}, [T0, T0_S + 60.25, "2025-12-03T13:05:00+01:00"], [1.5, -2.0, 3]),
        ({}, [T0_S + 1, str(T0_S + 2)], [10, 20.125]),
        ({"host": "b"}, [T0_S + 7], [0.0]),
    ]
    items = [
        {"metric_name": by_items, "labels": labels, "timestamp": ts, "value": value}
        for labels, stamps, values in data
        for ts, value in zip(stamps, values, strict=True)
    ]
    columns = [
        {"metric_name": by_columns, "labels": labels, "timestamps": stamps, "values": values}
        for labels, stamps, values in data
    ]
    first = backfill(shared_client, {"metrics": items})
    second = backfill(shared_client, {"series": columns})
    assert first.status_code == second.status_code == 201, (first.text, second.text)
    assert first.json()["imported"] == second.json()["imported"] == 6
    stored = series_of(shared_client, by_items)
    assert stored == series_of(shared_client, by_columns)
    assert stored == [
        {
            "labels": {},
            "points": [{"timestamp": at(1), "value": 10.0}, {"timestamp": at(2), "value": 20.125}],
        },
        {
            "labels": {"dc": "x", "host": "a"},
            "points": [
                {"timestamp": at(0), "value": 1.5},
                {"timestamp": "2025-12-03T12:01:00.250Z", "value": -2.0},
                {"timestamp": at(300), "value": 3.0},
            ],
        },
        {"labels": {"host": "b"}, "points": [{"timestamp": at(7), "value": 0.0}]},
    ]


def test_items_and_columns_in_one_request(shared_client: TestClient, metric: str) -> None:
    body = {
        "metrics": [item(metric, 1.0, T0_S, h="a")],
        "series": [
            {"metric_name": metric, "labels": {"h": "a"}, "timestamps": [T0_S + 1], "values": [2]}
        ],
    }
    answer = backfill(shared_client, body)
    assert answer.status_code == 201, answer.text
    assert answer.json()["imported"] == 2
    assert series_of(shared_client, metric) == [
        {
            "labels": {"h": "a"},
            "points": [{"timestamp": at(0), "value": 1.0}, {"timestamp": at(1), "value": 2.0}],
        }
    ]


@pytest.mark.parametrize(
    ("entries", "where"),
    [
        pytest.param(
            [{"timestamps": [T0_S, T0_S + 1], "values": [1.0]}], "series[0]", id="short-values"
        ),
        pytest.param(
            [{"timestamps": [T0_S], "values": [1.0, 2.0]}], "series[0]", id="short-stamps"
        ),
        pytest.param([{"values": [1.0]}], "series[0]", id="no-timestamps"),
        pytest.param([{"timestamps": [T0_S]}], "series[0]", id="no-values"),
        pytest.param([{"timestamps": T0_S, "values": 1.0}], "series[0]", id="scalars"),
        pytest.param(
            [{"timestamps": [T0_S], "values": [1.0]}, {"timestamps": [T0_S], "values": []}],
            "series[1]",
            id="second-entry",
        ),
    ],
)
def test_columnar_length_mismatch_is_422_naming_the_entry(
    shared_client: TestClient, metric: str, entries: list[dict[str, Any]], where: str
) -> None:
    body = {"series": [{"metric_name": metric, **entry} for entry in entries]}
    answer = backfill(shared_client, body)
    assert answer.status_code == 422, answer.text
    assert where in answer.json()["detail"]
    assert metric not in names(shared_client)


# -- malformed requests ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        pytest.param({}, 422, "metrics", id="empty-object"),
        pytest.param({"metric": [item("m", 1)]}, 422, "metrics", id="misspelt-key"),
        pytest.param({"metrics": None}, 422, "metrics", id="metrics-null"),
        pytest.param({"metrics": item("m", 1)}, 422, "metrics", id="metrics-object"),
        pytest.param({"metrics": "m"}, 422, "metrics", id="metrics-string"),
        pytest.param({"series": {"metric_name": "m"}}, 422, "series", id="series-object"),
        pytest.param({"series": [5]}, 422, "series[0]", id="series-entry-number"),
        pytest.param(
            {"series": [{"metric_name": "1m", "timestamps": [], "values": []}]},
            422,
            "series[0].metric_name",
            id="series-metric-name",
        ),
        pytest.param([item("m", 1)], 422, "body", id="body-array"),
        pytest.param(b"metrics", 400, "body", id="body-not-json"),
        pytest.param(b'{"metrics": [NaN]}', 400, "body", id="body-nan"),
    ],
)
def test_malformed_import_is_rejected(
    shared_client: TestClient, body: object, status: int, fragment: str
) -> None:
    before = names(shared_client)
    if isinstance(body, bytes):
        answer = shared_client.post(
            "/backfill/import", content=body, headers={"content-type": "application/json"}
        )
    else:
        answer = backfill(shared_client, body)
    assert answer.status_code == status, answer.text
    assert fragment in answer.json()["detail"]
    assert names(shared_client) == before
