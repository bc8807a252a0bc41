"""A cross-process lock for the maintenance jobs, so any number of servers and cron runs do the work
once: a session advisory lock on PostgreSQL, an flock on a file beside the database on SQLite.
Both are released by the operating system or the server if the holder dies."""

from __future__ import annotations

import asyncio
import fcntl
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text

from app.storage.engine import Engines, sqlite_path

JOB_LOCK_KEY = 7_263_010
POLL_SECONDS = 0.05


class LockBusy(RuntimeError):
    """Another runner holds the job lock."""


@asynccontextmanager
async def job_lock(engines: Engines, database_url: str, wait_seconds: float) -> AsyncIterator[None]:
    """Hold the job lock for the block; wait up to `wait_seconds` for it, else raise LockBusy."""
    deadline = time.monotonic() + wait_seconds
    if engines.backend == "postgresql":
        async with engines.reader.connect() as conn:
            while not (
                await conn.execute(text(f"SELECT pg_try_advisory_lock({JOB_LOCK_KEY})"))
            ).scalar_one():
                await conn.rollback()
                if time.monotonic() >= deadline:
                    raise LockBusy("another runner holds the job lock")
                await asyncio.sleep(POLL_SECONDS)
            await conn.commit()
            try:
                yield
            finally:
                await conn.execute(text(f"SELECT pg_advisory_unlock({JOB_LOCK_KEY})"))
                await conn.commit()
        return
    path = sqlite_path(database_url)
    lock_file = f"{path}.jobs.lock" if path else os.devnull
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockBusy("another runner holds the job lock") from None
                await asyncio.sleep(POLL_SECONDS)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
