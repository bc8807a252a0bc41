"""Large raw answers are streamed in chunks and carry exactly what a plain answer would."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient

from app.api.routes.query import STREAM_ABOVE_POINTS


def test_large_raw_answers_stream_the_same_json(client: TestClient) -> None:
    count = STREAM_ABOVE_POINTS + 12_345
    start = int(time.time()) - 86_400
    stamps = [start + i for i in range(count)]
    series = [
        {
            "metric_name": "big",
            "labels": {"host": h},
            "timestamps": stamps,
            "values": [float(i) for i in range(count)],
        }
        for h in ("a", "b")
    ]
    for entry in series:  # one request each: together they exceed MAX_BATCH
        assert client.post("/backfill/import", json={"series": [entry]}).status_code == 201
    params = {"metric_name": "big", "start_time": start, "end_time": start + count, "limit": 10**6}
    big = client.get("/query/raw", params=params)
    assert big.status_code == 200
    assert "content-length" not in big.headers  # streamed
    body = big.json()
    head = ["metric_name", "start_time", "end_time", "raw_retained_from"]
    assert list(body) == [*head, "series", "truncated"]
    assert body["truncated"] is False
    assert [s["labels"] for s in body["series"]] == [{"host": "a"}, {"host": "b"}]
    for answer in body["series"]:
        assert len(answer["points"]) == count
        assert answer["points"][STREAM_ABOVE_POINTS]["value"] == float(STREAM_ABOVE_POINTS)
        assert answer["points"][-1]["timestamp"].endswith("Z")
    # A small answer of the same query is the plain JSON, and agrees point for point.
    small = client.get("/query/raw", params={**params, "label": "host:a", "limit": 1000})
    assert "content-length" in small.headers
    assert small.json()["truncated"] is True
    assert [small.json()[key] for key in head] == [body[key] for key in head]
    assert small.json()["series"][0]["points"] == body["series"][0]["points"][:1000]
