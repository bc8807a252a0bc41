"""The dashboard page, its own static files, and an allow-list of vendored npm files.

Chart.js, Swagger UI and ReDoc are installed from the npm registry (`package.json` +
`package-lock.json`, `npm ci`); only the files named in `app.assets.VENDOR_FILES` are served, from
the places `app.assets` describes (the installed package, or `node_modules/` of a checkout).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, HTMLResponse

from app.assets import INSTALL_HINT, VENDOR_FILES, vendor_path

PACKAGE_DIR: Final = Path(__file__).resolve().parents[2]
TEMPLATE_PATH: Final = PACKAGE_DIR / "templates" / "dashboard.html"
STATIC_DIR: Final = PACKAGE_DIR / "static"

MEDIA_TYPES: Final[dict[str, str]] = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}

# The page loads scripts and styles only from this origin and talks only to this origin.
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)

router = APIRouter(tags=["dashboard"])


def render_dashboard() -> str:
    """The page; the install notice is shown up front when Chart.js is missing."""
    html = TEMPLATE_PATH.read_text(encoding="utf-8")
    if vendor_path("chart.js/chart.umd.min.js") is None:
        html = html.replace('id="assets-notice" hidden', 'id="assets-notice"', 1)
    return html


def _page() -> HTMLResponse:
    return HTMLResponse(
        render_dashboard(),
        headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY, "Cache-Control": "no-cache"},
    )


@router.get("/", response_class=HTMLResponse, summary="The dashboard (HTML)")
def index() -> HTMLResponse:
    """The interactive dashboard: chart, table and anomaly overlay for one metric."""
    return _page()


@router.get("/dashboard", response_class=HTMLResponse, summary="The dashboard (HTML)")
def dashboard() -> HTMLResponse:
    """The interactive dashboard (same page as `/`)."""
    return _page()


def _file(path: Path) -> FileResponse:
    media_type = MEDIA_TYPES.get(path.suffix, "application/octet-stream")
    return FileResponse(path, media_type=media_type, headers={"Cache-Control": "no-cache"})


@router.get("/vendor/{name:path}", include_in_schema=False)
def vendor_file(name: str) -> FileResponse:
    """An allow-listed file from `node_modules` (e.g. `/vendor/chart.js/chart.umd.min.js`)."""
    path = vendor_path(name)
    if path is None:
        detail = INSTALL_HINT if name in VENDOR_FILES else f"no vendored file {name!r}"
        raise HTTPException(status_code=404, detail=detail)
    return _file(path)


@router.get("/static/{name:path}", include_in_schema=False)
def static_file(name: str) -> FileResponse:
    """A file of the dashboard's own from `app/static` (no directory listing, no escaping it)."""
    path = (STATIC_DIR / name).resolve()
    if not path.is_relative_to(STATIC_DIR) or path.suffix not in MEDIA_TYPES or not path.is_file():
        raise HTTPException(status_code=404, detail=f"no static file {name!r}")
    return _file(path)
