"""`/docs` and `/redoc` load everything from the service itself (tests/e2e renders them offline)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.assets import VENDOR_FILES

ATTRIBUTE_URL = re.compile(r"""(?:src|href)=["']([^"']+)["']""")


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_pages_refer_only_to_files_of_the_service(shared_client: TestClient, path: str) -> None:
    answer = shared_client.get(path)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    urls = ATTRIBUTE_URL.findall(answer.text)
    assert urls, answer.text
    for url in urls:
        assert url.startswith("/vendor/"), url
        assert shared_client.get(url).status_code == 200, url
    assert "/openapi.json" in answer.text
    policy = answer.headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert "connect-src 'self'" in policy
    assert "img-src 'self' data:" in policy


def test_the_inline_start_script_of_swagger_ui_is_allowed_by_its_hash(
    shared_client: TestClient,
) -> None:
    answer = shared_client.get("/docs")
    assert "SwaggerUIBundle(" in answer.text
    assert '"validatorUrl": null' in answer.text
    assert re.search(
        r"script-src 'self' 'sha256-[A-Za-z0-9+/=]+'", answer.headers["content-security-policy"]
    )
    assert (
        "'unsafe-inline'"
        not in answer.headers["content-security-policy"].split("script-src")[1].split(";")[0]
    )


def test_vendor_files_have_their_media_types(shared_client: TestClient) -> None:
    types = {
        ".js": "text/javascript",
        ".css": "text/css",
        ".png": "image/png",
        ".map": "application/json",
    }
    for name in VENDOR_FILES:
        answer = shared_client.get(f"/vendor/{name}")
        assert answer.status_code == 200, name
        assert answer.headers["content-type"].startswith(types[Path(name).suffix]), name


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_missing_assets_give_a_page_that_says_how_to_install_them(
    shared_client: TestClient, path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASSETS_DIR", str(tmp_path))
    answer = shared_client.get(path)
    assert answer.status_code == 200
    assert "make install" in answer.text
    assert "npm ci" in answer.text
    assert "<script" not in answer.text
    missing = shared_client.get("/vendor/swagger-ui-dist/swagger-ui-bundle.js")
    assert missing.status_code == 404
    assert "make install" in missing.json()["detail"]
