"""Group commit for single-sample ingestion.

Concurrent requests queue here; one task writes whatever has queued while the previous commit ran
as one transaction, then answers each request. Nobody is answered before the commit that holds
their sample, so durability is as for a lone write, at a fraction of the commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import numpy as np

from app.storage.store import AppendResult, BeforeHorizon, CardinalityExceeded, Store
from app.validation import SampleBatch, SeriesKey

log = logging.getLogger("app.ingest")
MAX_GROUP = 5000


def merge(batches: list[SampleBatch]) -> tuple[SampleBatch, list[np.ndarray]]:
    """One batch from many (series keys de-duplicated); per input, its key indices in the merge."""
    slots: dict[tuple[str, bytes], int] = {}
    keys: list[SeriesKey] = []
    maps = []
    for batch in batches:
        mapping = np.empty(len(batch.keys), dtype=np.int64)
        for i, key in enumerate(batch.keys):
            slot = slots.setdefault((key.metric, key.labels_json), len(keys))
            if slot == len(keys):
                keys.append(key)
            mapping[i] = slot
        maps.append(mapping)
    merged = SampleBatch(
        keys=keys,
        series_index=np.concatenate(
            [m[b.series_index] for m, b in zip(maps, batches, strict=True)]
        ),
        ts=np.concatenate([b.ts for b in batches]),
        values=np.concatenate([b.values for b in batches]),
    )
    return merged, maps


class GroupCommitter:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._queue: asyncio.Queue[tuple[SampleBatch, asyncio.Future[None]]] = asyncio.Queue()
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

    async def submit(self, batch: SampleBatch) -> None:
        """Return once `batch` is committed; raise what rejected it."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._queue.put((batch, done))
        await done

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

    async def _commit(self, group: list[tuple[SampleBatch, asyncio.Future[None]]]) -> None:
        batches = [batch for batch, _ in group]
        merged, maps = merge(batches)
        try:
            result = await self.store.append(merged, all_or_nothing=False)
            self.commits += 1
            self.requests += len(group)
        except BeforeHorizon:
            await self._commit_one_by_one(group)  # rare: find whose sample it was
            return
        except Exception as exc:
            for _, done in group:
                _settle(done, exc)
            return
        for (_, done), mapping in zip(group, maps, strict=True):
            _settle(done, _rejection(result, mapping))

    async def _commit_one_by_one(
        self, group: list[tuple[SampleBatch, asyncio.Future[None]]]
    ) -> None:
        for batch, done in group:
            try:
                await self.store.append(batch, all_or_nothing=True)
                _settle(done, None)
            except Exception as exc:
                _settle(done, exc)


def _rejection(result: AppendResult, mapping: np.ndarray) -> CardinalityExceeded | None:
    for slot in mapping.tolist():
        if slot in result.rejected:
            return result.rejected[slot]
    return None


def _settle(done: asyncio.Future[None], exc: BaseException | None) -> None:
    if done.done():
        return
    if exc is None:
        done.set_result(None)
    else:
        done.set_exception(exc)
