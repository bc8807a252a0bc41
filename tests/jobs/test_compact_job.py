"""The compact job (STORAGE_LAYOUT=blocks): as a process, in /jobs/status and /metrics, scheduled
by the server only with the block layout; killed with SIGKILL while it runs, it loses nothing
acknowledged, and a rerun completes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from conftest import ROOT, run_job, sql_rows, test_settings
from fastapi.testclient import TestClient

from app.matchers import canonical_labels
from app.model import SampleBatch
from app.storage.samples.block_table import SPAN_MS
from app.storage.samples.blocks_store import BlockSampleStore
from app.storage.store import Store
from app.timeutil import format_ms, now_ms
from app.validation import series_key

HEAD_ROWS_EXPECTED = True  # counts what compaction finds (tests/conftest.py: SUITE_COMPACT)
SERIES = 1000  # five chunks of series: the job commits several transactions
POINTS = 144  # per series, 100 s apart: two closed spans
WAIT_SECONDS = 120.0


def closed_start() -> int:
    """The start of the span three spans ago: it and the next are closed with any grace."""
    now = now_ms()
    return now - now % SPAN_MS - 3 * SPAN_MS


def seed(database_url: str, start: int) -> None:
    keys = [series_key("compacted", canonical_labels({"host": f"h{i:04d}"})) for i in range(SERIES)]
    stamps = start + np.arange(POINTS, dtype=np.int64) * 100_000
    batch = SampleBatch(
        keys=keys,
        series_index=np.repeat(np.arange(SERIES, dtype=np.int64), POINTS),
        ts=np.tile(stamps, SERIES),
        values=np.round(np.sin(np.arange(SERIES * POINTS) / 7.0) * 100, 3),
    )

    async def go() -> None:
        store = Store.open(test_settings(database_url, storage_layout="blocks"))
        assert isinstance(store.samples, BlockSampleStore)
        # Into the head, for compaction to find: a bulk write would go straight into blocks.
        store.samples.direct_min_rows = SERIES * POINTS + 1
        try:
            result = await store.append(batch)
            assert result.raw == SERIES * POINTS
        finally:
            await store.close()

    asyncio.run(go())


def read_all(database_url: str) -> tuple[list[int], list[int], list[int]]:
    """Every sample of the seeded series, through the block store: ids, times, value bits."""

    async def go() -> tuple[list[int], list[int], list[int]]:
        store = Store.open(test_settings(database_url, storage_layout="blocks"))
        try:
            async with store.engines.reader.connect() as conn:
                found = await conn.exec_driver_sql("SELECT id FROM series")
                ids = [int(r[0]) for r in found.all()]
                sids, ts, values = await store.samples.read(conn, ids, 0, now_ms(), 10**9)
        finally:
            await store.close()
        return sids.tolist(), ts.tolist(), values.view(np.int64).tolist()

    return asyncio.run(go())


def count(database_url: str, sql: str) -> int:
    return int(sql_rows(database_url, sql)[0][0])


def start_job(database_url: str) -> subprocess.Popen[str]:
    env = {**os.environ, "DATABASE_URL": database_url, "STORAGE_LAYOUT": "blocks"}
    return subprocess.Popen(
        [sys.executable, "-m", "app.jobs.compact_job"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.01)


def test_sigkill_mid_compaction_loses_nothing_and_a_rerun_completes(database_url: str) -> None:
    start = closed_start()
    seed(database_url, start)
    acknowledged = read_all(database_url)
    assert len(acknowledged[0]) == SERIES * POINTS
    kills = 0
    while True:
        job = start_job(database_url)
        blocks = count(database_url, "SELECT count(*) FROM blocks")
        # Kill it as soon as a chunk has committed (or at once, the first time): in the middle
        # of the next chunk's transaction, or of its start-up.
        if kills > 0:

            def committed(before: int = blocks, running: subprocess.Popen[str] = job) -> bool:
                now = count(database_url, "SELECT count(*) FROM blocks")
                return running.poll() is not None or now > before

            wait_for(committed, "a committed chunk")
        job.kill()
        _, err = job.communicate(timeout=WAIT_SECONDS)
        assert read_all(database_url) == acknowledged, err
        if job.returncode == 0:
            break
        kills += 1
        if kills >= 4:
            break
    assert kills >= 2
    done = run_job(database_url, "compact", STORAGE_LAYOUT="blocks")
    assert "blocks written" in done.stdout
    assert read_all(database_url) == acknowledged
    assert count(database_url, "SELECT count(*) FROM samples") == 0
    assert count(database_url, "SELECT count(*) FROM blocks") == 2 * SERIES
    assert count(database_url, "SELECT sum(count) FROM blocks") == SERIES * POINTS


def test_job_reports_in_status_and_metrics(
    make_client: Callable[..., TestClient], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STORAGE_LAYOUT", raising=False)  # the default layout: blocks
    seed(database_url, closed_start())
    client = make_client()
    done = run_job(database_url, "compact")
    assert f"rows compacted: {SERIES * POINTS}, blocks written: {2 * SERIES}" in done.stdout
    job = client.get("/jobs/status").json()["jobs"]["compact"]
    assert job["runs"] == 1 and job["status"] == "ok" and job["last_error"] is None
    scraped = client.get("/metrics").text
    assert 'metrics_job_runs{job="compact"} 1.0' in scraped
    assert 'metrics_job_last_success{job="compact"} 1.0' in scraped
    # A raw query answers from the blocks.
    start = closed_start()
    window = {"start_time": format_ms(start), "end_time": format_ms(start + 2 * SPAN_MS)}
    params = {"metric_name": "compacted", "label": "host:h0007", **window}
    answer = client.get("/query/raw", params=params)
    assert answer.status_code == 200, answer.text
    points = answer.json()["series"][0]["points"]
    assert len(points) == POINTS and points[0]["timestamp"] == format_ms(start)


def test_with_rows_the_job_has_nothing_to_do(database_url: str) -> None:
    done = run_job(database_url, "compact", STORAGE_LAYOUT="rows")
    assert "nothing to compact: STORAGE_LAYOUT=rows" in done.stdout


def test_the_server_schedules_it_only_with_blocks(
    make_client: Callable[..., TestClient], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STORAGE_LAYOUT", raising=False)  # the default layout: blocks

    def runs(client: TestClient) -> Any:
        return client.get("/jobs/status").json()["jobs"]["compact"]["runs"]

    rows = make_client(scheduler_enabled=True, storage_layout="rows")
    wait_for(lambda: rows.get("/jobs/status").json()["jobs"]["rollup"]["runs"] > 0, "rollup")
    assert runs(rows) == 0
    blocks = make_client(scheduler_enabled=True)
    wait_for(lambda: runs(blocks) > 0, "a compact run")
