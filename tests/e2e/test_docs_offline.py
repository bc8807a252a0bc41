"""`/docs` (Swagger UI) and `/redoc` (ReDoc) in a real browser with the network closed.

Every request the pages make to anything but the server under test is refused and recorded; the
pages must render every operation of `/openapi.json` and must not have tried to reach anything
else (a CDN, web fonts, a favicon host). What the pages' Content-Security-Policy refuses never
becomes a request; those refusals are recorded too: none on /docs, and on /redoc only ReDoc's
decorative sidebar logo.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Route, expect, sync_playwright

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"]
LOCAL_HOSTS = {"127.0.0.1", "localhost", "[::1]"}
# The one image ReDoc 2.5 always asks for; it hides the image when it does not load.
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"
METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


@pytest.fixture(params=["sqlite"])
def backend(request: pytest.FixtureRequest) -> str:
    """The pages do not depend on the backend."""
    return str(request.param)


@pytest.fixture
def browser(live_server: Any) -> Iterator[Browser]:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing: install Debian's chromium package (make browser)"
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class ClosedNetwork:
    """A browser context whose requests reach only the local server; the rest are recorded."""

    def __init__(self, browser: Browser) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.refused: list[str] = []
        self.failed_local: list[str] = []
        self.errors: list[str] = []
        self.csp_refused: list[str] = []
        self.context.route("**/*", self._route)

    def _route(self, route: Route) -> None:
        url = route.request.url
        parts = urlsplit(url)
        if parts.scheme in ("data", "blob") or parts.hostname in LOCAL_HOSTS:
            route.continue_()
        else:
            self.refused.append(url)
            route.abort("internetdisconnected")

    def _console(self, message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            self.csp_refused.append(message.text)

    def open(self, url: str) -> Page:
        page = self.context.new_page()
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("console", self._console)
        page.on(
            "response",
            lambda r: self.failed_local.append(f"{r.status} {r.url}") if r.status >= 400 else None,
        )
        page.goto(url)
        return page


@pytest.fixture
def network(browser: Browser) -> Iterator[ClosedNetwork]:
    closed = ClosedNetwork(browser)
    yield closed
    closed.context.close()


def operations(base_url: str) -> list[tuple[str, str, dict[str, Any]]]:
    schema = httpx.get(f"{base_url}/openapi.json").json()
    return [
        (method, path, operation)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def test_swagger_ui_renders_every_operation_offline(
    live_server: Any, network: ClosedNetwork
) -> None:
    base = str(live_server.base_url)
    expected = operations(base)
    page = network.open(f"{base}/docs")
    blocks = page.locator(".opblock")
    expect(blocks.first).to_be_visible(timeout=20_000)
    expect(blocks).to_have_count(len(expected))
    shown = {
        (
            block.locator(".opblock-summary-method").inner_text().strip().lower(),
            block.locator(".opblock-summary-path").get_attribute("data-path"),
        )
        for block in blocks.all()
    }
    assert shown == {(method, path) for method, path, _ in expected}
    expect(page.locator(".info .title")).to_contain_text("Metrics service")
    assert network.refused == []
    assert network.csp_refused == []
    assert network.failed_local == []
    assert network.errors == []


def test_redoc_renders_every_operation_offline(live_server: Any, network: ClosedNetwork) -> None:
    base = str(live_server.base_url)
    expected = operations(base)
    page = network.open(f"{base}/redoc")
    sections = page.locator("[data-section-id*='operation/']")
    expect(sections.first).to_be_attached(timeout=20_000)
    ids = page.eval_on_selector_all(
        "[data-section-id*='operation/']", "els => els.map((e) => e.dataset.sectionId)"
    )
    rendered = {section.rsplit("/", 1)[-1] for section in ids}
    assert rendered == {operation["operationId"] for _, _, operation in expected}
    for _method, _path, operation in expected:
        summary = operation.get("summary")
        if summary:
            expect(page.locator("h2", has_text=summary).first).to_be_attached()
    expect(page.locator("h1").first).to_contain_text("Metrics service")
    assert network.refused == []
    assert all(REDOC_LOGO in text for text in network.csp_refused), network.csp_refused
    assert network.failed_local == []
    assert network.errors == []
