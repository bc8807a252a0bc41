"""What both line-protocol readers share: precisions, timestamps, the `db` label."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from app.timeutil import MAX_MS, MIN_MS
from app.validation import InvalidInput

Tags = tuple[tuple[str, str], ...]
# precision -> (multiplier to ms, divisor to ms); v1 and v2 spellings
PRECISIONS: dict[str, tuple[int, int]] = {
    "n": (1, 1_000_000),
    "ns": (1, 1_000_000),
    "u": (1, 1000),
    "us": (1, 1000),
    "µ": (1, 1000),
    "ms": (1, 1),
    "s": (1000, 1),
    "m": (60_000, 1),
    "h": (3_600_000, 1),
}


def precision_of(text: str | None) -> tuple[int, int]:
    if not text:
        return PRECISIONS["ns"]
    found = PRECISIONS.get(text)
    if found is None:
        raise InvalidInput(
            f"precision: {text!r} is not one of ns (n), us (u), ms, s, m, h; the default is ns"
        )
    return found


def stamp_to_ms(stamp: int, precision: tuple[int, int]) -> int | None:
    multiplier, divisor = precision
    ms = stamp * multiplier // divisor
    return ms if MIN_MS <= ms <= MAX_MS else None


def stamps_to_ms(stamps: np.ndarray, precision: tuple[int, int]) -> np.ndarray | None:
    """Vectorized stamp_to_ms of int64 stamps; None when any is out of range."""
    multiplier, divisor = precision
    if multiplier > 1:
        limit = MAX_MS // multiplier
        if stamps.size and not ((stamps >= -limit) & (stamps <= limit)).all():
            return None
        ms = stamps * multiplier
    else:
        ms = stamps // divisor
    if ms.size and not ((ms >= MIN_MS) & (ms <= MAX_MS)).all():
        return None
    return ms


def with_db(tags: Tags, db: str | None) -> Tags:
    if db and all(name != "db" for name, _ in tags):
        return (*tags, ("db", db))
    return tags


def merge_tags(tags: Tags, extra: Sequence[tuple[str, str]]) -> Tags:
    """Tags with `extra_label`s, which win over a tag of the same name."""
    if not extra:
        return tags
    names = {name for name, _ in extra}
    return (*(t for t in tags if t[0] not in names), *extra)
