"""Background jobs: each runs on an interval and survives a failing iteration.

A failure is logged with its traceback and counted; the next iteration runs on time.
Each job remembers when it last succeeded, for readiness details and metrics. In a
fleet, a job given a `leader` check runs only on the instance that claims the turn
(a Redis lock per interval), so N instances do not probe a provider N times.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:
    from ferryman.observability.metrics import Metrics

log = structlog.get_logger("ferryman.tasks")

#: Asked before each iteration: may this instance run the job now?
Leader = Callable[[str, float], Awaitable[bool]]


class Periodic:
    """`job()` every `interval` seconds until stopped, and once more at stop if `final`."""

    def __init__(
        self,
        name: str,
        interval: float,
        job: Callable[[], Awaitable[None]],
        *,
        metrics: Metrics | None = None,
        leader: Leader | None = None,
        first_delay: float | None = None,
        final: bool = False,
    ) -> None:
        self.name = name
        self.interval = interval
        self._job = job
        self._metrics = metrics
        self._leader = leader
        self._first_delay = interval if first_delay is None else first_delay
        self.final = final
        self._task: asyncio.Task[None] | None = None
        self.last_success: float | None = None
        self.last_error: str | None = None
        self.failures = 0
        self.skipped = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name=f"periodic:{self.name}")

    async def run_once(self) -> bool:
        try:
            await self._job()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.failures += 1
            self.last_error = f"{type(exc).__name__}: {exc}"[:300]
            log.exception("task_failed", task=self.name)
            if self._metrics is not None:
                self._metrics.job_run(self.name, False, time.time())
            return False
        self.last_success = time.time()
        if self._metrics is not None:
            self._metrics.job_run(self.name, True, self.last_success)
        return True

    async def _turn(self) -> bool:
        if self._leader is None:
            return True
        try:
            return await self._leader(self.name, self.interval * 0.9)
        except Exception as exc:
            # No lock service: better every instance runs the job than none.
            log.warning("task_leader_unavailable", task=self.name, error=str(exc))
            return True

    async def _loop(self) -> None:
        await asyncio.sleep(self._first_delay)
        while True:
            if await self._turn():
                await self.run_once()
            else:
                self.skipped += 1
            await asyncio.sleep(self.interval)

    async def stop(self, *, run_final: bool | None = None) -> None:
        """Stop; run the job a last time if it is a `final` job (a flush)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.final if run_final is None else run_final:
            await self.run_once()

    def status(self) -> dict[str, Any]:
        return {
            "interval": self.interval,
            "last_success": self.last_success,
            "last_error": self.last_error,
            "failures": self.failures,
        }
