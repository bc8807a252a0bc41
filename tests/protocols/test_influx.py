"""InfluxDB line protocol through HTTP, on both backends: /write and /api/v2/write (and under
/influx), /ping, /query, gzip, precisions, escaping, the db label, partial writes and keys."""

from __future__ import annotations

import base64
import gzip
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from protocol_clients import BASE_MS, counter, values_of

NS = BASE_MS * 1_000_000


@pytest.fixture
def influx(shared_client: TestClient) -> TestClient:
    """One app and database per backend for the module: each test writes its own metrics."""
    return shared_client


@pytest.fixture
def db(shared_url: str) -> str:
    return shared_url


def write(client: TestClient, body: str | bytes, path: str = "/write", **params: str) -> object:
    content = body.encode() if isinstance(body, str) else body
    return client.post(path, params=params, content=content)


def test_ping_and_create_database(influx: TestClient) -> None:
    for method in ("GET", "HEAD"):
        for path in ("/ping", "/influx/ping"):
            answer = influx.request(method, path)
            assert answer.status_code == 204 and answer.headers["x-influxdb-version"].startswith(
                "1."
            )
    answer = influx.post("/query", data={"q": 'CREATE DATABASE "telegraf"'})
    assert answer.status_code == 200 and answer.json() == {"results": [{"statement_id": 0}]}
    answer = influx.get("/query", params={"q": "CREATE DATABASE x; SHOW DATABASES; SELECT 1"})
    results = answer.json()["results"]
    assert results[0] == {"statement_id": 0}
    assert results[1]["series"][0]["name"] == "databases"
    assert "error" in results[2]


def test_fields_become_series_and_tags_labels(influx: TestClient, db: str) -> None:
    body = (
        f"cpu,host=a,cpu=cpu0 usage_idle=90.5,usage_user=3i,online=t,count=7u {NS}\n"
        f"cpu,host=b,cpu=cpu0 usage_idle=80 {NS}\n"
    )
    answer = write(influx, body, db="telegraf")
    assert answer.status_code == 204, answer.text
    labels_a = (("cpu", "cpu0"), ("db", "telegraf"), ("host", "a"))
    assert values_of(db, "cpu_usage_idle") == {
        labels_a: [(BASE_MS, 90.5)],
        (("cpu", "cpu0"), ("db", "telegraf"), ("host", "b")): [(BASE_MS, 80.0)],
    }
    assert values_of(db, "cpu_usage_user") == {labels_a: [(BASE_MS, 3.0)]}
    assert values_of(db, "cpu_online") == {labels_a: [(BASE_MS, 1.0)]}
    assert values_of(db, "cpu_count") == {labels_a: [(BASE_MS, 7.0)]}


def test_a_db_tag_wins_over_the_db_parameter(influx: TestClient, db: str) -> None:
    assert write(influx, f"m,db=mine v=1 {NS}", db="telegraf").status_code == 204
    assert values_of(db, "m_v") == {(("db", "mine"),): [(BASE_MS, 1.0)]}


