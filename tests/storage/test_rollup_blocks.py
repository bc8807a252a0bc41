"""Rollup blocks (app.storage.rollup_blocks): the compact job folds closed days of the rollup
tables into `rollup_blocks`, and every answer stays what it was: bit for bit after a fold, equal
to brute force after late writes into a folded day and the rollup job, with history's refusals
where they applied before, and retention dropping what it drops from rows.

Samples lie in the UTC day that ended between 24 and 48 hours ago (closed, within raw
retention); jobs run in this process through the job runner at the real time."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import fresh_database, run_inline, run_migrate, sql_rows, test_settings
from rollup_oracle import brute_force_buckets

from app.model import SampleBatch
from app.services.rollup import RESOLUTIONS
from app.storage.blocks.rollup_codec import DAY_MS, decode_day
from app.storage.store import Store
from app.storage.writes import HistoryConflict
from app.validation import series_key

HOUR = 3_600_000
HOSTS = ("h0", "h1", "h2")
STALE = 0x7FF0000000000002
SPECIAL = [STALE, 0x7FF8000000000001, 0x7FF0000000000000, 0xFFF0000000000000, 0x8000000000000000]
_metrics = itertools.count()
Served = dict[tuple[str, str, int], tuple[int, ...]]


def closed_day() -> int:
    now = int(time.time() * 1000)
    return now - now % DAY_MS - 2 * DAY_MS


def batch(metric: str, rows: list[tuple[int, int, float]]) -> SampleBatch:
    """Rows of (host index, ts, value)."""
    keys = [series_key(metric, f'{{"host":"{h}"}}'.encode()) for h in HOSTS]
    return SampleBatch(
        keys=keys,
        series_index=np.array([r[0] for r in rows], dtype=np.int64),
        ts=np.array([r[1] for r in rows], dtype=np.int64),
        values=np.array([r[2] for r in rows], dtype=np.float64),
    )


def with_store(database_url: str, work: Callable[[Store], Awaitable[Any]]) -> Any:
    async def go() -> Any:
        store = Store.open(test_settings(database_url))
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(go())


def append(database_url: str, metric: str, rows: list[tuple[int, int, float]]) -> None:
    with_store(database_url, lambda store: store.append(batch(metric, rows)))


def served(database_url: str, metric: str, start: int, end: int) -> Served:
    """Every bucket /query/rollup's store call answers, per resolution: count and the bits of
    sum, min, max, sumsq and last."""

    async def work(store: Store) -> Served:
        out: Served = {}
        for res in RESOLUTIONS:
            series, _ = await store.select_rollup(metric, [], res, start, end)
            for s in series:
                floats = [getattr(s, n).view(np.uint64) for n in ("sum", "min", "max", "sumsq")]
                columns = (s.bucket, s.count, *floats, s.last.view(np.uint64))
                for bucket, *agg in zip(*(c.tolist() for c in columns), strict=True):
                    out[(res.name, s.labels["host"], int(bucket))] = tuple(agg)
        return out

    result: Served = with_store(database_url, work)
    return result


def brute_force(truth: dict[tuple[str, int], float], since: int) -> Served:
    out: Served = {}
    for res in RESOLUTIONS:
        for (host, bucket), agg in brute_force_buckets(truth, res.ms, since).items():
            floats = np.array(agg[1:6], dtype=np.float64).view(np.uint64).tolist()
            count, (total, low, high, sumsq, last) = agg[0], floats
            out[(res.name, host, bucket)] = (count, total, low, high, sumsq, last)
    return out


def counts(database_url: str, metric: str, day: int) -> tuple[int, int]:
    """Rows of the rollup tables in `day`, and rollup blocks, of the metric's series."""
    of_metric = f"series_id IN (SELECT id FROM series WHERE metric_name = '{metric}')"
    rows = sum(
        sql_rows(
            database_url,
            f"SELECT count(*) FROM rollup_{res.name} WHERE {of_metric}"
            f" AND bucket >= {day} AND bucket < {day + DAY_MS}",
        )[0][0]
        for res in RESOLUTIONS
    )
    blocks = sql_rows(database_url, f"SELECT count(*) FROM rollup_blocks WHERE {of_metric}")
    return int(rows), int(blocks[0][0])


