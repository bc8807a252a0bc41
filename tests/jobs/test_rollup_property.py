"""Property: whatever the order of writes, clock ticks and jobs, every stored and served rollup
bucket equals a brute-force aggregation of the accepted samples (last write wins), raw queries
return exactly the accepted samples from the raw floor on, and every write is answered as the
rules of docs/rollups-and-retention.md say: stored raw, merged into rollups only, beyond retention,
or refused (422, nothing written) when history would merge into a bucket that holds data whose raw
samples are not kept.

Writes come in random order with duplicates and overwrites, late into already materialized
buckets, behind the raw floor (history), into hours whose raw samples have aged out but not been
dropped yet, and again (re-sent requests); the clock moves on by whole hours; jobs run in random
interleavings, retention before rollup, and two at once. The samples lie in the last three hours
of a UTC day that has closed when the clock starts, so the compact job folds that day's rollups
into rollup blocks (app.storage.rollup_blocks), and later writes, late samples and history land
in folded days; every check is made before and after a last fold.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Any

from conftest import sql_rows, test_settings
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from rollup_oracle import brute_force_buckets

from app.jobs.runner import run_once
from app.storage.blocks.rollup_codec import DAY_MS, decode_day
from app.storage.store import Store
from app.timeutil import format_ms

HOUR = 3_600_000
WIDTHS = {"1m": 60_000, "5m": 300_000, "1h": HOUR}
HOSTS = ("a", "b")
# Per-metric retention: raw 2h, 1m and 5m 3h, 1h 4h. With the clock at t0 + 4h30m + k hours the
# raw floor is t0 + (2 + k)h, the 1m and 5m cut-offs t0 + (1 + k)h, the 1h cut-off t0 + k h.
POLICY = {"raw": "2h", "1m": "3h", "5m": "3h", "1h": "4h"}
KEEP_H = {"raw": 2, "1m": 3, "5m": 3, "1h": 4}
_metric_numbers = itertools.count()

sample = st.tuples(
    st.sampled_from(HOSTS),
    st.integers(0, 3 * 60 - 1).map(lambda minute: minute * 60_000),  # offsets over 3 hours
    st.integers(0, 3).map(lambda s: s * 15_000),  # a few timestamps per minute
    st.integers(-50, 50).map(lambda v: v / 4),  # exact in binary floating point
)
writes = st.tuples(st.just("write"), st.lists(sample, min_size=1, max_size=8))
step = st.one_of(
    writes,
    writes,  # twice as likely as the others
    st.tuples(st.just("resend"), st.integers(0, 100)),
    st.tuples(st.just("tick"), st.just(1)),
    st.tuples(st.just("job"), st.sampled_from(["rollup", "retention", "both", "compact"])),
)


async def _jobs(database_url: str, names: list[str], now: int) -> None:
    """Run jobs concurrently at `now`, each with its own store, as separate runners would."""
    cfg = test_settings(database_url)
    stores = [Store.open(cfg) for _ in names]
    try:
        await asyncio.gather(
            *(
                run_once(s, cfg, n, wait_seconds=60, now=now)
                for s, n in zip(stores, names, strict=True)
            )
        )
    finally:
        for store in stores:
            await store.close()


Sample = tuple[str, int, float]  # host, ts, value


class Model:
    """The truth: every accepted sample (last write wins), what is still stored raw, and the
    clock."""

    def __init__(self, metric: str, t0: int) -> None:
        self.metric, self.t0, self.ticks = metric, t0, 0
        self.truth: dict[tuple[str, int], float] = {}
        self.raw_stored: set[tuple[str, int]] = set()
        self.sent: list[list[dict[str, Any]]] = []
        self.folded = False  # the compact job has run: writes may land in folded days

    @property
    def now(self) -> int:
        return self.t0 + 4 * HOUR + HOUR // 2 + self.ticks * HOUR

    def cutoff(self, kind: str) -> int:
        return self.now - self.now % HOUR - KEEP_H[kind] * HOUR

    def occupied(self, host: str, width: int, bucket: int) -> bool:
        return any(h == host and ts - ts % width == bucket for h, ts in self.truth)

    def raw_backed(self, host: str, ts: int) -> bool:
        hour = ts - ts % HOUR
        return any(h == host and t - t % HOUR == hour for h, t in self.raw_stored)

    def expect(self, samples: list[Sample]) -> tuple[dict[str, int], list[Sample]] | None:
        """The counts a write of `samples` is answered with and the samples it stores raw, or
        None for a refusal."""
        latest = {(h, ts): v for h, ts, v in samples}  # last write wins within the request
        counts = {"raw": 0, "rollups_only": 0, "beyond_retention": 0}
        to_raw: list[Sample] = []
        oldest = min(self.cutoff(r) for r in WIDTHS)
        for (host, ts), value in latest.items():
            if ts >= self.cutoff("raw"):
                counts["raw"] += 1
                to_raw.append((host, ts, value))
            elif ts < oldest:
                counts["beyond_retention"] += 1
            else:
                counts["rollups_only"] += 1
                if self.raw_backed(host, ts):
                    event("history into an hour whose raw samples are not dropped yet")
                    to_raw.append((host, ts, value))
                    continue
                for res, width in WIDTHS.items():
                    if ts >= self.cutoff(res) and self.occupied(host, width, ts - ts % width):
                        return None
        return counts, to_raw

    def write(self, client: TestClient, body: list[dict[str, Any]]) -> None:
        samples = [
            (item["labels"]["host"], int(item["timestamp"] * 1000), item["value"]) for item in body
        ]
        expected = self.expect(samples)
        if len(body) == 1:
            answer = client.post("/metrics/ingest", json=body[0])
        else:
            answer = client.post("/backfill/import", json={"metrics": body})
        if self.folded:
            event("a write after a fold")
        if expected is None:
            event("history refused: the bucket holds data")
            if self.folded:
                event("history refused after a fold")
            assert answer.status_code == 422, answer.text
            assert "already holds data whose raw samples are not kept" in answer.text
            return
        assert answer.status_code == 201, answer.text
        counts, to_raw = expected
        for kind, n in counts.items():
            if n and kind != "raw":
                event(f"accepted with {kind}")
        assert {k: answer.json()[k] for k in counts} == counts
        oldest = min(self.cutoff(r) for r in WIDTHS)
        for host, ts, value in samples:
            if ts >= oldest or ts >= self.cutoff("raw"):
                self.truth[(host, ts)] = value
        self.raw_stored.update((h, ts) for h, ts, _ in to_raw)

    def retention(self) -> None:
        self.raw_stored = {(h, ts) for h, ts in self.raw_stored if ts >= self.cutoff("raw")}

    def buckets(self, window: str) -> dict[tuple[str, int], tuple[int, float, float, float]]:
        """What resolution `window` holds: the buckets it still retains, of accepted samples."""
        found = brute_force_buckets(self.truth, WIDTHS[window], self.cutoff(window))
        return {key: agg[:4] for key, agg in found.items()}


def stored_buckets(database_url: str, model: Model, window: str) -> dict[tuple[str, int], Any]:
    """Rows of the rollup table laid over the buckets of rollup blocks (a row is newer)."""
    out = {}
    blocks = sql_rows(
        database_url,
        "SELECT s.labels, b.payload FROM rollup_blocks b JOIN series s ON s.id = b.series_id"
        f" WHERE s.metric_name = '{model.metric}' AND b.resolution = '{window}'",
    )
    if blocks:
        event(f"{window} buckets in rollup blocks")
    for labels, payload in blocks:
        host = (labels if isinstance(labels, dict) else json.loads(labels))["host"]
        day = decode_day(bytes(payload))
        columns = (day.bucket, day.count, day.sum, day.min, day.max)
        for bucket, *agg in zip(*(c.tolist() for c in columns), strict=True):
            if bucket >= model.cutoff(window):
                out[(host, int(bucket))] = tuple(agg)
    rows = sql_rows(
        database_url,
        f"SELECT s.labels, r.bucket, r.count, r.sum, r.min, r.max FROM rollup_{window} r"
        f" JOIN series s ON s.id = r.series_id WHERE s.metric_name = '{model.metric}'"
        f" AND r.bucket >= {model.cutoff(window)}",
    )
    for labels, bucket, *agg in rows:
        host = (labels if isinstance(labels, dict) else json.loads(labels))["host"]
        out[(host, int(bucket))] = tuple(agg)
    return out


def query(client: TestClient, path: str, model: Model, **extra: str) -> list[dict[str, Any]]:
    params = {
        "metric_name": model.metric,
        "start_time": format_ms(model.t0),
        "end_time": format_ms(model.t0 + 3 * HOUR),
        **extra,
    }
    answer = client.get(path, params=params)
    assert answer.status_code in (200, 404), answer.text
    if answer.status_code == 404:  # no series: nothing was written yet
        assert not model.sent
        return []
    body = answer.json()
    if path == "/query/raw":
        assert body["raw_retained_from"] == format_ms(model.cutoff("raw"))
    else:
        assert body["retained_from"] == format_ms(model.cutoff(extra["window"]))
    return list(body["series"])


def check(client: TestClient, database_url: str, model: Model) -> None:
    asyncio.run(_jobs(database_url, ["rollup"], model.now))  # materialize what is pending
    check_rollups(client, database_url, model)
    asyncio.run(_jobs(database_url, ["compact"], model.now))  # fold, and check again
    check_rollups(client, database_url, model)


def check_rollups(client: TestClient, database_url: str, model: Model) -> None:
    for window in WIDTHS:
        expected = model.buckets(window)
        assert stored_buckets(database_url, model, window) == expected, window
        served = {
            (s["labels"]["host"], p["timestamp"]): (p["count"], p["sum"], p["min"], p["max"])
            for s in query(client, "/query/rollup", model, window=window)
            for p in s["points"]
        }
        assert served == {(h, format_ms(b)): v for (h, b), v in expected.items()}, window
    served_raw = {
        (s["labels"]["host"], p["timestamp"]): p["value"]
        for s in query(client, "/query/raw", model)
        for p in s["points"]
    }
    assert served_raw == {
        (host, format_ms(ts)): value
        for (host, ts), value in model.truth.items()
        if ts >= model.cutoff("raw")
    }


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(step, min_size=1, max_size=9))
def test_rollups_equal_brute_force_truth(
    client: TestClient, database_url: str, steps: list[tuple[str, Any]]
) -> None:
    now = int(time.time() * 1000)
    # t0 three hours before the end of yesterday (UTC): the clock starts 1h30 into today
    model = Model(f"prop_{next(_metric_numbers)}", now - now % DAY_MS - DAY_MS - 3 * HOUR)
    store = client.app.state.store  # type: ignore[attr-defined]
    store.clock = lambda: model.now  # the server's "now" for retention floors follows the model
    client.put(f"/retention/{model.metric}", json=POLICY).raise_for_status()
    # Raw samples in the last hour first: after a tick they are behind the raw floor, not dropped.
    steps = [("write", [(host, 150 * 60_000, 0, 0.25) for host in HOSTS]), *steps]
    for kind, arg in steps:
        if kind == "write":
            body = [
                {
                    "metric_name": model.metric,
                    "value": value,
                    "timestamp": (model.t0 + minute + second) / 1000,
                    "labels": {"host": host},
                }
                for host, minute, second, value in arg
            ]
            model.sent.append(body)
            model.write(client, body)
        elif kind == "resend" and model.sent:
            model.write(client, model.sent[arg % len(model.sent)])
        elif kind == "tick" and model.ticks < 2:
            model.ticks += 1
        elif kind == "job":
            names = ["rollup", "retention"] if arg == "both" else [arg]
            asyncio.run(_jobs(database_url, names, model.now))
            if "retention" in names:
                model.retention()
            model.folded = model.folded or "compact" in names
    check(client, database_url, model)
