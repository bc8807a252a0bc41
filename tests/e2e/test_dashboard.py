"""The dashboard in a real browser (Debian's Chromium through Playwright) against a live server.

Every check compares what the page shows with what the HTTP API answers for the same query.
Screenshots go to `test-artifacts/`; with `UPDATE_DOCS_SCREENSHOT=1` the README picture
`docs/img/dashboard.png` is rewritten too.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from conftest import run_inline
from playwright.sync_api import Browser, Page, expect, sync_playwright

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
DOCS_SCREENSHOT = ROOT / "docs" / "img" / "dashboard.png"
TIMEZONE = "Europe/Amsterdam"  # the browser's local time zone; the page must show times in it
PAGE_SIZE = 25

CPU, DISK, MEMORY = "cpu_usage", "disk_free", "memory_bytes"
CPU_HOSTS = {
    "server1": ("us-west", 40.0),
    "server2": ("us-west", 55.0),
    "server3": ("eu-west", 70.0),
}
SPIKE_MINUTES_AGO = 3
SPIKE_VALUE = 500.0

Json = dict[str, Any]


@dataclass(frozen=True)
class Seed:
    base_url: str
    anchor: float  # whole epoch seconds; every seeded sample lies before it
    spike_timestamp: str


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def epoch_ms(timestamp: str) -> int:
    return round(datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp() * 1000)


def label_text(labels: dict[str, str]) -> str:
    return ", ".join(f"{key}={value}" for key, value in sorted(labels.items()))


def sample(metric: str, epoch: float, value: float, **labels: str) -> Json:
    return {"metric_name": metric, "value": value, "timestamp": iso(epoch), "labels": labels}


def seed_samples(anchor: float) -> list[Json]:
    """Three CPU series (one spike), one memory series, and disk data from 3 days ago only."""
    items: list[Json] = []
    for host, (region, base) in CPU_HOSTS.items():
        for minute in range(1, 51):  # the last 50 minutes, one sample a minute
            value = base + (minute % 5) - 2
            if host == "server2" and minute == SPIKE_MINUTES_AGO:
                value = SPIKE_VALUE
            items.append(sample(CPU, anchor - 60 * minute, value, host=host, region=region))
        for half_hour in range(4, 40):  # 2 h to 20 h ago: only visible in longer ranges
            value = base + (half_hour % 3)
            items.append(sample(CPU, anchor - 1800 * half_hour, value, host=host, region=region))
    items += [sample(MEMORY, anchor - 60 * m, 1e9 + m * 1e6, host="server1") for m in range(1, 40)]
    items += [
        sample(DISK, anchor - 3 * 86400 - 600 * i, 100.0 - i, host="server1") for i in range(6)
    ]
    return items


@pytest.fixture(params=["sqlite"])
def backend(request: pytest.FixtureRequest) -> str:
    """The page is the same on every backend, and the HTTP suite checks each backend's answers:
    the browser runs on SQLite only, to keep the suite within its time budget."""
    return str(request.param)


@pytest.fixture
def browser(seed: Seed) -> Iterator[Browser]:
    """Chromium, started after the server and its data: Playwright's sync API keeps an event loop
    running in this thread, and the database fixtures use `asyncio.run`."""
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing: install Debian's chromium package (make browser)"
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def seed(live_server: Any) -> Seed:
    base_url = str(live_server.base_url)
    anchor = float(int(time.time()) - 30)
    response = httpx.post(
        f"{base_url}/backfill/import", json={"metrics": seed_samples(anchor)}, timeout=60
    )
    assert response.status_code == 201, response.text
    return Seed(base_url, anchor, iso(anchor - 60 * SPIKE_MINUTES_AGO))


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, locale="en-GB", timezone_id=TIMEZONE
    )
    tab = context.new_page()
    problems: list[str] = []
    tab.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    tab.on(
        "console",
        lambda msg: (
            problems.append(f"console: {msg.text}")
            if "Content Security Policy" in msg.text
            else None
        ),
    )
    yield tab
    context.close()
    assert not problems, problems


# ------------------------------------------------------------------ page helpers


def loads(page: Page) -> int:
    return int(page.evaluate("() => (window.__dashboard ? window.__dashboard.loads : 0)"))


def wait_loaded(page: Page, after: int, timeout: float = 20.0) -> None:
    """Wait until the dashboard finished a load started after `after` loads."""
    probe = (
        "(n) => !!window.__dashboard && window.__dashboard.loads > n && !window.__dashboard.busy"
    )
    deadline = time.monotonic() + timeout
    while not page.evaluate(probe, after):
        if time.monotonic() > deadline:
            raise AssertionError(f"the dashboard did not finish loading (url {page.url})")
        page.wait_for_timeout(50)


def act(page: Page, action: Callable[[], object]) -> None:
    """Do something that reloads the data, and wait for that load to finish."""
    before = loads(page)
    action()
    wait_loaded(page, before)


def open_dashboard(page: Page, base_url: str, query: str = "") -> None:
    page.goto(f"{base_url}/dashboard{query}")
    wait_loaded(page, 0)


def shown_query(page: Page) -> str:
    """The data query behind what the page shows (path and query string)."""
    return str(
        page.evaluate(
            "() => { const q = window.__dashboard.query; return q.path + '?' + q.params; }"
        )
    )


def url_params(page: Page) -> dict[str, str]:
    return dict(httpx.URL(page.url).params)


def api_get(base_url: str, path_and_query: str, headers: dict[str, str] | None = None) -> Json:
    response = httpx.get(f"{base_url}{path_and_query}", headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    body: Json = response.json()
    return body


def chart_datasets(page: Page) -> list[Json]:
    script = """() => window.__dashboard.chart.data.datasets.map((d) => ({
        type: d.type, label: d.label, points: (d._data || d.data).map((p) => [p.x, p.y]),
    }))"""
    datasets: list[Json] = page.evaluate(script)
    return datasets


def table_rows(page: Page) -> list[list[Any]]:
    script = """() => [...document.querySelectorAll('#table-body tr')].map((tr) =>
        [tr.dataset.timestamp, tr.dataset.labels, JSON.parse(tr.dataset.values)])"""
    rows: list[list[Any]] = page.evaluate(script)
    return rows


# ------------------------------------------------------------------ expectations from the API


def point_values(point: Json) -> list[Any]:
    if "value" in point:
        return [point["value"]]
    return [point["avg"], point["min"], point["max"], point["count"]]


def expected_datasets(body: Json) -> list[Json]:
    return [
        {
            "type": "line",
            "label": label_text(series["labels"]) or body["metric_name"],
            "points": [
                [epoch_ms(p["timestamp"]), p.get("value", p.get("avg"))] for p in series["points"]
            ],
        }
        for series in body["series"]
    ]


def expected_rows(body: Json) -> list[list[Any]]:
    rows = [
        (epoch_ms(p["timestamp"]), label_text(series["labels"]), p)
        for series in body["series"]
        for p in series["points"]
    ]
    rows.sort(key=lambda row: (-row[0], row[1]))
    return [[p["timestamp"], labels, point_values(p)] for _, labels, p in rows]


def assert_no_error(page: Page) -> None:
    error = page.evaluate("() => window.__dashboard.error")
    assert error is None, f"the page shows an error: {error}"


def assert_page_matches_api(
    page: Page, base_url: str, headers: dict[str, str] | None = None
) -> Json:
    """Chart datasets and the first table page equal the API's answer to the page's own query."""
    assert_no_error(page)
    body = api_get(base_url, shown_query(page), headers)
    lines = [d for d in chart_datasets(page) if d["type"] == "line"]
    assert lines == expected_datasets(body)
    rows = expected_rows(body)
    assert table_rows(page) == rows[:PAGE_SIZE]
    if rows:
        expect(page.locator("#table-info")).to_contain_text(f"of {len(rows)}")
    return body


# ------------------------------------------------------------------ tests


def test_chart_and_table_follow_metric_rollup_and_range(seed: Seed, page: Page) -> None:
    names = api_get(seed.base_url, "/metrics/names")["names"]
    open_dashboard(page, seed.base_url)
    options = page.locator("#metric option").evaluate_all("(os) => os.map((o) => o.value)")
    assert options == names
    assert page.locator("#metric").input_value() == names[0]
    assert url_params(page)["metric"] == names[0]

    act(page, lambda: page.select_option("#metric", MEMORY))  # never names[0]: CPU sorts first
    assert [d["label"] for d in chart_datasets(page)] == ["host=server1"]
    assert_page_matches_api(page, seed.base_url)
    assert url_params(page)["metric"] == MEMORY

    act(page, lambda: page.select_option("#metric", CPU))
    assert shown_query(page).startswith("/query/raw?")  # auto over 1 h is raw
    body = assert_page_matches_api(page, seed.base_url)
    assert [label_text(s["labels"]) for s in body["series"]] == [
        "host=server1, region=us-west",
        "host=server2, region=us-west",
        "host=server3, region=eu-west",
    ]
    newest = datetime.fromisoformat(table_rows(page)[0][0].replace("Z", "+00:00"))
    local = newest.astimezone(ZoneInfo(TIMEZONE)).strftime("%H:%M:%S")
    expect(page.locator("#table-body tr").first.locator("td.time")).to_contain_text(local)

    page.click("#next")  # paging happens in the page, without a new query
    expect(page.locator("#table-info")).to_contain_text(f"rows {PAGE_SIZE + 1}\N{EN DASH}")
    assert table_rows(page) == expected_rows(body)[PAGE_SIZE : 2 * PAGE_SIZE]
    page.click("#prev")
    assert table_rows(page) == expected_rows(body)[:PAGE_SIZE]

    act(page, lambda: page.select_option("#range", "24h"))
    assert "window=1m" in shown_query(page)  # auto over 24 h is the 1 m rollup
    expect(page.locator("#chart-title")).to_have_text(f"{CPU} · 1m avg (auto)")
    assert_page_matches_api(page, seed.base_url)

    act(page, lambda: page.select_option("#rollup", "5m"))
    assert shown_query(page).startswith("/query/rollup?")
    assert "window=5m" in shown_query(page)
    assert_page_matches_api(page, seed.base_url)
    assert url_params(page) == {"metric": CPU, "range": "24h", "rollup": "5m"}

    act(page, lambda: page.select_option("#rollup", "raw"))
    assert_page_matches_api(page, seed.base_url)

    act(page, lambda: page.select_option("#range", "7d"))
    act(page, lambda: page.select_option("#rollup", "auto"))
    assert "window=1h" in shown_query(page)  # auto over 7 d is the 1 h rollup
    assert_page_matches_api(page, seed.base_url)


def set_filter(page: Page, text: str) -> None:
    page.fill("#filter", text)
    act(page, lambda: page.press("#filter", "Enter"))


def test_label_filter_and_anomaly_overlay(seed: Seed, page: Page) -> None:
    open_dashboard(page, seed.base_url, f"?metric={CPU}&range=1h&rollup=raw")
    set_filter(page, '{host=~"server[12]"}')
    assert [d["label"] for d in chart_datasets(page)] == [
        "host=server1, region=us-west",
        "host=server2, region=us-west",
    ]
    assert_page_matches_api(page, seed.base_url)
    set_filter(page, "region=eu-west")
    assert "label=region%3Aeu-west" in shown_query(page)
    assert_no_error(page)
    assert [d["label"] for d in chart_datasets(page)] == ["host=server3, region=eu-west"]
    set_filter(page, "")

    act(page, lambda: page.check("#anomalies"))
    assert url_params(page)["anomalies"] == "1"
    assert url_params(page)["threshold"] == "3"
    anomaly_query = shown_query(page).replace("/query/raw?", "/anomaly/detect?")
    anomaly_query = anomaly_query.replace("limit=100000", "threshold=3")
    detected = api_get(seed.base_url, anomaly_query)
    expected = sorted(
        [epoch_ms(a["timestamp"]), a["value"]] for s in detected["series"] for a in s["anomalies"]
    )
    assert [epoch_ms(seed.spike_timestamp), SPIKE_VALUE] in expected
    overlay = [d for d in chart_datasets(page) if d["type"] == "scatter"]
    assert len(overlay) == 1
    assert overlay[0]["points"] == expected
    expect(page.locator("#summary")).to_contain_text(f"{len(expected)} anomal")
    flagged = page.locator("#table-body tr.anomaly")
    expect(flagged.first).to_have_attribute("data-timestamp", seed.spike_timestamp)
    expect(flagged.first).to_have_attribute("data-labels", "host=server2, region=us-west")

    page.evaluate("() => document.activeElement && document.activeElement.blur()")
    save_screenshots(page)

    page.fill("#threshold", "50")
    act(page, lambda: page.press("#threshold", "Enter"))
    assert url_params(page)["threshold"] == "50"
    assert [d["points"] for d in chart_datasets(page) if d["type"] == "scatter"] == [[]]
    expect(page.locator("#summary")).to_contain_text("0 anomalies")


def save_screenshots(page: Page) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    if os.environ.get("UPDATE_DOCS_SCREENSHOT") == "1":
        DOCS_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(DOCS_SCREENSHOT))
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(200)  # let the chart follow the resize
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
    page.screenshot(path=str(ARTIFACTS / "dashboard-phone.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})


def test_empty_state_and_api_errors(seed: Seed, page: Page) -> None:
    open_dashboard(page, seed.base_url, f"?metric={DISK}&range=1h")
    expect(page.locator("#empty")).to_be_visible()
    expect(page.locator("#empty")).to_contain_text("No data in this range")
    assert table_rows(page) == []
    act(page, lambda: page.select_option("#range", "7d"))
    expect(page.locator("#empty")).to_be_hidden()
    assert_page_matches_api(page, seed.base_url)

    bad_filter = '{host=~"("}'
    set_filter(page, bad_filter)
    failed = httpx.get(f"{seed.base_url}{shown_query(page)}", timeout=30)
    assert failed.status_code in (400, 422)
    detail = failed.json()["detail"]
    expect(page.locator("#error")).to_be_visible()
    expect(page.locator("#error")).to_contain_text(f"API error {failed.status_code}")
    if isinstance(detail, str):
        expect(page.locator("#error")).to_contain_text(detail)
    assert table_rows(page) == []

    set_filter(page, "")
    expect(page.locator("#error")).to_be_hidden()

    open_dashboard(page, seed.base_url, "?metric=no_such_metric")
    unknown = httpx.get(f"{seed.base_url}{shown_query(page)}", timeout=30)
    assert unknown.status_code == 404
    expect(page.locator("#error")).to_contain_text("API error 404")
    expect(page.locator("#error")).to_contain_text(str(unknown.json()["detail"]))


AGED = "aged_metric"


@pytest.fixture
def aged(live_server: Any, seed: Seed) -> Seed:
    """A metric of the last 50 minutes whose raw samples retention has dropped already (its raw
    retention is 1 hour, and retention ran as if two hours later): only its rollups hold it."""
    items = [sample(AGED, seed.anchor - 60 * minute, float(minute)) for minute in range(1, 51)]
    written = httpx.post(f"{seed.base_url}/backfill/import", json={"metrics": items}, timeout=30)
    assert written.status_code == 201, written.text
    policy = httpx.put(f"{seed.base_url}/retention/{AGED}", json={"raw": "1h"}, timeout=30)
    assert policy.status_code == 200, policy.text
    run_inline(live_server.database_url, "retention", now=int(time.time() * 1000) + 7_200_000)
    return seed


def test_ranges_older_than_raw_retention_come_from_a_rollup(aged: Seed, page: Page) -> None:
    open_dashboard(page, aged.base_url, f"?metric={AGED}&range=1h")
    raw = api_get(aged.base_url, f"/query/raw?metric_name={AGED}")
    assert raw["series"] == []  # nothing raw is kept for the last hour
    assert "window=1m" in shown_query(page)  # "auto" picked the rollup that holds the range
    expect(page.locator("#chart-title")).to_have_text(f"{AGED} · 1m avg (auto)")
    expect(page.locator("#summary")).to_contain_text(f"Raw samples of {AGED} are kept from")
    expect(page.locator("#summary")).to_contain_text("showing 1m rollups")
    body = assert_page_matches_api(page, aged.base_url)
    assert sum(p["count"] for s in body["series"] for p in s["points"]) == 50

    act(page, lambda: page.select_option("#rollup", "raw"))  # asked for raw: says why it is empty
    assert shown_query(page).startswith("/query/raw?")
    expect(page.locator("#empty")).to_be_visible()
    expect(page.locator("#empty-title")).to_have_text("Nothing retained in this range")
    expect(page.locator("#empty-hint")).to_contain_text(f"Raw samples of {AGED} are kept from")
    expect(page.locator("#empty-hint")).to_contain_text("pick a coarser rollup")
    assert table_rows(page) == []

    act(page, lambda: page.select_option("#metric", CPU))  # a metric with raw data: no notice
    expect(page.locator("#summary")).not_to_contain_text("kept from")


def test_a_shared_url_restores_the_view(seed: Seed, page: Page) -> None:
    view = {"metric": CPU, "range": "24h", "rollup": "5m", "filter": '{host=~"server1"}'}
    query = httpx.QueryParams({**view, "anomalies": "1", "threshold": "2.5", "refresh": "1m"})
    open_dashboard(page, seed.base_url, f"?{query}")
    assert page.locator("#metric").input_value() == CPU
    assert page.locator("#range").input_value() == "24h"
    assert page.locator("#rollup").input_value() == "5m"
    assert page.locator("#filter").input_value() == '{host=~"server1"}'
    assert page.locator("#anomalies").is_checked()
    assert page.locator("#threshold").input_value() == "2.5"
    assert page.locator("#refresh").input_value() == "1m"
    assert_no_error(page)
    assert [d["label"] for d in chart_datasets(page) if d["type"] == "line"] == [
        "host=server1, region=us-west"
    ]
    assert_page_matches_api(page, seed.base_url)

    act(page, lambda: page.select_option("#refresh", "10s"))
    assert url_params(page)["refresh"] == "10s"
    wait_loaded(page, loads(page), timeout=15)  # the next automatic refresh
    assert_no_error(page)


def test_an_api_key_unlocks_reads(live_server: Any, seed: Seed, page: Page) -> None:
    live_server.stop()
    live_server.env = {"READ_API_KEYS": "reader-key"}
    live_server.start()
    open_dashboard(page, seed.base_url, f"?metric={CPU}")
    error = page.locator("#error")
    expect(error).to_contain_text("API error 401")
    expect(error).to_contain_text("read API key is required")
    expect(page.locator("#apikey-form")).to_be_visible()  # opened for the user

    sent: list[str | None] = []
    page.on("request", lambda request: sent.append(request.headers.get("authorization")))
    page.fill("#apikey", "reader-key")
    act(page, lambda: page.click("#apikey-form button[type=submit]"))
    assert sent
    assert set(sent) == {"Bearer reader-key"}
    assert_no_error(page)
    expect(page.locator("#apikey-summary")).to_have_text("API key \N{CHECK MARK}")
    stored = page.evaluate("() => localStorage.getItem('metrics-dashboard.api-key')")
    assert stored == "reader-key"
    headers = {"Authorization": "Bearer reader-key"}
    assert_page_matches_api(page, seed.base_url, headers)


def test_missing_assets_say_how_to_install(seed: Seed, page: Page) -> None:
    page.route("**/vendor/**", lambda route: route.fulfill(status=404, body="not installed"))
    open_dashboard(page, seed.base_url, f"?metric={CPU}")
    notice = page.locator("#assets-notice")
    expect(notice).to_be_visible()
    expect(notice).to_contain_text("make install")
    expect(notice).to_contain_text("npm ci")
    assert len(table_rows(page)) == PAGE_SIZE  # the table still works without the chart


def test_only_the_page_its_files_and_allow_listed_vendor_files_are_served(live_server: Any) -> None:
    base = str(live_server.base_url)
    for path in ("/", "/dashboard"):
        page = httpx.get(f"{base}{path}")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert '<canvas id="chart"' in page.text
    served = {
        "/vendor/chart.js/chart.umd.min.js": "text/javascript",
        "/static/dashboard/main.js": "text/javascript",
        "/static/dashboard.css": "text/css",
    }
    for path, media_type in served.items():
        response = httpx.get(f"{base}{path}")
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith(media_type)
    refused = (
        "/vendor/chart.js/package.json",
        "/vendor/@kurkle/color/package.json",
        "/vendor/../package.json",
        "/static/%2e%2e/config.py",
        "/static/..%2fconfig.py",
        "/static/missing.js",
    )
    for path in refused:
        assert httpx.get(f"{base}{path}").status_code == 404, path
