"""One runner for every job: a single locked pass (`--once`, for cron) or an interval loop with
capped exponential backoff after failures and a clean stop. Every run is recorded for
/jobs/status."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import time

from app.config import Settings, get_settings, parse_duration
from app.jobs.alerting import load_rules_file
from app.jobs.work import JOBS, JobOutcome, job_interval
from app.migrate import upgrade
from app.storage.locks import LockBusy
from app.storage.store import JobStopped, Store
from app.timeutil import now_ms

log = logging.getLogger("app.jobs")
MAX_BACKOFF_SECONDS = 300.0


async def run_once(
    store: Store, settings: Settings, job: str, *, wait_seconds: float, now: int | None = None
) -> JobOutcome | None:
    """Run `job` once under the job lock; None if another runner held it past `wait_seconds`."""
    try:
        async with store.job_lock(wait_seconds):
            return await _run_locked(store, settings, job, now)
    except LockBusy:
        log.info("job %s skipped: another runner holds the job lock", job)
        return None


async def _run_locked(store: Store, settings: Settings, job: str, now: int | None) -> JobOutcome:
    started_ms, started = now_ms(), time.perf_counter()
    try:
        outcome = await JOBS[job](store, settings, now if now is not None else started_ms)
    except JobStopped as exc:
        duration = round((time.perf_counter() - started) * 1000)
        await _record(store, job, started_ms, duration, "stopped", JobOutcome(), None)
        log.info("job %s stopped after %d ms: %s", job, duration, exc)
        return JobOutcome()
    except Exception as exc:
        duration = round((time.perf_counter() - started) * 1000)
        await _record(store, job, started_ms, duration, "error", JobOutcome(), repr(exc))
        log.exception("job %s failed after %d ms", job, duration)
        raise
    duration = round((time.perf_counter() - started) * 1000)
    await _record(store, job, started_ms, duration, "ok", outcome, None)
    log.info("job %s ok in %d ms (%s)", job, duration, outcome.detail)
    return outcome


async def _record(
    store: Store,
    job: str,
    started_ms: int,
    duration: int,
    status: str,
    outcome: JobOutcome,
    error: str | None,
) -> None:
    try:
        await store.record_job_run(
            job,
            {
                "last_started_ms": started_ms,
                "last_finished_ms": now_ms(),
                "last_duration_ms": duration,
                "last_status": status,
                "buckets_written": outcome.buckets_written,
                "rows_dropped": outcome.rows_dropped,
                "last_error": error,
                "last_error_ms": now_ms() if error else None,
            },
        )
    except Exception:  # the run's own outcome matters more than its record
        log.warning("could not record the %s job run", job, exc_info=True)


def next_delay(interval: float, failures: int) -> float:
    """The wait before the next run: the interval, or a capped backoff after failures."""
    if failures == 0:
        return interval
    backoff: float = max(1.0, interval) * 2.0 ** min(failures - 1, 10)
    return min(MAX_BACKOFF_SECONDS, backoff)


async def run_loop(
    store: Store, settings: Settings, job: str, interval: float, stop: asyncio.Event
) -> None:
    """Run `job` every `interval` seconds until `stop` is set; never raises."""
    failures = 0
    while not stop.is_set():
        try:
            # Wait a little for a runner that holds the lock (say, the other job at start-up)
            # rather than skip a whole interval.
            await run_once(store, settings, job, wait_seconds=min(60.0, interval / 2))
            failures = 0
        except Exception:
            failures += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=next_delay(interval, failures))


def main(job: str, argv: list[str] | None = None, description: str | None = None) -> int:
    """The command line shared by `python -m app.jobs.rollup_job`, `...retention_job` and
    `...alert_job`."""
    parser = argparse.ArgumentParser(
        prog=f"python -m app.jobs.{job}_job",
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    return run_command(job, parser.parse_args(argv))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of every job's command line (also `metrics-service <job>`)."""
    parser.add_argument("--once", action="store_true", help="one pass, then exit (the default)")
    parser.add_argument("--loop", action="store_true", help="keep running every --interval")
    parser.add_argument("--interval", type=parse_duration, help="loop period, e.g. 60s, 1h")


def run_command(job: str, args: argparse.Namespace) -> int:
    """Run `job` as its parsed command line asks: one locked pass, or the loop until a signal."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = get_settings()
    upgrade(settings)
    interval = args.interval.total_seconds() if args.interval else job_interval(settings, job)
    return asyncio.run(_main(settings, job, args.loop and not args.once, interval))


async def _main(settings: Settings, job: str, loop: bool, interval: float) -> int:
    store = Store.open(settings)
    try:
        if job == "alert":
            await load_rules_file(store, settings)
        if not loop:
            wait = settings.job_lock_timeout.total_seconds()
            outcome = await run_once(store, settings, job, wait_seconds=wait)
            if outcome is None:
                print(f"{job}: another runner held the job lock; nothing done")
                return 0
            print(f"{job}: {outcome.detail}")
            return 0
        stop = asyncio.Event()

        def stopping() -> None:
            stop.set()
            store.stop_jobs()

        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, stopping)
        await run_loop(store, settings, job, interval, stop)
        return 0
    finally:
        await store.close()
