"""Usage records, queued on the request path and written in batches.

A finishing request appends one row to a bounded in-memory queue; that is all it pays
(and, for an LLM call without a provider cost, a price-table lookup: budgets need the
cost at once). A background task writes every `interval` seconds, or sooner once `batch` rows wait,
with the daily aggregates in the same transaction. A full queue drops the row and
counts it (`ferryman_usage_dropped_total`): the hot path never waits for the database.
A failed write keeps its rows for the next round (up to the queue's size). Shutdown
writes everything still queued.

A `listener` (the budgets) hears of each row as it is queued and of each batch once it
is committed; `lock` is held while a batch is written, so a reader holding it sees
every row either in the database or still queued, never in between.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Sequence
from datetime import date
from typing import Protocol

import structlog

from ferryman.metering.pricing import PriceTable
from ferryman.observability.metrics import Metrics
from ferryman.store import usage
from ferryman.store.engine import Database
from ferryman.store.usage import UsageRow

log = structlog.get_logger("ferryman.metering")


class UsageListener(Protocol):
    def added(self, row: UsageRow) -> None: ...

    def written(self, rows: Sequence[UsageRow]) -> None: ...


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
        self.lock = asyncio.Lock()
        self.listener: UsageListener | None = None

    def add(self, row: UsageRow) -> None:
        queue = self._queue
        if len(queue) >= self.capacity:
            self.dropped += 1
            if self.metrics is not None:
                self.metrics.usage_records("dropped")
            return
        if row.model is not None and row.cost is None:
            row = self._priced(row)
        queue.append(row)
        if self.listener is not None and row.cost:
            self.listener.added(row)
        if len(queue) >= self.batch:
            self._wake.set()

    def queued_cost(self, matches: Callable[[UsageRow], bool], since: date) -> float:
        """The cost of the queued rows that `matches` picks, from the day `since` on."""
        return sum(
            row.cost for row in self._queue if row.cost and row.at.date() >= since and matches(row)
        )

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
            async with self.lock:
                queue = self._queue
                rows = [queue.popleft() for _ in range(min(self.batch, len(queue)))]
                try:
                    await usage.write(self.db, rows)
                except BaseException:
                    queue.extendleft(reversed(rows))  # kept for the next round
                    raise
                if self.listener is not None:
                    self.listener.written(rows)
            self.written += len(rows)
            if self.metrics is not None:
                self.metrics.usage_records("written", len(rows))

    def _priced(self, row: UsageRow) -> UsageRow:
        if row.cost is not None or row.model is None:
            return row
        cost = self.prices.table_cost(row.model, row.prompt_tokens, row.completion_tokens)
        if cost is None:
            if row.prompt_tokens is not None or row.completion_tokens is not None:
                self.unpriced += 1
                if self.metrics is not None:
                    self.metrics.usage_records("unpriced")
            return row
        row.cost = cost
        return row

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()