@pytest.mark.parametrize(
    ("precision", "stamp"),
    [
        (None, NS),
        ("n", NS),
        ("ns", NS),
        ("u", NS // 1000),
        ("us", NS // 1000),
        ("ms", BASE_MS),
        ("s", BASE_MS // 1000),
        ("m", BASE_MS // 60_000),
        ("h", BASE_MS // 3_600_000 + 0),
    ],
)
def test_precisions(influx: TestClient, db: str, precision: str | None, stamp: int) -> None:
    metric = f"prec_{precision or 'default'}"
    params = {"precision": precision} if precision else {}
    assert write(influx, f"{metric} v=2 {stamp}", **params).status_code == 204
    expected = BASE_MS // 3_600_000 * 3_600_000 if precision == "h" else BASE_MS
    assert values_of(db, f"{metric}_v") == {(): [(expected, 2.0)]}


def test_an_unknown_precision_is_rejected(influx: TestClient) -> None:
    answer = write(influx, f"m v=1 {NS}", precision="days")
    assert answer.status_code == 422 and "precision" in answer.json()["error"]


def test_escaping_comments_blank_lines_and_strings(influx: TestClient, db: str) -> None:
    body = (
        "# a comment\n"
        "\n"
        "disk\\ io,path=/var/lib\\,x,mode\\=rw=a\\ b"
        f' read_bytes=5,note="a \\"quoted\\", s" {NS}\r\n'
        f"disk\\ io,path=/var read_bytes=6 {NS}\n"
    )
    name, labels = "metrics_protocol_ignored_total", {"protocol": "influx", "what": "string_fields"}
    before = counter(influx, name, **labels)
    answer = write(influx, body)
    assert answer.status_code == 204, answer.text
    assert values_of(db, "disk_io_read_bytes") == {
        (("mode_rw", "a b"), ("path", "/var/lib,x")): [(BASE_MS, 5.0)],
        (("path", "/var"),): [(BASE_MS, 6.0)],
    }
    assert counter(influx, name, **labels) - before == 1


def test_gzip_and_v2_with_a_token(
    make_client: Callable[..., TestClient], database_url: str
) -> None:
    client = make_client(api_keys=["tok"])
    body = gzip.compress(f"net,iface=eth0 rx=1.5 {BASE_MS // 1000}".encode())
    headers = {"Content-Encoding": "gzip", "Authorization": "Token tok"}
    params = {"bucket": "b1", "org": "o", "precision": "s"}
    for path in ("/api/v2/write", "/influx/api/v2/write"):
        answer = client.post(path, params=params, content=body, headers=headers)
        assert answer.status_code == 204, answer.text
    assert values_of(database_url, "net_rx") == {
        (("db", "b1"), ("iface", "eth0")): [(BASE_MS, 1.5)]
    }
    answer = client.post(
        "/api/v2/write", params=params, content=body, headers={"Content-Encoding": "gzip"}
    )
    assert answer.status_code == 401 and "error" in answer.json()


def test_v1_keys_as_u_p_and_basic_auth(
    make_client: Callable[..., TestClient], database_url: str
) -> None:
    client = make_client(api_keys=["secret"])
    line = f"k v=1 {NS}".encode()
    assert client.post("/write", content=line).status_code == 401
    assert client.post("/write", params={"u": "me", "p": "secret"}, content=line).status_code == 204
    assert (
        client.post("/influx/write", params={"u": "me", "p": "wrong"}, content=line).status_code
        == 401
    )
    basic = "Basic " + base64.b64encode(b"me:secret").decode()
    assert client.post("/write", content=line, headers={"Authorization": basic}).status_code == 204
    assert client.post("/query", data={"q": "CREATE DATABASE x"}).status_code == 401


def test_a_bad_line_among_good_ones_is_a_partial_write(influx: TestClient, db: str) -> None:
    body = f"good v=1 {NS}\nno_fields {NS}\ngood v=2 {NS + 10**9}\nbad v=abc {NS}\ngood v=3\n"
    labels = {"protocol": "influx", "unit": "lines"}
    before = counter(influx, "metrics_protocol_refused_total", **labels)
    answer = write(influx, body)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error.startswith("partial write: ") and error.endswith("dropped=2")
    assert "line 2: unable to parse 'no_fields" in error and "line 4: unable to parse" in error
    stored = values_of(db, "good_v")[()]
    assert stored[:2] == [(BASE_MS, 1.0), (BASE_MS + 1000, 2.0)] and len(stored) == 3  # + now
    assert counter(influx, "metrics_protocol_refused_total", **labels) - before == 2


def test_an_invalid_gzip_body_is_400(influx: TestClient) -> None:
    answer = influx.post(
        "/write", content=b"\x1f\x8b garbage", headers={"Content-Encoding": "gzip"}
    )
    assert answer.status_code == 400 and "gzip" in answer.json()["error"]


def test_a_gzip_bomb_is_413(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_body_bytes=10_000)
    body = gzip.compress(b"m v=1\n" * 100_000)
    assert len(body) < 10_000
    answer = client.post("/write", content=body, headers={"Content-Encoding": "gzip"})
    assert answer.status_code == 413 and "once decompressed" in answer.json()["error"]


def test_names_are_sanitized(influx: TestClient, db: str) -> None:
    assert write(influx, f"my-app.requests,dc.name=x 5xx=3i {NS}").status_code == 204
    assert values_of(db, "my_app_requests_5xx") == {(("dc_name", "x"),): [(BASE_MS, 3.0)]}
