"""The dashboard is the same page on every backend, and the HTTP suite checks each backend's API
answers; the browser tests run on SQLite only, to keep the suite within its time budget."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["sqlite"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)
