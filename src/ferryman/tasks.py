"""Background jobs: each runs on an interval and survives a failing iteration.

A failure is logged with its traceback and counted; the next iteration runs on time.
Each job remembers when it last succeeded, for readiness details and metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

log = structlog.get_logger("ferryman.tasks")


class Periodic:
    """`job()` every `interval` seconds until stopped; `final()` runs once at stop."""

    def __init__(
        self,
        name: str,
        interval: float,
        job: Callable[[], Awaitable[None]],
    ) -> None:
        self.name = name
        self.interval = interval
        self._job = job
        self._task: asyncio.Task[None] | None = None
        self.last_success: float | None = None
        self.failures = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name=f"periodic:{self.name}")

    async def run_once(self) -> bool:
        try:
            await self._job()
        except asyncio.CancelledError:
            raise
        except Exception:
            self.failures += 1
            log.exception("task_failed", task=self.name)
            return False
        self.last_success = time.time()
        return True

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.run_once()

    async def stop(self, *, run_final: bool = True) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if run_final:
            await self.run_once()

    def status(self) -> dict[str, Any]:
        return {"last_success": self.last_success, "failures": self.failures}
