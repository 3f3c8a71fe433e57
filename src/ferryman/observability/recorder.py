"""What happened to each request, accounted off the request path, in batches.

A finishing request appends one record (a tuple of raw facts) to a list; that is all
it pays. Every `interval` seconds, or once `batch` records wait, the list is turned
into metric updates and access-log lines, and the lines are written with one system
call. Doing this many records at a time keeps the code warm in the CPU's caches: done
once per request between two network events, the same work cost several times more.

`/metrics` flushes first, so a scrape always sees every finished request. With several
workers the metrics are shared through files and updated at once instead, since one
worker's scrape cannot flush another's batch. On a hard
crash (SIGKILL, OOM) up to `interval` seconds of access lines are lost; a normal
shutdown flushes them. `interval = 0` accounts for each request at once.
"""

from __future__ import annotations

import asyncio

from ferryman.observability import access_log
from ferryman.observability.access_log import Record
from ferryman.observability.logging import Sink
from ferryman.observability.metrics import Metrics

DEFAULT_INTERVAL = 0.1
DEFAULT_BATCH = 64


class RequestRecorder:
    """Collects request records on the event loop and accounts for them in batches."""

    def __init__(
        self, metrics: Metrics, interval: float = DEFAULT_INTERVAL, batch: int = DEFAULT_BATCH
    ) -> None:
        self.metrics = metrics
        self.interval = interval
        self.batch = batch
        self._pending: list[Record] = []
        self._timer: asyncio.TimerHandle | None = None

    def record(self, record: Record) -> None:
        if not self.metrics.batched:
            self._count(record)
        pending = self._pending
        pending.append(record)
        if self.interval <= 0 or len(pending) >= self.batch:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.interval, self.flush)

    def _count(self, record: Record) -> None:
        _, _, method, _, _, route, status, seconds, upstream, upstream_seconds, *_ = record
        self.metrics.observe_request(route, method, status, seconds)
        if upstream_seconds is not None:
            self.metrics.observe_upstream(route, upstream or "-", upstream_seconds)

    def flush(self) -> None:
        """Account for every waiting record now."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending = self._pending, []
        if not pending:
            return
        if self.metrics.batched:
            for record in pending:
                self._count(record)
        if any(record[1] >= Sink.level for record in pending):
            access_log.write(pending)
