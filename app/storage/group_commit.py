"""Group commit for single-sample ingestion.

Concurrent requests queue here; one task writes whatever has queued while the previous commit ran
as one transaction, then answers each request. Nobody is answered before the commit that holds
their sample, so durability is as for a lone write, at a fraction of the commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

import numpy as np

from app.model import Sample, SampleBatch, SeriesKey
from app.storage.store import HistoryConflict, Store

log = logging.getLogger("app.ingest")
MAX_GROUP = 5000


def merge(samples: Sequence[Sample]) -> tuple[SampleBatch, list[int]]:
    """One batch of many samples, series keys de-duplicated; per sample, its key's index."""
    slots: dict[SeriesKey, int] = {}
    index = [slots.setdefault(sample.key, len(slots)) for sample in samples]
    batch = SampleBatch(
        keys=list(slots),
        series_index=np.array(index, dtype=np.int64),
        ts=np.array([sample.ts for sample in samples], dtype=np.int64),
        values=np.array([sample.value for sample in samples], dtype=np.float64),
    )
    return batch, index


class GroupCommitter:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._queue: asyncio.Queue[tuple[Sample, asyncio.Future[int]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.commits = 0  # transactions written
        self.requests = 0  # requests they carried

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="group-commit")

    async def stop(self) -> None:
        """Finish what has queued, then stop."""
        await self._queue.join()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def submit(self, sample: Sample) -> int:
        """Return once `sample` is committed, with what became of it (app.services.retention:
        RAW, HISTORY, i.e. into rollups only, or BEYOND retention); raise what rejected it."""
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((sample, done))  # unbounded: never waits
        return await done

    async def _run(self) -> None:
        while True:
            group = [await self._queue.get()]
            while len(group) < MAX_GROUP and not self._queue.empty():
                group.append(self._queue.get_nowait())
            try:
                await self._commit(group)
            finally:
                for _ in group:
                    self._queue.task_done()

    async def _commit(self, group: list[tuple[Sample, asyncio.Future[int]]]) -> None:
        merged, slots = merge([sample for sample, _ in group])
        try:
            result = await self.store.append(merged, all_or_nothing=False)
            self.commits += 1
            self.requests += len(group)
        except HistoryConflict:
            await self._commit_one_by_one(group)  # rare: find whose sample it was
            return
        except Exception as exc:
            for _, done in group:
                _settle(done, exc)
            return
        for position, ((_, done), slot) in enumerate(zip(group, slots, strict=True)):
            _settle(done, result.rejected.get(slot), result.kind_of(position))

    async def _commit_one_by_one(self, group: list[tuple[Sample, asyncio.Future[int]]]) -> None:
        for sample, done in group:
            try:
                result = await self.store.append(merge([sample])[0], all_or_nothing=True)
                _settle(done, None, result.kind_of(0))
            except Exception as exc:
                _settle(done, exc)


def _settle(done: asyncio.Future[int], exc: BaseException | None, kind: int = 0) -> None:
    if done.done():
        return
    if exc is None:
        done.set_result(kind)
    else:
        done.set_exception(exc)
