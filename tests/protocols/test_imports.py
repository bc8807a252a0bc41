"""VictoriaMetrics' JSON-lines import and the Prometheus text import through HTTP, on both
backends: shapes, gzip, special values, extra_label, timestamp, metadata, partial refusals."""

from __future__ import annotations

import asyncio
import gzip

import orjson
import pytest
from conftest import test_settings
from fastapi.testclient import TestClient
from protocol_clients import BASE_MS, PLAIN_NAN_BITS, bits, counter, stored, values_of

from app.storage.store import Store

T0, T1 = BASE_MS, BASE_MS + 15_000


@pytest.fixture
def imp(shared_client: TestClient) -> TestClient:
    """One app and database per backend for the module: each test writes its own metrics."""
    return shared_client


@pytest.fixture
def db(shared_url: str) -> str:
    return shared_url


def jsonl(*lines: object) -> bytes:
    return b"\n".join(orjson.dumps(line) for line in lines) + b"\n"


def test_json_lines(imp: TestClient, db: str) -> None:
    body = jsonl(
        {"metric": {"__name__": "up", "job": "a"}, "values": [1, 0.5], "timestamps": [T0, T1]},
        {"metric": {"__name__": "up", "job": "b"}, "values": [2], "timestamps": [T0]},
    )
    for path in ("/api/v1/import", "/prometheus/api/v1/import"):
        answer = imp.post(path, content=body)
        assert answer.status_code == 204, answer.text
    assert values_of(db, "up") == {
        (("job", "a"),): [(T0, 1.0), (T1, 0.5)],
        (("job", "b"),): [(T0, 2.0)],
    }


def test_json_lines_gzip_and_extra_labels(imp: TestClient, db: str) -> None:
    body = gzip.compress(
        jsonl({"metric": {"__name__": "g", "env": "dev"}, "values": [3], "timestamps": [T0]})
    )
    answer = imp.post(
        "/api/v1/import",
        content=body,
        headers={"Content-Encoding": "gzip"},
        params=[("extra_label", "env=prod"), ("extra_label", "dc=x")],
    )
    assert answer.status_code == 204, answer.text
    assert values_of(db, "g") == {(("dc", "x"), ("env", "prod")): [(T0, 3.0)]}


def test_json_lines_special_values_are_stored(imp: TestClient, db: str) -> None:
    body = jsonl(
        {
            "metric": {"__name__": "special"},
            "values": [None, "Inf", "-Infinity", "NaN", 1e308],
            "timestamps": [T0, T0 + 1, T0 + 2, T0 + 3, T0 + 4],
        }
    )
    assert imp.post("/api/v1/import", content=body).status_code == 204
    found = stored(db, "special")[()]
    assert [ts for ts, _ in found] == [T0, T0 + 1, T0 + 2, T0 + 3, T0 + 4]
    assert found[1][1] == bits(float("inf")) and found[2][1] == bits(float("-inf"))
    assert found[4][1] == bits(1e308)
    nan_bits = {found[0][1], found[3][1]}
    assert all(
        b & 0x7FF0000000000000 == 0x7FF0000000000000 and b & 0xFFFFFFFFFFFFF for b in nan_bits
    )
    assert PLAIN_NAN_BITS  # (NaN payloads are checked bit for bit in test_exact_values.py)


def test_json_lines_bad_lines_are_refused(imp: TestClient, db: str) -> None:
    body = (
        jsonl({"metric": {"__name__": "ok"}, "values": [1], "timestamps": [T0]})
        + b"{not json\n"
        + jsonl(
            {"metric": {"job": "x"}, "values": [1], "timestamps": [T0]},
            {"metric": {"__name__": "ok"}, "values": [1, 2], "timestamps": [T0]},
            {"metric": {"__name__": "ok"}, "values": ["x"], "timestamps": [T0]},
            {"metric": {"__name__": "ok"}, "values": [5], "timestamps": [T1 / 1]},
            {"metric": {"__name__": "ok", "i": "2"}, "values": [2], "timestamps": [T1]},
        )
    )
    answer = imp.post("/api/v1/import", content=body)
    assert answer.status_code == 400
    detail = answer.json()["detail"]
    assert detail.startswith("5 lines refused"), detail
    for text in ("line 2: not valid JSON", "line 3: no __name__", "line 4: 'timestamps' has 1"):
        assert text in detail, text
    assert values_of(db, "ok") == {(): [(T0, 1.0)], (("i", "2"),): [(T1, 2.0)]}


