"""`/docs` (Swagger UI) and `/redoc` (ReDoc), with every file they load served by the service.

FastAPI's own pages load their scripts, styles, fonts and favicon from CDNs, so they are blank
without Internet access; these pages take them from `/vendor/` (`app.assets`). When the files are
not installed, the page says how to install them instead of staying blank.

A Content-Security-Policy keeps the browser from fetching anything from elsewhere: Swagger UI's
validator badge is switched off, and ReDoc's sidebar logo (an image on a CDN, hidden when it
does not load) is refused by the browser instead of being requested.
"""

from __future__ import annotations

import base64
import hashlib
import re
from html import escape
from typing import Final

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse

from app.assets import INSTALL_HINT, missing

SWAGGER_JS: Final = "swagger-ui-dist/swagger-ui-bundle.js"
SWAGGER_CSS: Final = "swagger-ui-dist/swagger-ui.css"
FAVICON: Final = "swagger-ui-dist/favicon-32x32.png"
REDOC_JS: Final = "redoc/redoc.standalone.js"

# Swagger UI and ReDoc set inline styles; Swagger UI is started by one inline script (its hash
# is added per page); ReDoc's search runs in a worker made from a blob.
CSP_TEMPLATE: Final = (
    "default-src 'self'; script-src 'self'{scripts}; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.S)

router = APIRouter()


def with_policy(page: HTMLResponse) -> HTMLResponse:
    """The page with a Content-Security-Policy that allows its own inline scripts only."""
    hashes = [
        "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
        for script in _INLINE_SCRIPT.findall(bytes(page.body).decode())
    ]
    page.headers["Content-Security-Policy"] = CSP_TEMPLATE.format(
        scripts="".join(f" {h}" for h in hashes)
    )
    page.headers["Cache-Control"] = "no-cache"
    return page


def _prefix(request: Request) -> str:
    """The path the app is mounted under (`root_path`, set by a proxy), for absolute URLs."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def _notice(title: str, names: list[str]) -> HTMLResponse:
    files = ", ".join(names)
    body = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title></head>"
        f"<body><h1>{escape(title)}</h1><p>{escape(INSTALL_HINT)}.</p>"
        f"<p>Missing: {escape(files)}. The schema itself is at "
        f"<a href='openapi.json'>/openapi.json</a>.</p></body></html>"
    )
    return HTMLResponse(body, headers={"Cache-Control": "no-cache"})


@router.get("/docs", include_in_schema=False)
def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI over `/openapi.json`."""
    title = f"{request.app.title} - Swagger UI"
    absent = missing(SWAGGER_JS, SWAGGER_CSS)
    if absent:
        return _notice(title, absent)
    prefix = _prefix(request)
    page = get_swagger_ui_html(
        openapi_url=f"{prefix}{request.app.openapi_url}",
        title=title,
        swagger_js_url=f"{prefix}/vendor/{SWAGGER_JS}",
        swagger_css_url=f"{prefix}/vendor/{SWAGGER_CSS}",
        swagger_favicon_url=f"{prefix}/vendor/{FAVICON}",
        # No badge from the public validator service (Swagger UI shows one for non-local hosts).
        swagger_ui_parameters={"validatorUrl": None},
    )
    return with_policy(page)


@router.get("/redoc", include_in_schema=False)
def redoc(request: Request) -> HTMLResponse:
    """ReDoc over `/openapi.json`, without web fonts (the system's fonts are used)."""
    title = f"{request.app.title} - ReDoc"
    absent = missing(REDOC_JS)
    if absent:
        return _notice(title, absent)
    prefix = _prefix(request)
    page = get_redoc_html(
        openapi_url=f"{prefix}{request.app.openapi_url}",
        title=title,
        redoc_js_url=f"{prefix}/vendor/{REDOC_JS}",
        redoc_favicon_url=f"{prefix}/vendor/{FAVICON}",
        with_google_fonts=False,
    )
    return with_policy(page)
