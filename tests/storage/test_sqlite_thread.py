"""The one adapter over aiosqlite's private API checks at start-up that the installed version has
what it uses, and says which version lacks it."""

from __future__ import annotations

import aiosqlite
import pytest

from app.storage.samples import sqlite_thread


def test_the_pinned_aiosqlite_has_what_the_adapter_uses() -> None:
    sqlite_thread.check()


@pytest.mark.parametrize("name", ["_execute", "_conn"])
def test_a_version_without_it_fails_the_start_up(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.delattr(aiosqlite.Connection, name)
    with pytest.raises(sqlite_thread.DriverMismatch, match=aiosqlite.__version__):
        sqlite_thread.check()
