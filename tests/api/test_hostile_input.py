"""Hostile input must not freeze the server: parsing and matching take time linear in the input,
and while one request works on a bad input, the others are still answered.

Each case runs against a real `uvicorn app.main:app` process and checks behaviour, not timings:
the bad request gets its answer, and `/health` requests sent while it is outstanding are all
answered. The inputs are sized so that the old, super-linear code would hold the server for
minutes (the server is killed at the end, whatever state it is in).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import LiveServer, fresh_database, test_settings

from app.migrate import upgrade

# Seconds a request may take here before the test calls the server frozen: generous, since the
# machine is shared; the inputs make the old code take far longer than this.
PATIENCE = 10.0
HEALTH_ROUNDS = 8


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LiveServer]:
    """Matching happens after the series are read, the same on both backends: PostgreSQL's run
    is in the slow set."""
    with fresh_database(request.param, tmp_path, "hostile") as url:
        live = LiveServer(url)
        live.start()
        yield live
        if live.process is not None:
            live.stop("kill")  # a frozen server would not stop gracefully


def answered_meanwhile(base_url: str, request: dict[str, Any]) -> tuple[httpx.Response, int]:
    """Send `request` in a thread and `/health` repeatedly while it is outstanding (at least
    HEALTH_ROUNDS times); return its answer and how many health checks were answered."""
    result: dict[str, Any] = {}

    def bad() -> None:
        try:
            with httpx.Client(base_url=base_url, timeout=PATIENCE * 3) as client:
                result["answer"] = client.request(**request)
        except Exception as exc:
            result["error"] = exc

    worker = threading.Thread(target=bad, daemon=True)
    worker.start()
    answered = 0
    with httpx.Client(base_url=base_url, timeout=PATIENCE) as client:
        for _ in range(HEALTH_ROUNDS):
            assert client.get("/health").status_code == 200
            answered += 1
            time.sleep(0.05)
    worker.join(PATIENCE * 3)
    assert "error" not in result, f"the bad request failed: {result.get('error')!r}"
    return result["answer"], answered


def test_a_backtracking_regex_neither_freezes_the_server_nor_matches(server: LiveServer) -> None:
    """With Python's `re`, `(.*)*X` against the first value took 1.6 s, doubling with each
    character: about 25 s for the four, /health waiting all along."""
    values = [
        "web-server-01.prod.exampl",
        "web-server-01.prod.example",
        "web-server-01.prod.example-",
        "web-server-01.prod.example.c",
    ]
    samples = [
        {"metric_name": "hostile_re", "value": 1.0, "labels": {"host": value}} for value in values
    ]
    with httpx.Client(base_url=server.base_url, timeout=PATIENCE) as client:
        assert client.post("/backfill/import", json={"metrics": samples}).status_code == 201
    query = {"metric_name": "hostile_re", "match": '{host=~"(.*)*X"}'}
    answer, answered = answered_meanwhile(
        server.base_url, {"method": "GET", "url": "/query/raw", "params": query}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["series"] == []
    assert answered == HEALTH_ROUNDS
    everything = {"metric_name": "hostile_re", "match": '{host=~"(.*)*"}'}
    with httpx.Client(base_url=server.base_url, timeout=PATIENCE) as client:
        assert len(client.get("/query/raw", params=everything).json()["series"]) == 4
        bad = client.get(
            "/query/raw", params={"metric_name": "hostile_re", "match": '{host=~"(a"}'}
        )
    assert bad.status_code == 422
    assert bad.json()["detail"].startswith("match: invalid regular expression '(a'")


@pytest.fixture
def sqlite_server(tmp_path: Path) -> Iterator[LiveServer]:
    """The header is checked before any storage: one backend is enough."""
    url = f"sqlite:///{tmp_path / 'metrics.db'}"
    upgrade(test_settings(url))
    live = LiveServer(url)
    live.start()
    yield live
    if live.process is not None:
        live.stop("kill")


def test_a_csv_header_of_many_columns_is_checked_in_linear_time(sqlite_server: LiveServer) -> None:
    """The duplicate-column check counted each column in the whole header: 20,000 columns froze
    the server 3.8 s, and this header (about 140,000 columns, just under the 1 MiB line limit)
    would have frozen it about 50 times as long."""
    server = sqlite_server
    columns = ["metric_name", "value", *(f"c{i}" for i in range(140_000))]
    header = ",".join(columns)
    assert len(header) < 1024 * 1024
    row = ",".join(["m", "1", *("x" for _ in range(140_000))])
    request = {
        "method": "POST",
        "url": "/backfill/import",
        "content": f"{header}\n{row}\n".encode(),
        "headers": {"content-type": "text/csv"},
    }
    answer, answered = answered_meanwhile(server.base_url, request)
    assert answer.status_code == 422, answer.text
    assert "at most 32 allowed" in answer.json()["detail"]
    assert answered == HEALTH_ROUNDS