PROM_TEXT = f"""# HELP http_requests_total Requests served.\\nSecond line.
# TYPE http_requests_total counter
http_requests_total{{method="get",code="200"}} 1027 {T0}
http_requests_total{{method="post",code="500",path="a\\"b\\\\c"}} 3 {T1}
# TYPE temperature gauge
# UNIT temperature celsius
temperature 21.5
bucket_count{{le="+Inf"}} +Inf {T0}
"""


def test_prometheus_text(imp: TestClient, db: str) -> None:
    default = BASE_MS + 5_000
    for method in ("POST", "PUT"):
        answer = imp.request(
            method,
            "/api/v1/import/prometheus",
            content=gzip.compress(PROM_TEXT.encode()),
            headers={"Content-Encoding": "gzip"},
            params={"timestamp": str(default), "extra_label": "instance=x"},
        )
        assert answer.status_code == 204, answer.text
    assert values_of(db, "http_requests_total") == {
        (("code", "200"), ("instance", "x"), ("method", "get")): [(T0, 1027.0)],
        (("code", "500"), ("instance", "x"), ("method", "post"), ("path", 'a"b\\c')): [(T1, 3.0)],
    }
    assert values_of(db, "temperature") == {(("instance", "x"),): [(default, 21.5)]}
    assert values_of(db, "bucket_count") == {
        (("instance", "x"), ("le", "+Inf")): [(T0, float("inf"))]
    }

    async def metadata() -> dict[str, list[dict[str, str]]]:
        store = Store.open(test_settings(db))
        try:
            return await store.metric_metadata(None, None)
        finally:
            await store.close()

    assert asyncio.run(metadata()) == {
        "http_requests_total": [
            {"type": "counter", "help": "Requests served.\nSecond line.", "unit": ""}
        ],
        "temperature": [{"type": "gauge", "help": "", "unit": "celsius"}],
    }


def test_openmetrics_timestamps_are_seconds(imp: TestClient, db: str) -> None:
    body = f"om_metric 1 {T0 / 1000}\n# EOF\n"
    assert imp.post("/api/v1/import/prometheus", content=body).status_code == 204
    assert values_of(db, "om_metric") == {(): [(T0, 1.0)]}


def test_prometheus_text_bad_lines(imp: TestClient, db: str) -> None:
    body = f'pt 1 {T0}\npt{{a=b}} 2\npt 3 x\n{{}} 4\npt{{a="1",a="2"}} 5\npt 6 {T1}\n'
    labels = {"protocol": "prometheus_text", "unit": "lines"}
    before = counter(imp, "metrics_protocol_refused_total", **labels)
    answer = imp.post("/api/v1/import/prometheus", content=body)
    assert answer.status_code == 400
    detail = answer.json()["detail"]
    assert detail.startswith("4 lines refused"), detail
    assert "line 2: invalid labels" in detail and "line 5: metric 'pt': duplicate label" in detail
    assert values_of(db, "pt") == {(): [(T0, 1.0), (T1, 6.0)]}
    assert counter(imp, "metrics_protocol_refused_total", **labels) - before == 4


def test_timestamp_parameter_is_checked(imp: TestClient) -> None:
    answer = imp.post("/api/v1/import/prometheus", content=b"x 1\n", params={"timestamp": "soon"})
    assert answer.status_code == 422 and answer.json()["detail"].startswith("timestamp:")