def special_rows(day: int, seed: int) -> list[tuple[int, int, float]]:
    """Samples of every kind over the day: decimals, full-precision values, huge ones (infinite
    sums), NaN payloads and the stale marker (left out), ±Inf in one bucket (a NaN sum), -0.0."""
    rng = np.random.default_rng(seed)
    stamps = np.sort(rng.choice(DAY_MS // 10_000, size=3000, replace=False)) * 10_000 + day
    values = np.round(rng.normal(50, 20, stamps.size), 3)
    values[::7] = rng.normal(0, 1, values[::7].size)
    values[::53] = 1e305
    odd = rng.choice(stamps.size, size=60, replace=False)
    values[odd] = np.array(rng.choice(SPECIAL, size=odd.size), dtype=np.uint64).view(np.float64)
    hosts = rng.integers(0, len(HOSTS), size=stamps.size)
    rows = list(zip(hosts.tolist(), stamps.tolist(), values.tolist(), strict=True))
    both = [(0, day + 5 * 60_000, float("inf")), (0, day + 5 * 60_000 + 1, float("-inf"))]
    return rows + both


def test_fold_keeps_every_bucket_bit_for_bit(database_url: str, backend: str) -> None:
    metric, day = f"fold_{next(_metrics)}", closed_day()
    append(database_url, metric, special_rows(day, 1))
    run_inline(database_url, "rollup")
    before = served(database_url, metric, day - DAY_MS, day + 2 * DAY_MS)
    rows, blocks = counts(database_url, metric, day)
    assert rows == len(before) and blocks == 0
    detail = run_inline(database_url, "compact").detail
    assert f"rollup rows folded: {rows}" in detail
    assert counts(database_url, metric, day) == (0, len(HOSTS) * len(RESOLUTIONS))
    assert served(database_url, metric, day - DAY_MS, day + 2 * DAY_MS) == before
    if backend == "postgresql":  # rollup tables the fold emptied are truncated: no dead rows
        for res in RESOLUTIONS:
            size = sql_rows(database_url, f"SELECT pg_relation_size('rollup_{res.name}')")
            assert size == [(0,)], res.name
    # parts of the day: buckets at the range's edges come from the blocks as from rows
    part = (day + 7 * HOUR + 60_000, day + 13 * HOUR)
    expected = {k: v for k, v in before.items() if part[0] - part[0] % HOUR <= k[2] <= part[1]}
    got = served(database_url, metric, *part)
    assert got == {k: v for k, v in expected.items() if k in got} and got
    run_inline(database_url, "compact")  # nothing left to fold: the blocks stay as they are
    assert counts(database_url, metric, day) == (0, len(HOSTS) * len(RESOLUTIONS))
    assert served(database_url, metric, day - DAY_MS, day + 2 * DAY_MS) == before


def test_late_writes_into_a_folded_day_equal_brute_force(database_url: str) -> None:
    metric, day = f"late_{next(_metrics)}", closed_day()
    rng = np.random.default_rng(2)
    truth: dict[tuple[str, int], float] = {}

    def write(rows: list[tuple[int, int, float]]) -> None:
        append(database_url, metric, rows)
        truth.update({(HOSTS[h], ts): v for h, ts, v in rows})

    offsets = np.sort(rng.choice(DAY_MS // 15_000, size=2000, replace=False)) * 15_000
    quarters = rng.integers(-400, 400, offsets.size)  # exact sums in any order
    write([(i % 3, day + int(offsets[i]), int(k) / 4) for i, k in enumerate(quarters)])
    run_inline(database_url, "rollup")
    run_inline(database_url, "compact")
    assert counts(database_url, metric, day)[0] == 0
    whole = (day - DAY_MS, day + 2 * DAY_MS)
    first_h1 = next(ts for h, ts in truth if h == "h1")
    emptied = first_h1 - first_h1 % 60_000  # every sample of this h1 minute becomes a NaN
    late = [
        (0, day + 3 * HOUR + 1_000, 7.25),  # a new sample in a folded bucket or a new one
        (0, next(ts for h, ts in truth if h == "h0"), -3.5),  # an overwrite
        (2, day + DAY_MS - 1, 1.0),  # the day's last millisecond
    ]
    late += [(1, ts, np.nan) for h, ts in truth if h == "h1" and ts - ts % 60_000 == emptied]
    write(late)
    assert served(database_url, metric, *whole) == brute_force(truth, whole[0])  # marks, from raw
    run_inline(database_url, "rollup")
    assert served(database_url, metric, *whole) == brute_force(truth, whole[0])
    rows, blocks = counts(database_url, metric, day)
    assert rows > 0 and blocks < len(HOSTS) * len(RESOLUTIONS)  # unpacked days are rows again
    run_inline(database_url, "compact")
    assert counts(database_url, metric, day) == (0, len(HOSTS) * len(RESOLUTIONS))
    assert served(database_url, metric, *whole) == brute_force(truth, whole[0])


def test_history_into_a_folded_day_keeps_its_rules(database_url: str) -> None:
    """Raw retention of one day makes the closed day history: merged into rollups only, refused
    (HistoryConflict, nothing written) where a bucket holds data, also once folded."""
    metric, day = f"hist_{next(_metrics)}", closed_day()
    with_store(database_url, lambda s: s.set_retention_override(metric, {"raw": DAY_MS}))
    truth = {(HOSTS[0], day + m * 60_000): m / 4 for m in range(0, 300, 3)}
    append(database_url, metric, [(0, ts, v) for (_, ts), v in truth.items()])
    run_inline(database_url, "rollup")
    run_inline(database_url, "compact")
    assert counts(database_url, metric, day) == (0, len(RESOLUTIONS))
    whole = (day - DAY_MS, day + 2 * DAY_MS)
    before = served(database_url, metric, *whole)
    assert before == brute_force(truth, whole[0])
    for resent in ([(0, day + 3 * 60_000, 0.75)], [(0, day + 3 * 60_000 + 5, 1.0)]):
        with pytest.raises(HistoryConflict):  # the bucket holds data: in a block
            append(database_url, metric, resent)
        assert served(database_url, metric, *whole) == before
    assert counts(database_url, metric, day) == (0, len(RESOLUTIONS))  # rolled back
    fresh = [(0, day + 10 * HOUR + 30_000, 2.5), (1, day + 60_000, -1.0)]  # empty buckets
    append(database_url, metric, fresh)
    truth.update({(HOSTS[h], ts): v for h, ts, v in fresh})
    assert served(database_url, metric, *whole) == brute_force(truth, whole[0])
    run_inline(database_url, "compact")
    assert counts(database_url, metric, day)[0] == 0
    assert served(database_url, metric, *whole) == brute_force(truth, whole[0])


def test_retention_drops_and_trims_rollup_blocks(database_url: str) -> None:
    metric, day = f"ret_{next(_metrics)}", closed_day()
    append(database_url, metric, special_rows(day, 3))
    run_inline(database_url, "rollup")
    run_inline(database_url, "compact")
    whole = (day - DAY_MS, day + 2 * DAY_MS)
    before = served(database_url, metric, *whole)
    now = int(time.time() * 1000)
    aligned = now - now % HOUR
    cut_1m = day + 10 * HOUR  # inside the day: its 1m blocks are trimmed
    keep = {"raw": aligned - day, "1m": aligned - cut_1m, "5m": aligned - day - DAY_MS}
    with_store(database_url, lambda s: s.set_retention_override(metric, keep))
    run_inline(database_url, "retention", now=now)
    after = served(database_url, metric, *whole)
    assert after == {k: v for k, v in before.items() if k[0] == "1h" or (
        k[0] == "1m" and k[2] >= cut_1m)}  # fmt: skip
    of_metric = f"series_id IN (SELECT id FROM series WHERE metric_name = '{metric}')"
    left = sql_rows(
        database_url, f"SELECT resolution, payload FROM rollup_blocks WHERE {of_metric}"
    )
    assert sorted({r for r, _ in left}) == ["1h", "1m"]  # the 5m days went whole
    firsts = [int(decode_day(bytes(p)).bucket.min()) for r, p in left if r == "1m"]
    assert min(firsts) >= cut_1m


def test_marks_tables_left_empty_are_truncated(database_url: str, backend: str) -> None:
    """PostgreSQL: the rollup job truncates a marks table it emptied, so no dead tuples stay."""
    metric, day = f"marks_{next(_metrics)}", closed_day()
    append(database_url, metric, special_rows(day, 4))
    run_inline(database_url, "rollup")
    for res in RESOLUTIONS:
        assert sql_rows(database_url, f"SELECT count(*) FROM rollup_dirty_{res.name}") == [(0,)]
        if backend == "postgresql":
            size = sql_rows(database_url, f"SELECT pg_relation_size('rollup_dirty_{res.name}')")
            assert size == [(0,)]


@pytest.fixture(params=["sqlite", "postgresql"])
def own_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of this test's own: the downgrade changes its schema."""
    with fresh_database(str(request.param), tmp_path, "rollup_blocks_down") as url:
        yield url


def test_downgrade_unpacks_every_folded_day_into_rows(own_database: str) -> None:
    """Going back to the release before rollup blocks (`python -m app.migrate --downgrade
    0007`, as a process) turns every folded day back into rows of its resolution's table, bit
    for bit: the previous release, which reads only rows, answers the same."""
    url, metric, day = own_database, "down", closed_day()
    append(url, metric, special_rows(day, 3))
    run_inline(url, "rollup")
    before = served(url, metric, day - DAY_MS, day + 2 * DAY_MS)
    run_inline(url, "compact")
    assert counts(url, metric, day) == (0, len(HOSTS) * len(RESOLUTIONS))
    run_migrate(url, "--downgrade", "0007")
    tables = "SELECT count(*) FROM {} WHERE bucket >= {} AND bucket < {}"
    rows = sum(
        int(sql_rows(url, tables.format(f"rollup_{res.name}", day, day + DAY_MS))[0][0])
        for res in RESOLUTIONS
    )
    assert rows == len(before)
    run_migrate(url)  # back at head, with no block: the rows alone answer as before
    assert counts(url, metric, day) == (rows, 0)
    assert served(url, metric, day - DAY_MS, day + 2 * DAY_MS) == before
