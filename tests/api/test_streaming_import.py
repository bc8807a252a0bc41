"""POST /backfill/import with NDJSON and CSV bodies: streamed line by line, committed in chunks.

Most cases run against `shared_client` and write under their own metric names; cases with other
settings (MAX_BATCH, MAX_BODY_BYTES, cardinality limits) use `make_client`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from app.api.streaming_import import LineTooLong, split_lines

T0 = "2025-12-03T12:00:00Z"
T0_S = 1_764_763_200  # T0 in epoch seconds
WINDOW = {"start_time": "2025-12-03T11:00:00Z", "end_time": "2025-12-03T13:00:00Z"}
NDJSON = {"Content-Type": "application/x-ndjson"}
CSV = {"Content-Type": "text/csv"}


def raw_only(n: int) -> dict[str, int]:
    """The counts of an answer whose `n` samples were all stored raw."""
    return {"raw": n, "rollups_only": 0, "beyond_retention": 0}


def new_metric() -> str:
    return f"m_{uuid.uuid4().hex[:12]}"


def ndjson(items: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(item) + b"\n" for item in items)


def post(
    client: TestClient, body: bytes | Iterator[bytes], headers: dict[str, str], **params: Any
) -> Any:
    return client.post("/backfill/import", content=body, headers=headers, params=params)


def series_of(client: TestClient, metric: str) -> list[dict[str, Any]]:
    answer = client.get("/query/raw", params={"metric_name": metric, **WINDOW})
    assert answer.status_code == 200, answer.text
    return answer.json()["series"]  # type: ignore[no-any-return]


def points(client: TestClient, metric: str) -> int:
    answer = client.get("/query/raw", params={"metric_name": metric, **WINDOW})
    if answer.status_code == 404:
        return 0
    return sum(len(s["points"]) for s in answer.json()["series"])


def samples(metric: str, n: int) -> list[dict[str, Any]]:
    return [
        {"metric_name": metric, "value": float(i), "timestamp": T0_S + i, "labels": {"h": "a"}}
        for i in range(n)
    ]


# -- same data as the item form ---------------------------------------------------------------

ROWS = [  # value, timestamp, host, region ("" = label absent)
    (1.0, T0, "a", "us"),
    (2.5, T0_S + 60, "a", "us"),
    (3.0, "2025-12-03T13:00:30+01:00", "b", ""),
    (4.0, T0_S + 90.25, "b", ""),
    (9.0, T0, "a", "us"),  # same series and time as the first: last write wins, across chunks
]


def as_items(metric: str) -> list[dict[str, Any]]:
    items = []
    for value, ts, host, region in ROWS:
        labels = {"host": host, **({"region": region} if region else {})}
        items.append({"metric_name": metric, "value": value, "timestamp": ts, "labels": labels})
    return items


def as_csv(metric: str) -> bytes:
    lines = ["metric_name,value,timestamp,host,region"]
    lines += [f"{metric},{v},{ts},{host},{region}" for v, ts, host, region in ROWS]
    return ("\r\n".join(lines) + "\r\n").encode()


def test_ndjson_and_csv_store_exactly_what_the_item_form_stores(shared_client: TestClient) -> None:
    reference, via_ndjson, via_csv = new_metric(), new_metric(), new_metric()
    answer = shared_client.post("/backfill/import", json={"metrics": as_items(reference)})
    assert answer.status_code == 201, answer.text
    answer = post(shared_client, ndjson(as_items(via_ndjson)), NDJSON, chunk_size=2)
    assert answer.status_code == 201, answer.text
    assert answer.json() == {"status": "ok", "imported": 5, "lines": 5, "chunks": 3, **raw_only(5)}
    answer = post(shared_client, as_csv(via_csv), CSV, chunk_size=2)
    assert answer.status_code == 201, answer.text
    assert answer.json() == {"status": "ok", "imported": 5, "lines": 6, "chunks": 3, **raw_only(5)}
    expected = series_of(shared_client, reference)
    assert expected[0]["labels"] == {"host": "a", "region": "us"}
    assert expected[0]["points"][0] == {"timestamp": T0, "value": 9.0}
    assert expected[1]["points"][1] == {"timestamp": "2025-12-03T12:01:30.250Z", "value": 4.0}
    assert series_of(shared_client, via_ndjson) == expected
    assert series_of(shared_client, via_csv) == expected


def test_lines_split_across_chunks_and_empty_lines(shared_client: TestClient) -> None:
    metric = new_metric()
    body = b"\n" + ndjson(samples(metric, 50)).replace(b"\n", b"\r\n\n")

    def pieces() -> Iterator[bytes]:
        for start in range(0, len(body), 7):
            yield body[start : start + 7]

    answer = post(shared_client, pieces(), {"Content-Type": "application/jsonl"}, chunk_size=20)
    assert answer.status_code == 201, answer.text
    assert answer.json() == {
        "status": "ok",
        "imported": 50,
        "lines": 101,
        "chunks": 3,
        **raw_only(50),
    }
    assert points(shared_client, metric) == 50


def test_split_lines_handles_any_chunk_border() -> None:
    async def collect(chunks: list[bytes], limit: int) -> list[bytes]:
        async def source() -> AsyncIterator[bytes]:
            for chunk in chunks:
                yield chunk

        return [line async for line in split_lines(source(), limit)]

    assert asyncio.run(collect([b"ab", b"c\r", b"\nde\n", b"", b"f"], 10)) == [b"abc", b"de", b"f"]
    assert asyncio.run(collect([b"1234567890\r\n"], 10)) == [b"1234567890"]
    with pytest.raises(LineTooLong, match="line 2: longer than 10 bytes"):
        asyncio.run(collect([b"ok\n", b"12345", b"678901"], 10))


def test_a_long_line_in_tiny_chunks_is_one_line() -> None:
    """Each new chunk is searched for a line end, not the whole unfinished line again."""
    line = b"x" * (256 * 1024)

    async def source() -> AsyncIterator[bytes]:
        for start in range(0, len(line), 8):
            yield line[start : start + 8]
        yield b"\r\nnext"

    async def collect() -> list[bytes]:
        return [found async for found in split_lines(source())]

    assert asyncio.run(collect()) == [line, b"next"]


# -- beyond MAX_BATCH and MAX_BODY_BYTES ------------------------------------------------------


def test_an_import_larger_than_max_batch_succeeds_in_chunks(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(max_batch=100)
    metric = new_metric()
    answer = post(client, ndjson(samples(metric, 1000)), NDJSON, chunk_size=100)
    assert answer.status_code == 201, answer.text
    assert answer.json() == {
        "status": "ok",
        "imported": 1000,
        "lines": 1000,
        "chunks": 10,
        **raw_only(1000),
    }
    assert points(client, metric) == 1000
    default = post(client, ndjson(samples(new_metric(), 250)), NDJSON)  # default capped to 100
    assert default.json()["chunks"] == 3
    too_big = post(client, ndjson(samples(metric, 1)), NDJSON, chunk_size=101)
    assert too_big.status_code == 422
    assert "chunk_size" in too_big.json()["detail"]


def test_an_import_larger_than_max_body_bytes_succeeds(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(max_body_bytes=10_000)
    metric = new_metric()
    body = ndjson(samples(metric, 600))
    assert len(body) > 50_000
    answer = post(client, body, NDJSON)
    assert answer.status_code == 201, answer.text
    assert answer.json()["imported"] == 600
    as_json = client.post("/backfill/import", json={"metrics": samples(new_metric(), 600)})
    assert as_json.status_code == 413


# -- chunk semantics on errors ----------------------------------------------------------------


def test_a_bad_line_in_the_third_chunk_keeps_the_first_two(shared_client: TestClient) -> None:
    metric = new_metric()
    items = samples(metric, 35)
    del items[24]["value"]  # line 25, in the third chunk of 10
    answer = post(shared_client, ndjson(items), NDJSON, chunk_size=10)
    assert answer.status_code == 422
    assert answer.json() == {
        "detail": "line 25: value: required, a finite number",
        "imported": 20,
        "committed_lines": 20,
        **raw_only(20),
        "chunks": 2,
    }
    stored = series_of(shared_client, metric)[0]["points"]
    assert [p["value"] for p in stored] == [float(i) for i in range(20)]


def test_a_bad_csv_row_counts_the_header_as_line_one(shared_client: TestClient) -> None:
    metric = new_metric()
    rows = [f"{metric},{i},{T0_S + i},a" for i in range(30)]
    rows[22] = f"{metric},{22},not-a-time,a"  # line 24
    body = "\n".join(["metric_name,value,timestamp,h", *rows]).encode()
    answer = post(shared_client, body, CSV, chunk_size=10)
    assert answer.status_code == 422
    report = answer.json()
    assert report["detail"].startswith("line 24: timestamp: 'not-a-time' is not an RFC 3339")
    assert (report["imported"], report["committed_lines"], report["chunks"]) == (20, 21, 2)
    assert points(shared_client, metric) == 20


def test_bad_json_and_non_objects_name_the_line(shared_client: TestClient) -> None:
    metric = new_metric()
    good = orjson.dumps(samples(metric, 1)[0])
    answer = post(shared_client, good + b"\n{oops\n", NDJSON)
    assert answer.status_code == 422
    assert answer.json()["detail"].startswith("line 2: not valid JSON")
    assert answer.json()["imported"] == 0  # the first line's chunk was not committed
    answer = post(shared_client, b"[1, 2]\n", NDJSON)
    assert answer.json()["detail"] == "line 1: must be a JSON object"


def test_cardinality_stops_the_import_with_a_429_and_the_report(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(max_series_per_metric=3)
    metric = new_metric()
    items = [{"metric_name": metric, "value": 1, "labels": {"h": str(i)}} for i in range(6)]
    answer = post(client, ndjson(items), NDJSON, chunk_size=2)
    assert answer.status_code == 429
    report = answer.json()
    assert "MAX_SERIES_PER_METRIC" in report["detail"]
    assert report["detail"].startswith("lines 3-4: ")
    assert (report["imported"], report["committed_lines"], report["chunks"]) == (2, 2, 1)


def test_a_line_over_one_mib_is_a_413(shared_client: TestClient) -> None:
    metric = new_metric()
    huge = {"metric_name": metric, "value": 1, "labels": {"x": "y" * (1024 * 1024)}}
    answer = post(shared_client, ndjson([*samples(metric, 1), huge]), NDJSON)
    assert answer.status_code == 413
    assert answer.json()["detail"] == "line 2: longer than 1048576 bytes"
    assert points(shared_client, metric) == 0


# -- CSV specifics ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"", "body: a CSV import needs a header line"),
        (b"cpu,1.0\n", "line 1: CSV header: column 'metric_name' required"),
        (b"metric_name,timestamp\ncpu,1\n", "line 1: CSV header: column 'value' required"),
        (b"metric_name,value,host,host\n", "line 1: CSV header: column 'host' appears more"),
        (b"metric_name,value,bad-label\n", "line 1: CSV header: label column 'bad-label'"),
        (b"metric_name,value\ncpu,1,2\n", "line 2: 3 cells, but the header has 2 columns"),
        (b"metric_name,value\n\ncpu,\n", "line 3: value: required, a finite number"),
        (b"metric_name,value\ncpu,nan\n", "line 2: value: must be a finite number"),
        (b"metric_name,value\n,1\n", "line 2: metric_name: required, a non-empty string"),
    ],
)
def test_csv_header_and_cells_are_checked(
    shared_client: TestClient, body: bytes, detail: str
) -> None:
    answer = post(shared_client, body, CSV)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"].startswith(detail)


def test_csv_labels_come_from_extra_columns_and_empty_cells_leave_them_out(
    shared_client: TestClient,
) -> None:
    metric = new_metric()
    body = (
        "\ufeffregion, metric_name ,host,value,timestamp\n"
        f'eu,{metric},"a,b",1.5,{T0}\n'
        f",{metric},,2.5,{T0_S + 1}\n"
    ).encode()
    answer = post(shared_client, body, {"Content-Type": "text/csv; charset=utf-8"})
    assert answer.status_code == 201, answer.text
    stored = series_of(shared_client, metric)
    assert [(s["labels"], [p["value"] for p in s["points"]]) for s in stored] == [
        ({}, [2.5]),
        ({"host": "a,b", "region": "eu"}, [1.5]),
    ]


def test_a_csv_without_timestamp_column_uses_server_time(shared_client: TestClient) -> None:
    metric = new_metric()
    answer = post(shared_client, f"metric_name,value\n{metric},7\n".encode(), CSV)
    assert answer.status_code == 201, answer.text
    recent = shared_client.get("/query/raw", params={"metric_name": metric})
    assert recent.json()["series"][0]["points"][0]["value"] == 7.0


# -- other content types, documentation ------------------------------------------------------


def test_other_content_types_keep_the_json_behaviour(shared_client: TestClient) -> None:
    metric = new_metric()
    lines = ndjson(samples(metric, 2))
    answer = post(shared_client, lines, {"Content-Type": "text/plain"})
    assert answer.status_code == 400
    assert set(answer.json()) == {"detail"}
    answer = shared_client.post("/backfill/import", json={"metrics": samples(metric, 2)})
    assert answer.status_code == 201
    assert answer.json() == {"status": "ok", "imported": 2, "series": 1, **raw_only(2)}


def test_openapi_documents_the_streaming_content_types(shared_client: TestClient) -> None:
    operation = shared_client.get("/openapi.json").json()["paths"]["/backfill/import"]["post"]
    content = operation["requestBody"]["content"]
    assert {"application/json", "application/x-ndjson", "text/csv"} <= set(content)
    assert "metric_name,value" in content["text/csv"]["example"]
    assert any(p["name"] == "chunk_size" for p in operation["parameters"])
