"""The documentation keeps up with the code: every setting is in README.md's configuration table,
with its default, and described in its Field; the two commands a new user needs come first."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic.fields import FieldInfo

from app.config import Settings, parse_duration

README = Path(__file__).resolve().parents[1] / "README.md"
QUICK_START_LINES = 40


def config_table() -> dict[str, list[str]]:
    """Rows of the table under '## Configuration': variable name -> its cells, backticks kept."""
    text = README.read_text(encoding="utf-8")
    section = re.search(r"^## Configuration\n(.*?)(?=^## )", text, re.M | re.S)
    assert section is not None, "README.md has no '## Configuration' section"
    rows: dict[str, list[str]] = {}
    for line in section.group(1).splitlines():
        if not line.startswith("|"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        name = cells[0].strip("`")
        if re.fullmatch(r"[A-Z][A-Z0-9_]*", name):
            rows[name] = cells
    return rows


def documented_default(cell: str) -> str:
    """The first `code` span of a default cell, or '' when there is none (an empty default)."""
    found = re.search(r"`([^`]*)`", cell)
    return found.group(1) if found else ""


def same_default(text: str, default: object) -> bool:
    if isinstance(default, timedelta):
        return parse_duration(text) == default
    if isinstance(default, bool):
        return text.lower() == str(default).lower()
    if isinstance(default, int):
        return text.replace(",", "").replace("_", "") == str(default)
    if isinstance(default, list):
        return text == ",".join(default)
    return text == str(default)


FIELDS = sorted(Settings.model_fields.items())


@pytest.mark.parametrize(("name", "field"), FIELDS, ids=[name for name, _ in FIELDS])
def test_every_setting_is_in_the_readme_table(name: str, field: FieldInfo) -> None:
    assert name.upper() in config_table(), f"{name.upper()} is missing from README.md's table"


@pytest.mark.parametrize(("name", "field"), FIELDS, ids=[name for name, _ in FIELDS])
def test_every_setting_has_a_description(name: str, field: FieldInfo) -> None:
    description = field.description or ""
    assert description.strip(), f"Settings.{name} has no Field(description=...)"


@pytest.mark.parametrize(("name", "field"), FIELDS, ids=[name for name, _ in FIELDS])
def test_readme_defaults_match_the_code(name: str, field: FieldInfo) -> None:
    cells = config_table().get(name.upper())
    if cells is None:
        pytest.skip("not in the table (reported by the test above)")
    default = field.get_default(call_default_factory=True)
    written = documented_default(cells[1])
    assert same_default(written, default), f"{name.upper()}: README {written!r}, code {default!r}"


def test_table_names_only_real_settings() -> None:
    known = {name.upper() for name in Settings.model_fields}
    assert set(config_table()) <= known, set(config_table()) - known


def test_quick_start_comes_first() -> None:
    head = "\n".join(README.read_text(encoding="utf-8").splitlines()[:QUICK_START_LINES])
    assert "make run" in head
    assert "make test" in head
