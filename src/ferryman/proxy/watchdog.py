"""One clock for every request's client: who is too slow to send, and who has left.

A request's client is watched in two ways while the request runs:

- while its body is awaited, for how long it has sent nothing (`idle`) and, for a body
  read whole before going upstream, how long the body has taken (`total`): beyond
  either limit the request is cancelled and answered `408 request_timeout`;
- once its body is in, for `http.disconnect`, so that a client who leaves cancels the
  upstream request; that watch is a task, started only for requests that are still
  running a tick later (most answers are complete sooner and never pay for one).

A timer per request would cost each request a timer handle made and cancelled (about
2 µs with uvloop, `asyncio.timeout` more than twice that); one periodic tick over the
requests in flight costs each request an entry in a set, and the tick a loop over what
is in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from typing import TYPE_CHECKING

import structlog

if TYPE_CHECKING:
    from ferryman.proxy.client import ClientStream

log = structlog.get_logger("ferryman.proxy")

#: Seconds between two looks at the requests in flight: how late a timeout can fire, and
#: how long a request runs before its client is watched for leaving.
TICK = 0.05


def ticks(seconds: float) -> int:
    """A duration in whole ticks (at least one)."""
    return max(1, math.ceil(seconds / TICK))


class Watchdog:
    """The requests in flight of one gateway, looked at every `TICK` seconds."""

    def __init__(self) -> None:
        self.streams: set[ClientStream] = set()
        self._task: asyncio.Task[None] | None = None
        self.timeouts = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="watchdog")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            try:
                self.tick()
            except Exception:  # one bad stream must not stop the watch of the others
                log.exception("watchdog_tick_failed")

    def tick(self) -> None:
        """Look at every request in flight once (also called directly by tests)."""
        for stream in list(self.streams):
            if stream.look():
                self.timeouts += 1
