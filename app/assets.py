"""The front-end files the service serves from npm packages, and where they are found.

Chart.js (the dashboard), Swagger UI (`/docs`) and ReDoc (`/redoc`) come from the npm registry,
pinned by `package-lock.json` and installed with `npm ci` into `node_modules/`; none is committed.
Only the files in `VENDOR_FILES` are served, at `/vendor/<name>`. They are looked up in:

1. `ASSETS_DIR`, when set: another `node_modules` directory, and then only there;
2. `app/vendor/` inside the installed package: the wheel carries copies taken from
   `node_modules/` when it is built (`hatch_build.py`), so an installed service needs no Node.js;
3. `node_modules/` at the root of a source checkout.

Standard library only: the wheel build loads this file on its own.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

PACKAGE_DIR: Final = Path(__file__).resolve().parent
PACKAGED_DIR: Final = PACKAGE_DIR / "vendor"
CHECKOUT_DIR: Final = PACKAGE_DIR.parent / "node_modules"

# URL path under /vendor/ -> file path inside node_modules.
VENDOR_FILES: Final[dict[str, str]] = {
    "chart.js/chart.umd.min.js": "chart.js/dist/chart.umd.min.js",
    "chart.js/chart.umd.min.js.map": "chart.js/dist/chart.umd.min.js.map",
    "swagger-ui-dist/swagger-ui-bundle.js": "swagger-ui-dist/swagger-ui-bundle.js",
    "swagger-ui-dist/swagger-ui.css": "swagger-ui-dist/swagger-ui.css",
    "swagger-ui-dist/favicon-32x32.png": "swagger-ui-dist/favicon-32x32.png",
    "redoc/redoc.standalone.js": "redoc/bundles/redoc.standalone.js",
}

# Not served, but shipped beside the files above in the wheel.
BUNDLED_LICENSES: Final = (
    "chart.js/LICENSE.md",
    "swagger-ui-dist/LICENSE",
    "swagger-ui-dist/NOTICE",
    "redoc/LICENSE",
)

INSTALL_HINT: Final = "front-end assets are not installed: run `make install` (or `npm ci`)"


def search_dirs() -> tuple[Path, ...]:
    """The directories holding `node_modules`-shaped trees, in the order they are tried."""
    override = os.environ.get("ASSETS_DIR")
    if override:
        return (Path(override),)
    return (PACKAGED_DIR, CHECKOUT_DIR)


def vendor_path(name: str) -> Path | None:
    """The file behind `/vendor/{name}` when it is allow-listed and installed."""
    relative = VENDOR_FILES.get(name)
    if relative is None:
        return None
    for directory in search_dirs():
        path = directory / relative
        if path.is_file():
            return path
    return None


def missing(*names: str) -> list[str]:
    """The allow-listed names among `names` whose files are not installed."""
    return [name for name in names if vendor_path(name) is None]
