"""A result kept for a while and refreshed behind the reader's back.

For the one dashboard question that cannot be answered from a small aggregate (the
top client keys over everyone's traffic, a group-by over every key's daily rows): the
first reader computes it, readers within `fresh` seconds get it as is, a later reader
gets the kept value at once while one refresh runs in the background. Readers who
arrive while the first computation runs wait for that one (no stampede).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar, overload

import structlog

log = structlog.get_logger("ferryman.console")

T = TypeVar("T")


class Recent(Generic[T]):
    def __init__(self, fresh: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.fresh = fresh
        self.clock = clock
        self._kept: dict[Hashable, tuple[float, T]] = {}
        self._running: dict[Hashable, asyncio.Task[T]] = {}

    @overload
    async def get(self, key: Hashable, compute: Callable[[], Awaitable[T]]) -> tuple[T, float]: ...
    @overload
    async def get(
        self, key: Hashable, compute: Callable[[], Awaitable[T]], wait: float
    ) -> tuple[T | None, float]: ...
    async def get(
        self, key: Hashable, compute: Callable[[], Awaitable[T]], wait: float | None = None
    ) -> tuple[T | None, float]:
        """The value and its age in seconds. With nothing kept yet, a reader waits for
        the computation, or at most `wait` seconds: then it gets None, and the
        computation goes on for the next reader."""
        kept = self._kept.get(key)
        now = self.clock()
        if kept is not None:
            at, value = kept
            if now - at >= self.fresh and key not in self._running:
                self._start(key, compute)
            return value, now - at
        task = self._running.get(key) or self._start(key, compute)
        if wait is None:
            return await asyncio.shield(task), 0.0
        done, _ = await asyncio.wait([task], timeout=wait)
        return (task.result() if done else None), 0.0

    def warm(self, key: Hashable, compute: Callable[[], Awaitable[T]]) -> None:
        """Start computing it now if nothing fresh is kept (and nothing runs)."""
        kept = self._kept.get(key)
        if key in self._running or (kept is not None and self.clock() - kept[0] < self.fresh):
            return
        self._start(key, compute)

    def _start(self, key: Hashable, compute: Callable[[], Awaitable[T]]) -> asyncio.Task[T]:
        async def run() -> T:
            try:
                value = await compute()
                self._kept[key] = (self.clock(), value)
                if len(self._kept) > 64:  # a handful of ranges; never grows without bound
                    self._kept.pop(next(iter(self._kept)))
                return value
            except Exception:
                log.exception("console_refresh_failed", key=str(key))
                raise
            finally:
                self._running.pop(key, None)

        task = asyncio.create_task(run())
        # A background refresh nobody awaits: its failure is logged above, not left for
        # the loop to complain about.
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        self._running[key] = task
        return task
