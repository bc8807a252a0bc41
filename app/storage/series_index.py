"""Series lookups across metrics for the Prometheus query API: series by label matchers (the
metric name as `__name__`, by equality or regex), optionally only those with a sample in a time
range; label names and values. Samples themselves are read through the sample store
(app.storage.samples).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVarTuple

import numpy as np
from sqlalchemy import ColumnElement, Select, func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.matchers import LABEL_NAME_RE, Matcher, matches_all
from app.storage import dialect, schema
from app.storage.reads import RollupData, SeriesRef

NAME = "__name__"
_Ts = TypeVarTuple("_Ts")
NAME_CHUNK = 500


@dataclass(frozen=True)
class IndexedSeries:
    id: int
    metric: str
    labels: dict[str, str]  # without the metric name

    @property
    def all_labels(self) -> dict[str, str]:
        return {**self.labels, NAME: self.metric}


@dataclass(frozen=True)
class TimeBounds:
    """Only series with a sample in [start_ms, end_ms]."""

    start_ms: int
    end_ms: int


# A condition on `series.id`: the series has a sample in the time bounds of a query
# (SampleStore.has_samples_in); None for no bounds.
Within = ColumnElement[bool] | None


def _with_samples(query: Select[*_Ts], within: Within) -> Select[*_Ts]:
    return query if within is None else query.where(within)


async def metric_names(conn: AsyncConnection, within: Within = None) -> list[str]:
    s = schema.series.c
    query = _with_samples(select(s.metric_name).distinct(), within)
    return sorted((await conn.execute(query)).scalars())


async def find_series(
    conn: AsyncConnection, matchers: Sequence[Matcher], within: Within = None
) -> list[IndexedSeries]:
    """Series matching every matcher (and `within`), in id order."""
    s = schema.series.c
    name_matchers = [m for m in matchers if m.name == NAME]
    base = select(s.id, s.metric_name, s.labels)
    for m in matchers:
        if m.is_exact and m.name != NAME and LABEL_NAME_RE.fullmatch(m.name):
            base = base.where(dialect.label_equals(conn, m.name, m.value))
    exact_name = next((m.value for m in name_matchers if m.is_exact), None)
    if exact_name is not None:
        queries = [base.where(s.metric_name == exact_name)]
    elif name_matchers:
        names = [n for n in await metric_names(conn) if matches_all(name_matchers, {NAME: n})]
        chunks = [names[i : i + NAME_CHUNK] for i in range(0, len(names), NAME_CHUNK)]
        queries = [base.where(s.metric_name.in_(chunk)) for chunk in chunks]
    else:
        queries = [base]
    found = []
    for query in queries:
        for sid, metric, labels in await conn.execute(_with_samples(query, within)):
            series = IndexedSeries(sid, metric, labels)
            if matches_all(matchers, series.all_labels):
                found.append(series)
    found.sort(key=lambda series: series.id)
    return found


async def label_names(conn: AsyncConnection) -> list[str]:
    """Every label name of every series, with `__name__` (SQL per backend: JSON keys)."""
    if dialect.is_postgres(conn):
        sql = "SELECT DISTINCT jsonb_object_keys(labels) FROM series"
    else:
        sql = "SELECT DISTINCT j.key FROM series, json_each(series.labels) AS j"
    names = {str(row[0]) for row in await conn.execute(text(sql))}
    count = (await conn.execute(select(func.count()).select_from(schema.series))).scalar_one()
    if count:
        names.add(NAME)
    return sorted(names)


async def label_values(conn: AsyncConnection, name: str) -> list[str]:
    """Every value of one label over all series."""
    if name == NAME:
        return await metric_names(conn)
    if not LABEL_NAME_RE.fullmatch(name):
        return []  # no stored series can have such a label
    column = schema.series.c.labels[name].as_string()
    query = select(column).distinct().where(column.is_not(None))
    return sorted(str(v) for v in (await conn.execute(query)).scalars())


@dataclass
class RollupWindows:
    """Store.rollup_windows' answer: `rollups[i]` belongs to `refs[i]`; edge samples by id."""

    refs: list[SeriesRef]
    rollups: list[RollupData]
    has_nan: bool
    edge_sids: np.ndarray
    edge_ts: np.ndarray
    edge_values: np.ndarray
