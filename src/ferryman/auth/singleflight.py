"""One load at a time per key: concurrent cold lookups share the first one's result."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


def _retrieve(task: asyncio.Task[object]) -> None:
    # If every caller gave up, nobody reads the outcome; read it here so asyncio does
    # not warn about an exception never retrieved.
    if not task.cancelled():
        task.exception()


class SingleFlight(Generic[T]):
    def __init__(self) -> None:
        self._running: dict[str, asyncio.Task[T]] = {}

    async def do(self, key: str, load: Callable[[], Awaitable[T]]) -> T:
        task = self._running.get(key)
        if task is None:
            task = asyncio.ensure_future(load())
            self._running[key] = task
            task.add_done_callback(lambda t: self._running.pop(key, None))
            task.add_done_callback(_retrieve)
        # A caller that is cancelled leaves the load running for the others.
        return await asyncio.shield(task)
