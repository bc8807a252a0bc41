"""Wheel and sdist build hook: carry the front-end assets from node_modules into the package.

`app/assets.py` lists the npm files the service serves (Chart.js, Swagger UI, ReDoc) and their
licences. The wheel gets copies under `app/vendor/`, where an installed service finds them without
Node.js; the sdist keeps them under `node_modules/`, so a wheel built from it finds them there.
They are taken from `node_modules/` as `npm ci` installed them from package-lock.json, and are
never committed. The build stops, saying what to run, when they are missing. Editable installs
take nothing: the checkout serves node_modules itself.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


def load_assets_module(root: Path) -> ModuleType:
    """app/assets.py on its own (standard library only), without importing the app."""
    spec = importlib.util.spec_from_file_location("_metrics_assets", root / "app" / "assets.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def asset_files(root: Path) -> list[str]:
    """Paths inside node_modules of every file the package must carry."""
    assets = load_assets_module(root)
    return sorted({*assets.VENDOR_FILES.values(), *assets.BUNDLED_LICENSES})


class FrontEndAssetsHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name == "wheel" and version == "editable":
            return
        root = Path(self.root)
        modules = root / "node_modules"
        files = asset_files(root)
        missing = [name for name in files if not (modules / name).is_file()]
        if missing:
            raise RuntimeError(
                "the front-end assets are not installed in node_modules/ (missing: "
                + ", ".join(missing)
                + "): run `npm ci` (or `make assets`) before building the package"
            )
        target = "app/vendor" if self.target_name == "wheel" else "node_modules"
        for name in files:
            build_data["force_include"][str(modules / name)] = f"{target}/{name}"
