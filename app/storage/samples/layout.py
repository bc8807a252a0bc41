"""Which sample store a `Store` opens: the layout STORAGE_LAYOUT names (docs/storage.md)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from app.config import Settings
from app.storage.engine import Engines
from app.storage.samples.blocks_store import BlockSampleStore
from app.storage.samples.protocol import SampleStore
from app.storage.samples.rows import RowSampleStore


def open_sample_store(
    settings: Settings,
    engines: Engines,
    clock: Callable[[], int],
    defaults: Mapping[str, int],
    grace_ms: int,
) -> SampleStore:
    if settings.storage_layout == "blocks":
        return BlockSampleStore(settings, engines, clock, defaults, grace_ms)
    return RowSampleStore(settings, engines, clock, defaults, grace_ms)
