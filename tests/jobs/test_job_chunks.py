"""The rollup and retention jobs work in short transactions, and writes take turns with them
(issue 17, finding 7; docs/rollups-and-retention.md#concurrent-jobs-and-writers).

Store.between_job_chunks is awaited before each of a job run's transactions; these tests hook
writes in there, so a write happens while a run is in progress, between two of its
transactions, exactly there and not by a race of timing. With one bucket or one series per
transaction, every boundary of a run gets a write, and what is stored afterwards must equal a
brute-force aggregation of the acknowledged samples; writes older than the raw floor follow #12
(into an hour whose raw samples are not dropped yet: raw, rolled up before they go; into an hour
already dropped: refused, nothing written)."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from collections import defaultdict
from typing import Any

import numpy as np
import pytest
from conftest import run_with_store as run
from sqlalchemy import text

from app.config import Settings
from app.jobs.runner import run_once
from app.model import SampleBatch
from app.services.rollup import BY_NAME, RESOLUTIONS
from app.storage import maintenance
from app.storage.samples.blocks_store import BlockSampleStore
from app.storage.store import HistoryConflict, Store
from app.validation import series_key

HOUR = 3_600_000
HOSTS = ("h0", "h1", "h2")
DEADLOCK_GUARD_SECONDS = 120  # not a timing assertion: a write that never finishes fails
_metrics = itertools.count()

Truth = dict[tuple[str, int], float]


def batch(metric: str, rows: list[tuple[str, int, float]]) -> SampleBatch:
    keys = [series_key(metric, f'{{"host":"{h}"}}'.encode()) for h in HOSTS]
    return SampleBatch(
        keys=keys,
        series_index=np.array([HOSTS.index(r[0]) for r in rows], dtype=np.int64),
        ts=np.array([r[1] for r in rows], dtype=np.int64),
        values=np.array([r[2] for r in rows], dtype=np.float64),
    )


def expected(truth: Truth, width: int, since: int) -> dict[tuple[str, int], tuple[Any, ...]]:
    grouped: dict[tuple[str, int], list[tuple[int, float]]] = defaultdict(list)
    for (host, ts), value in truth.items():
        if ts - ts % width >= since:
            grouped[(host, ts - ts % width)].append((ts, value))
    out = {}
    for key, points in grouped.items():
        values = [v for _, v in points]
        out[key] = (len(values), sum(values), min(values), max(values), max(points)[1])
    return out


async def served(store: Store, metric: str, window: str, start: int, end: int) -> dict[Any, Any]:
    series, _ = await store.select_rollup(metric, [], BY_NAME[window], start, end)
    out = {}
    for s in series:
        columns = zip(
            s.bucket.tolist(),
            s.count.tolist(),
            s.sum.tolist(),
            s.min.tolist(),
            s.max.tolist(),
            s.last.tolist(),
            strict=True,
        )
        for bucket, *agg in columns:
            out[(s.labels["host"], bucket)] = tuple(agg)
    return out


async def stored(store: Store, metric: str, window: str, since: int) -> dict[Any, Any]:
    """The rows the rollup table itself holds."""
    async with store.engines.reader.connect() as conn:
        rows = await conn.execute(
            text(
                f"SELECT s.labels, r.bucket, r.count, r.sum, r.min, r.max, r.last"
                f" FROM rollup_{window} r JOIN series s ON s.id = r.series_id"
                f" WHERE s.metric_name = :m AND r.bucket >= :since"
            ),
            {"m": metric, "since": since},
        )
        out = {}
        for labels, bucket, *agg in rows:
            host = (labels if isinstance(labels, dict) else json.loads(labels))["host"]
            out[(host, int(bucket))] = tuple(agg)
    return out


async def job(store: Store, settings: Settings, name: str, now: int) -> None:
    assert await run_once(store, settings, name, wait_seconds=60, now=now) is not None


def base() -> tuple[int, int]:
    """(now, t0): now half past the current hour (every earlier bucket is closed, grace
    included), t0 three hours before the current hour."""
    hour = int(time.time() * 1000) // HOUR * HOUR
    return hour + HOUR // 2, hour - 3 * HOUR


async def no_writes() -> None:
    await asyncio.sleep(0)


@pytest.mark.parametrize("name", ["rollup", "retention"])
def test_a_write_completes_while_a_job_run_is_between_transactions(
    database_url: str, name: str
) -> None:
    """A write awaited inside the hook, that is, while the run has committed some of its work
    and has more to do, completes: the run holds no lock the write needs between its
    transactions (before, each job ran as one transaction under the process' write lock)."""
    metric = f"turns_{next(_metrics)}"
    now, t0 = base()
    seen: list[int] = []

    async def work(store: Store, settings: Settings) -> None:
        rows = [(h, t0 + m * 60_000, float(m)) for h in HOSTS for m in range(5)]
        await store.append(batch(metric, rows))
        calls = itertools.count(1)

        async def hook() -> None:
            if next(calls) == 3:
                pending = (await store.pending_invalidations())["1m"]
                write = store.append(batch(metric, [("h0", now - 1000, 1.0)]))
                await asyncio.wait_for(write, DEADLOCK_GUARD_SECONDS)
                seen.append(pending)

        store.clock = lambda: now
        store.between_job_chunks = hook
        await job(store, settings, name, now)
        assert (await store.pending_invalidations())["1m"] >= 1  # the write's open minute
        raw, _ = await store.select_raw(metric, [], now - 1000, now - 1000, 10)
        assert [s.ts.tolist() for s in raw] == [[now - 1000]]

    run(database_url, work, job_chunk_buckets=1, job_chunk_series=1)
    assert seen, "the run never paused between transactions"
    if name == "rollup":
        assert seen[0] > 0  # marks were still waiting: the run was in progress


@pytest.mark.parametrize("seed", [1, 2])
def test_chunked_jobs_with_writes_between_every_transaction_stay_exact(
    database_url: str, seed: int
) -> None:
    """Rollup and retention runs, one bucket or one series per transaction, with writes before
    each transaction: late samples into closed (claimed or not yet claimed) buckets, overwrites,
    and history behind the raw floor into hours whose raw samples a later transaction of the
    same run drops, or that one before it dropped. Afterwards every bucket stored and served
    equals brute force over the acknowledged samples, raw answers hold exactly those from the
    floor on, and nothing older is left raw."""
    rng = random.Random(seed)
    metric = f"chunks_{next(_metrics)}"
    now, t0 = base()
    cut = now - now % HOUR - HOUR  # raw retention 1h for this metric
    truth: Truth = {}
    tally = {"late": 0, "history raw": 0, "history refused": 0}

    def value() -> float:
        return rng.randint(-40, 40) / 4  # exact sums

    async def raw_backed(store: Store, host: str, ts: int) -> bool:
        hour = ts - ts % HOUR
        found = await store.find_series_by_matchers([], None)
        ids = [s.id for s in found if s.labels.get("host") == host and s.metric == metric]
        sids, _, _ = await store.read_samples(ids, hour, hour + HOUR - 1, 1)
        return bool(sids.size)

    async def write(store: Store, rows: list[tuple[str, int, float]]) -> None:
        result = store.append(batch(metric, rows))
        await asyncio.wait_for(result, DEADLOCK_GUARD_SECONDS)
        truth.update({(h, ts): v for h, ts, v in rows})

    async def between(store: Store) -> None:
        host = rng.choice(HOSTS)
        late = t0 + rng.randrange(cut - t0, 3 * HOUR) // 15_000 * 15_000
        await write(store, [(host, late, value())])  # late, into a closed bucket mostly
        tally["late"] += 1
        host = rng.choice(HOSTS)
        old = t0 + rng.randrange(0, cut - t0) // 15_000 * 15_000
        if await raw_backed(store, host, old):
            await write(store, [(host, old, value())])  # raw, rolled up before it is dropped
            tally["history raw"] += 1
        else:
            with pytest.raises(HistoryConflict):
                await write(store, [(host, old, value())])
            tally["history refused"] += 1

    async def work(store: Store, settings: Settings) -> None:
        store.clock = lambda: now
        rows = [
            (h, t0 + m * 60_000 + s, value())
            for h in HOSTS
            for m in range(0, 180, 20)
            for s in (0, 30_000)
        ]
        await write(store, rows)
        await store.set_retention_override(metric, {"raw": HOUR})

        async def hook() -> None:
            await between(store)

        store.between_job_chunks = hook
        for name in rng.sample(["rollup", "retention", "rollup"], 3):
            await job(store, settings, name, now)
        store.between_job_chunks = no_writes
        await job(store, settings, "rollup", now)  # what was written behind the last run
        for res in RESOLUTIONS:
            want = expected(truth, res.ms, t0)
            assert await stored(store, metric, res.name, t0) == want, res.name
            assert await served(store, metric, res.name, t0, now) == want, res.name
        raw, _ = await store.select_raw(metric, [], t0, now, 1_000_000)
        got = {
            (s.labels["host"], t): v
            for s in raw
            for t, v in zip(s.ts.tolist(), s.values.tolist(), strict=True)
        }
        assert got == {k: v for k, v in truth.items() if k[1] >= cut}
        found = await store.find_series_by_matchers([], None)
        sids, _, _ = await store.read_samples([s.id for s in found], t0, cut - 1, 10)
        assert sids.size == 0  # nothing behind the cut-off is left raw

    run(database_url, work, job_chunk_buckets=1, job_chunk_series=1)
    assert tally["history raw"] and tally["history refused"], tally


BLOCKING_ROW = "INSERT INTO samples (series_id, ts, value) VALUES ($1, $2, 0)"
WAITING_ON_A_LOCK = (
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
    " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
)


async def until_waiting(database_url: str) -> None:
    """Until another connection waits on a lock (asked outside any transaction: within one,
    PostgreSQL answers from the statistics snapshot it took first)."""
    import asyncpg

    from app.storage.engine import asyncpg_dsn

    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        deadline = time.monotonic() + DEADLOCK_GUARD_SECONDS
        while not await conn.fetchval(WAITING_ON_A_LOCK):
            assert time.monotonic() < deadline, "no write ever waited on a lock"
            await asyncio.sleep(0.01)
    finally:
        await conn.close()


def test_retention_drops_raw_rows_beside_a_write_in_flight(database_url: str, backend: str) -> None:
    """PostgreSQL: once a run has recorded the horizons its row deletes set and waited out the
    writes in flight, its chunks take the retention lock in shared mode, so a chunk of raw drops
    commits while a write (holding the shared lock) is stuck inside its transaction; before,
    each chunk waited for every write in flight and made the writes after it wait too. The
    write then commits whole, and what the run dropped was rolled up first, exactly."""
    if backend != "postgresql":
        pytest.skip("SQLite runs one transaction at a time")
    import asyncpg

    from app.storage.engine import asyncpg_dsn

    short, other = f"short_{next(_metrics)}", f"other_{next(_metrics)}"
    now, t0 = base()
    cut = now - now % HOUR - HOUR  # raw retention 1h for `short`
    old = [(h, t0 + m * 60_000, float(m)) for h in HOSTS for m in range(0, 120, 7)]
    recent = [(h, now - 600_000 + i * 1000, float(i)) for h in HOSTS for i in range(400)]
    state: dict[str, Any] = {}

    async def horizon_recorded(store: Store) -> bool:
        async with store.engines.reader.connect() as conn:
            found = await conn.execute(
                text("SELECT dropped_before FROM raw_horizon WHERE metric_name = :m"), {"m": short}
            )
            return found.scalar_one_or_none() == cut

    async def hook(store: Store) -> None:
        if "write" not in state and await horizon_recorded(store):
            # The first transaction of the raw drops is next: a write gets stuck in flight.
            blocker = await asyncpg.connect(asyncpg_dsn(database_url))
            sid = await blocker.fetchval(
                "SELECT id FROM series WHERE metric_name = $1 AND labels->>'host' = 'h0'", other
            )
            await blocker.execute("BEGIN")
            await blocker.execute(BLOCKING_ROW, sid, recent[1][1])
            state["blocker"] = blocker
            state["write"] = asyncio.create_task(store.append(batch(other, recent)))
            await until_waiting(database_url)
        elif "write" in state and "released" not in state:
            # A chunk of raw drops committed while the write was still in flight.
            state["in flight after a chunk"] = not state["write"].done()
            state["released"] = True
            await state["blocker"].execute("ROLLBACK")
            await state["blocker"].close()
            await asyncio.wait_for(state["write"], DEADLOCK_GUARD_SECONDS)

    async def work(store: Store, settings: Settings) -> None:
        store.clock = lambda: now
        if isinstance(store.samples, BlockSampleStore):  # the write stays a head write (the
            store.samples.direct_min_rows = 10**9  # row lock), whichever span is closed now
        await store.append(batch(short, old))
        await store.append(batch(other, recent[:1]))
        await store.set_retention_override(short, {"raw": HOUR})

        async def between() -> None:
            await hook(store)

        store.between_job_chunks = between
        try:
            await asyncio.wait_for(job(store, settings, "retention", now), DEADLOCK_GUARD_SECONDS)
        finally:
            if "released" not in state and "blocker" in state:
                await state["blocker"].close()
        store.between_job_chunks = no_writes
        assert state.get("in flight after a chunk") is True, state
        truth = {(h, ts): v for h, ts, v in old}
        for res in RESOLUTIONS:
            assert await stored(store, short, res.name, t0) == expected(truth, res.ms, t0)
        found = await store.find_series_by_matchers([], None)
        ids = [s.id for s in found if s.metric == short]
        sids, _, _ = await store.read_samples(ids, t0, cut - 1, 10)
        assert sids.size == 0  # dropped
        raw, _ = await store.select_raw(other, [], 0, now, 10_000)
        assert sum(int(s.ts.size) for s in raw) == len(recent)

    run(database_url, work, job_chunk_series=1)


@pytest.mark.parametrize(
    ("timings", "size"),
    [
        ([], 31),  # a sixteenth of the cap to start with
        (  # cheap items: up to the cap, doubling at most
            [(31, 0.001), (62, 0.0011), (124, 0.0012), (248, 0.0013), (496, 0.0014)],
            500,
        ),
        ([(31, 0.002), (62, 0.0144)], 50),  # 0.2 ms per item over the 2 ms overhead: 50 fit
        # A cheap chunk grows nothing while a dear one is among the last WINDOW.
        ([(31, 0.002), (62, 0.0144), (50, 0.0021)], 50),
        ([(31, 0.002), (62, 1.0)], 5),  # never below a hundredth of the cap
        # A slow outlier is forgotten after WINDOW chunks.
        ([(31, 0.002), (62, 1.0)] + [(5, 0.0021)] * maintenance.ChunkSize.WINDOW, 10),
        ([(31, 0.002), (3, 0.003)], 62),  # a short last chunk changes nothing but the overhead
    ],
)
def test_chunks_are_sized_to_the_target(timings: list[tuple[int, float]], size: int) -> None:
    chunk = maintenance.ChunkSize(500, 0.010)
    for items, seconds in timings:
        chunk.took(items, seconds)
    assert chunk.size == size
