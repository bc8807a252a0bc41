"""The dashboard's PromQL mode in headless Chromium: an expression instead of the metric,
drawn from /api/v1/query_range with the same chart, table, range and refresh, kept in the URL."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import LiveServer
from playwright.sync_api import Browser, Page, sync_playwright

pytestmark = pytest.mark.browser
CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
EXPR = "sum by (host) (rate(requests_total[5m]))"


@pytest.fixture(params=["sqlite"])
def backend(request: pytest.FixtureRequest) -> str:
    """The page is the same on both backends (the HTTP tests cover both)."""
    return str(request.param)


@pytest.fixture
def server(live_server: LiveServer) -> LiveServer:
    now = int(time.time())
    series = [
        {
            "metric_name": "requests_total",
            "labels": {"host": host, "path": path},
            "timestamps": [now - 3600 + 15 * i for i in range(240)],
            "values": [float(i * per_step) for i in range(240)],
        }
        for host, path, per_step in (("a", "/", 15), ("a", "/x", 30), ("b", "/", 3))
    ]
    answer = httpx.post(f"{live_server.base_url}/backfill/import", json={"series": series})
    assert answer.status_code == 201, answer.text
    return live_server


@pytest.fixture
def page(server: LiveServer) -> Iterator[Page]:
    if not CHROMIUM.exists():
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(f"{CHROMIUM} is missing")
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium package")
    with sync_playwright() as playwright:
        browser: Browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
        tab = context.new_page()
        errors: list[str] = []
        tab.on("pageerror", lambda error: errors.append(str(error)))
        yield tab
        browser.close()
        assert not errors, errors


def loads(page: Page) -> int:
    return int(page.evaluate("() => (window.__dashboard ? window.__dashboard.loads : 0)"))


def wait_loaded(page: Page, after: int) -> None:
    probe = (
        "(n) => !!window.__dashboard && window.__dashboard.loads > n && !window.__dashboard.busy"
    )
    page.wait_for_function(probe, arg=after, timeout=20_000)


def shown(page: Page) -> dict[str, Any]:
    script = """() => ({
        query: window.__dashboard.query.path + '?' + window.__dashboard.query.params,
        lines: window.__dashboard.chart.data.datasets.map((d) => ({
            label: d.label, points: d.data.map((p) => [p.x, p.y]) })),
        rows: document.querySelectorAll('#table-body tr').length,
        title: document.getElementById('chart-title').textContent,
        error: window.__dashboard.error,
    })"""
    result: dict[str, Any] = page.evaluate(script)
    return result


def expected_lines(base_url: str, query: str) -> list[dict[str, Any]]:
    body = httpx.get(f"{base_url}{query}").json()
    assert body["status"] == "success", body
    return [
        {
            "label": ", ".join(f"{k}={v}" for k, v in sorted(item["metric"].items())),
            "points": [[round(float(t) * 1000), float(v)] for t, v in item["values"]],
        }
        for item in body["data"]["result"]
    ]


def test_promql_mode(page: Page, server: LiveServer) -> None:
    base = server.base_url
    page.goto(f"{base}/dashboard?expr={httpx.QueryParams({'q': EXPR})['q']}&range=1h")
    wait_loaded(page, 0)
    view = shown(page)
    assert view["error"] is None
    assert view["query"].startswith("/api/v1/query_range?")
    assert "PromQL" in view["title"]
    assert page.input_value("#expr") == EXPR
    lines = expected_lines(base, view["query"])
    assert [line["label"] for line in lines] == ["host=a", "host=b"]
    assert view["lines"] == lines
    assert view["rows"] == 25  # the first page of the table

    # A new expression typed in the box: drawn, and kept in the URL.
    before = loads(page)
    page.fill("#expr", "requests_total * 2")
    page.press("#expr", "Enter")
    wait_loaded(page, before)
    view = shown(page)
    assert httpx.URL(page.url).params["expr"] == "requests_total * 2"
    assert len(view["lines"]) == 3 and view["lines"] == expected_lines(base, view["query"])

    # An invalid expression: Prometheus' error, shown as such.
    before = loads(page)
    page.fill("#expr", "sum(")
    page.press("#expr", "Enter")
    wait_loaded(page, before)
    assert "bad_data" in str(shown(page)["error"])

    # Back to the metric: the expression cleared, the raw query again.
    before = loads(page)
    page.fill("#expr", "")
    page.press("#expr", "Enter")
    wait_loaded(page, before)
    view = shown(page)
    assert view["error"] is None and view["query"].startswith("/query/")
    assert "expr" not in httpx.URL(page.url).params

    # Back in history: the expression returns.
    before = loads(page)
    page.go_back()
    wait_loaded(page, before)
    assert page.input_value("#expr") == "sum("
    assert shown(page)["query"].startswith("/api/v1/query_range?")
