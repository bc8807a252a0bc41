"""The service's version, from one place: `version` in pyproject.toml.

A source checkout (also an editable install) reads it from the pyproject.toml beside the `app`
package, so the version always belongs to the code that runs; an installed wheel reads it from its
package metadata, which the build took from the same file. `metrics-service --version`, the
OpenAPI page and the build-info endpoint all report `__version__`.
"""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path
from typing import Final

DISTRIBUTION: Final = "metrics-service"
PYPROJECT: Final = Path(__file__).resolve().parents[1] / "pyproject.toml"
UNKNOWN: Final = "0+unknown"


def checkout_version(pyproject: Path = PYPROJECT) -> str | None:
    """The version in a checkout's pyproject.toml, or None outside a checkout of this project."""
    try:
        project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
    except (OSError, tomllib.TOMLDecodeError):
        return None
    if project.get("name") != DISTRIBUTION or not isinstance(project.get("version"), str):
        return None
    return str(project["version"])


def installed_version() -> str | None:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return None


def find_version() -> str:
    return checkout_version() or installed_version() or UNKNOWN


__version__: Final = find_version()
