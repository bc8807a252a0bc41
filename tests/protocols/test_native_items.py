"""This service's own JSON through the shared builder: `precision` for numeric timestamps on
every write path (item and columnar JSON, NDJSON, CSV), the hints for a misread precision and for
query parameters, and the bulk reading of item lists checked against the item-by-item one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from protocol_clients import BASE_MS, values_of

from app.protocols.native.items import BatchBuilder, parse_import
from app.timeutil import TimeParseError, format_ms, parse_rfc3339_array, parse_time_ms
from app.validation import InvalidInput, TimeBounds

SCALE = {"s": 0.001, "ms": 1, "us": 1000, "ns": 1_000_000}


@pytest.fixture
def client(shared_client: TestClient) -> TestClient:
    """One app and database per backend for the module: each test writes its own metrics."""
    return shared_client


@pytest.fixture
def db(shared_url: str) -> str:
    return shared_url


def stamp(precision: str, ms: int = BASE_MS) -> int | float:
    return ms // 1000 if precision == "s" else ms * SCALE[precision]


@pytest.mark.parametrize("precision", ["s", "ms", "us", "ns"])
def test_precision_on_every_write_path(client: TestClient, db: str, precision: str) -> None:
    ts = stamp(precision)
    params = {"precision": precision}
    single = {"metric_name": f"p1_{precision}", "value": 1.0, "timestamp": ts}
    assert client.post("/metrics/ingest", json=single, params=params).status_code == 201
    items = [
        {"metric_name": f"p2_{precision}", "value": float(i), "timestamp": ts} for i in range(40)
    ]
    columnar = [{"metric_name": f"p3_{precision}", "timestamps": [ts], "values": [3.0]}]
    answer = client.post(
        "/backfill/import", json={"metrics": items, "series": columnar}, params=params
    )
    assert answer.status_code == 201, answer.text
    ndjson = f'{{"metric_name": "p4_{precision}", "value": 4, "timestamp": {ts}}}\n'
    answer = client.post(
        "/backfill/import",
        content=ndjson,
        params=params,
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert answer.status_code == 201, answer.text
    csv = f"metric_name,value,timestamp\np5_{precision},5,{ts}\n"
    answer = client.post(
        "/backfill/import", content=csv, params=params, headers={"Content-Type": "text/csv"}
    )
    assert answer.status_code == 201, answer.text
    for n in range(1, 6):
        found = values_of(db, f"p{n}_{precision}")
        assert {ts for points in found.values() for ts, _ in points} == {BASE_MS}, n


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/metrics/ingest", {"metric_name": "h", "value": 1, "timestamp": BASE_MS}),
        ("/backfill/import", {"metrics": [{"metric_name": "h", "value": 1, "timestamp": BASE_MS}]}),
        (
            "/backfill/import",
            {"metrics": [{"metric_name": "h", "value": 1, "timestamp": BASE_MS}] * 40},
        ),
        (
            "/backfill/import",
            {"series": [{"metric_name": "h", "timestamps": [BASE_MS], "values": [1]}]},
        ),
    ],
    ids=["ingest", "items", "bulk-items", "columnar"],
)
def test_milliseconds_sent_as_seconds_get_a_hint(
    client: TestClient, path: str, body: dict[str, object]
) -> None:
    answer = client.post(path, json=body)
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"]
    assert f"as epoch milliseconds it is {format_ms(BASE_MS)}" in detail
    assert "send precision=ms" in detail and "timestamp" in detail


def test_nanoseconds_in_csv_get_the_hint(client: TestClient) -> None:
    csv = f"metric_name,value,timestamp\nh,1,{BASE_MS * 1_000_000}\n"
    answer = client.post("/backfill/import", content=csv, headers={"Content-Type": "text/csv"})
    assert answer.status_code == 422 and "send precision=ns" in answer.json()["detail"]


def test_an_unknown_precision_is_422(client: TestClient) -> None:
    answer = client.post(
        "/metrics/ingest", json={"metric_name": "h", "value": 1}, params={"precision": "h"}
    )
    assert answer.status_code == 422 and answer.json()["detail"].startswith("precision")


@pytest.mark.parametrize(
    ("value", "hint"),
    [
        (str(BASE_MS), "as epoch milliseconds it is"),
        (str(BASE_MS * 1000), "as epoch microseconds it is"),
        ("2025-12-03T12:00:00 00:00", "URL-encode it as %2B"),
        ("2025-12-03T12:00:00 0530", "'2025-12-03T12:00:00+0530'"),
    ],
)
def test_query_parameters_get_hints(client: TestClient, value: str, hint: str) -> None:
    answer = client.get("/query/raw", params={"metric_name": "cpu_usage", "start_time": value})
    assert answer.status_code == 422
    detail = answer.json()["detail"]
    assert detail.startswith("start_time: ") and hint in detail, detail


def test_the_bulk_reading_agrees_with_item_by_item() -> None:
    bounds = TimeBounds.starting_now(timedelta(minutes=10))
    items = [
        {
            "metric_name": f"m{i % 3}",
            "value": i * 0.5,
            "timestamp": format_ms(BASE_MS + i * 250),
            **({"labels": {"host": f"h{i % 4}"}} if i % 5 else {}),
        }
        for i in range(100)
    ]
    bulk = parse_import({"metrics": items}, bounds, 1000)
    one_by_one = BatchBuilder(bounds)
    for i, item in enumerate(items):
        one_by_one.add_item(item, f"metrics[{i}].")
    single = one_by_one.build()
    assert [bulk.keys[i] for i in bulk.series_index] == [
        single.keys[i] for i in single.series_index
    ]
    assert bulk.ts.tolist() == single.ts.tolist() and bulk.values.tolist() == single.values.tolist()


def test_the_first_bad_item_is_named_in_a_long_list() -> None:
    bounds = TimeBounds.starting_now(timedelta(minutes=10))
    items: list[object] = [{"metric_name": "m", "value": 1.0, "timestamp": BASE_MS / 1000}] * 50
    items[37] = {"metric_name": "m", "value": "x"}
    with pytest.raises(InvalidInput, match=r"metrics\[37\]\.value"):
        parse_import({"metrics": items}, bounds, 1000)


times = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
)
offsets = st.sampled_from(["Z", "z", "+00:00", "-05:30", "+14:00", "", "+23:59"])
layouts = st.sampled_from(["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dt%H:%M:%S"])


@settings(max_examples=300, deadline=None)
@given(times, offsets, layouts, st.integers(0, 9), st.integers(0, 999_999_999))
def test_rfc3339_in_bulk_agrees_with_the_parser(
    when: datetime, offset: str, layout: str, digits: int, fraction: int
) -> None:
    text = when.strftime(layout)
    if digits:
        text += "." + f"{fraction:09d}"[:digits]
    text += offset
    ms, ok = parse_rfc3339_array([text, "not a time", "2023-02-29T00:00:00Z"])
    assert ok.tolist()[1:] == [False, False]
    try:
        expected = parse_time_ms(text)
    except TimeParseError:
        assert not ok[0], text
        return
    assert ok[0] and int(ms[0]) == expected
    assert np.int64(expected) == ms[0]
