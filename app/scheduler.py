"""In-process scheduling of the jobs (SCHEDULER_ENABLED): each on its own interval, through the
shared runner, so servers and cron runs never do the same work twice."""

from __future__ import annotations

import asyncio
import contextlib

from app.config import Settings
from app.jobs.runner import run_loop
from app.jobs.work import job_interval
from app.storage.store import Store


class Scheduler:
    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        jobs = ["rollup", "retention", "alert"]
        if self.settings.storage_layout == "blocks":
            jobs.append("compact")
        plan = {job: job_interval(self.settings, job) for job in jobs}
        for job, interval in plan.items():
            task = run_loop(self.store, self.settings, job, interval, self._stop)
            self._tasks.append(asyncio.create_task(task, name=f"job-{job}"))

    async def stop(self) -> None:
        """Stop: a running job ends before its next transaction (Store.stop_jobs)."""
        self._stop.set()
        self.store.stop_jobs()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
