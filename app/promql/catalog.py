"""Series and label listings of the Prometheus API (`/series`, `/labels`, `/label/x/values`):
the union over several `match[]` selectors, optional time bounds, `limit` with its warning."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from app.matchers import Matcher
from app.storage.series_index import NAME, IndexedSeries, TimeBounds

TRUNCATED = "results truncated due to limit"


class Catalog(Protocol):
    async def find_series_by_matchers(
        self, matchers: Sequence[Matcher], bounds: TimeBounds | None = None
    ) -> list[IndexedSeries]: ...

    async def label_names(self, bounds: TimeBounds | None = None) -> list[str]: ...

    async def label_values(self, name: str, bounds: TimeBounds | None = None) -> list[str]: ...


def _limited(items: list[str], limit: int) -> tuple[list[str], list[str]]:
    if limit and len(items) > limit:
        return items[:limit], [TRUNCATED]
    return items, []


async def _matching(
    store: Catalog, sets: Sequence[tuple[Matcher, ...]], bounds: TimeBounds | None
) -> list[IndexedSeries]:
    found: dict[int, IndexedSeries] = {}
    for matchers in sets:
        for series in await store.find_series_by_matchers(matchers, bounds):
            found[series.id] = series
    return list(found.values())


async def series(
    store: Catalog, sets: Sequence[tuple[Matcher, ...]], bounds: TimeBounds | None, limit: int
) -> tuple[list[dict[str, str]], list[str]]:
    labels = [dict(sorted(s.all_labels.items())) for s in await _matching(store, sets, bounds)]
    labels.sort(key=lambda lb: list(lb.items()))
    if limit and len(labels) > limit:
        return labels[:limit], [TRUNCATED]
    return labels, []


async def label_names(
    store: Catalog, sets: Sequence[tuple[Matcher, ...]], bounds: TimeBounds | None, limit: int
) -> tuple[list[str], list[str]]:
    if not sets:
        return _limited(await store.label_names(bounds), limit)
    names: set[str] = set()
    for s in await _matching(store, sets, bounds):
        names.update(s.all_labels)
    return _limited(sorted(names), limit)


async def label_values(
    store: Catalog,
    name: str,
    sets: Sequence[tuple[Matcher, ...]],
    bounds: TimeBounds | None,
    limit: int,
) -> tuple[list[str], list[str]]:
    if not sets:
        return _limited(await store.label_values(name, bounds), limit)
    values = {
        s.all_labels[name] for s in await _matching(store, sets, bounds) if name in s.all_labels
    }
    return _limited(sorted(values), limit)


def unescape_label_name(name: str) -> str:
    """Prometheus' `U__` value-encoding escape of label names in URLs: `U__http_2e_status` is
    `http.status` (`_2e_` a hex code point, `__` an underscore). Invalid escaping leaves the
    name as it came, as in prometheus/common's UnescapeName."""
    if not name.startswith("U__"):
        return name
    body, out, i = name[3:], [], 0
    while i < len(body):
        if body[i] != "_":
            out.append(body[i])
            i += 1
            continue
        i += 1
        if i >= len(body):
            return name
        if body[i] == "_":
            out.append("_")
            i += 1
            continue
        end = body.find("_", i)
        code = body[i:end] if end >= 0 else ""
        if not 0 < len(code) <= 6 or any(c not in _HEX for c in code):
            return name
        point = int(code, 16)
        if point > 0x10FFFF or 0xD800 <= point <= 0xDFFF:
            return name
        out.append(chr(point))
        i = end + 1
    return "".join(out)


_HEX = frozenset("0123456789abcdefABCDEF")


__all__ = ["NAME", "label_names", "label_values", "series", "unescape_label_name"]
