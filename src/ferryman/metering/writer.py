"""Usage records, queued on the request path and written in batches.

A finishing request appends one row to a bounded in-memory queue; that is all it pays.
A background task writes every `interval` seconds, or sooner once `batch` rows wait,
with the daily aggregates in the same transaction. A full queue drops the row and
counts it (`ferryman_usage_dropped_total`): the hot path never waits for the database.
A failed write keeps its rows for the next round (up to the queue's size). Shutdown
writes everything still queued.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

import structlog

from ferryman.metering.extract import Usage
from ferryman.metering.pricing import PriceTable
from ferryman.observability.metrics import Metrics
from ferryman.store import usage
from ferryman.store.engine import Database
from ferryman.store.usage import UsageRow

log = structlog.get_logger("ferryman.metering")


class UsageWriter:
    def __init__(
        self,
        db: Database,
        prices: PriceTable,
        metrics: Metrics | None = None,
        *,
        interval: float = 1.0,
        batch: int = 500,
        capacity: int = 100_000,
    ) -> None:
        self.db = db
        self.prices = prices
        self.metrics = metrics
        self.interval = interval
        self.batch = batch
        self.capacity = capacity
        self._queue: deque[UsageRow] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.written = 0
        self.dropped = 0
        self.unpriced = 0
        self.failures = 0

    def add(self, row: UsageRow) -> None:
        queue = self._queue
        if len(queue) >= self.capacity:
            self.dropped += 1
            if self.metrics is not None:
                self.metrics.usage_records("dropped")
            return
        queue.append(row)
        if len(queue) >= self.batch:
            self._wake.set()

    @property
    def queued(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="usage-writer")

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception:
                self.failures += 1
                log.exception("usage_write_failed", queued=len(self._queue))

    async def flush(self) -> None:
        """Write everything queued now, in batches."""
        self.prices.refresh()
        while self._queue:
            rows = [self._queue.popleft() for _ in range(min(self.batch, len(self._queue)))]
            priced = [self._priced(row) for row in rows]
            try:
                await usage.write(self.db, priced)
            except BaseException:
                self._queue.extendleft(reversed(rows))  # kept for the next round
                raise
            self.written += len(rows)
            if self.metrics is not None:
                self.metrics.usage_records("written", len(rows))

    def _priced(self, row: UsageRow) -> UsageRow:
        if row.cost is not None or row.model is None:
            return row
        cost = self.prices.cost(
            Usage(row.model, row.prompt_tokens, row.completion_tokens, row.total_tokens, None)
        )
        if cost is None:
            if row.prompt_tokens is not None or row.completion_tokens is not None:
                self.unpriced += 1
                if self.metrics is not None:
                    self.metrics.usage_records("unpriced")
            return row
        values = {name: getattr(row, name) for name in usage.FIELDS}
        values["cost"] = cost
        return UsageRow(**values)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()
