"""The process' write lock, with a fast lane: small writes go before bulk ones.

SQLite has one writer, so a process lets one write transaction run at a time (`Store`). With a
plain FIFO lock a group commit of single samples that arrives behind two 10,000-sample imports and
a job's transaction waits for all three. Here a waiting *small* write (`urgent()`: a group commit
of single samples, a small batch) is handed the lock before any waiting bulk write or job
transaction, so it waits for at most the one transaction that holds the lock. Bulk writes and jobs
keep their order among themselves, and cannot starve: small writes come from one group-commit task
per process (and small requests), each taking a turn of a few milliseconds, and a bulk write waiting
gets the lock whenever no small one is waiting at the moment it is released.

`async with turns:` takes a normal turn (an `asyncio.Lock` drop-in for the other writers);
`async with turns.urgent():` a fast-lane one. The lock passes straight from the releasing holder to
the next waiter, so nobody arriving in between can take it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator
from types import TracebackType


class WriteTurns:
    def __init__(self) -> None:
        self._held = False
        self._urgent: collections.deque[asyncio.Future[None]] = collections.deque()
        self._normal: collections.deque[asyncio.Future[None]] = collections.deque()
        self.overtaken = 0  # times a small write was handed the lock before a waiting bulk one

    def locked(self) -> bool:
        return self._held

    def waiting(self) -> int:
        """Turns waiting for the lock, in both lanes."""
        return sum(not turn.done() for turn in (*self._urgent, *self._normal))

    async def __aenter__(self) -> None:
        await self._acquire(self._normal)

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._release()

    @contextlib.asynccontextmanager
    async def urgent(self) -> AsyncIterator[None]:
        """A turn in the fast lane: before every waiting normal turn."""
        await self._acquire(self._urgent)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, lane: collections.deque[asyncio.Future[None]]) -> None:
        if not self._held and not self._urgent and not self._normal:
            self._held = True
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        lane.append(turn)
        try:
            await turn
        except BaseException:
            if turn.done() and not turn.cancelled():
                self._release()  # handed the lock as we were cancelled: pass it on
            else:
                lane.remove(turn)
            raise

    def _release(self) -> None:
        """Hand the lock to the next waiter (small writes first), or free it."""
        for lane in (self._urgent, self._normal):
            while lane:
                turn = lane.popleft()
                if not turn.done():
                    if lane is self._urgent and self._normal:
                        self.overtaken += 1
                    turn.set_result(None)
                    return
        self._held = False
