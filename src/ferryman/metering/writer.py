"""Usage records, kept on the request path and written in batches.

A finishing request appends its access record and its `Reading` to a list; that is
all it pays. The batch turns them into usage rows (`settle`: reading the usage, pricing
it), then writes them every `interval` seconds, or sooner once `batch` rows wait, with
the daily aggregates in the same transaction. Done many at a time, back to back, the
reading and building cost a fraction of what they cost per request between two network
events. A full queue drops the record and counts it (`ferryman_usage_dropped_total`):
the hot path never waits for the database. A failed write keeps its rows for the next
round (up to the queue's size). Shutdown writes everything still queued.

A `listener` (the budgets) hears of each row as it is settled and of each batch once it
is committed; `lock` is held while a batch is written, so a reader holding it sees
every row either in the database or still queued, never in between. Whoever needs the
cost of every finished request (a budget check) calls `settle` first.
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
from ferryman.metering.reading import Reading
from ferryman.metering.records import usage_row
from ferryman.observability.access_log import Record
from ferryman.observability.metrics import Metrics
from ferryman.store import usage
from ferryman.store.engine import Database
from ferryman.store.usage import UsageRow, start_of
from ferryman.store.usage_sqlite import SqliteUsage

log = structlog.get_logger("ferryman.metering")


#: Records made rows in one go before the event loop gets a turn (about 0.3 ms).
SETTLE_SLICE = 128


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
        self._pending: list[tuple[Record, Reading | None]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.written = 0
        self.dropped = 0
        self.unpriced = 0
        self.failures = 0
        self.lock = asyncio.Lock()
        self.listener: UsageListener | None = None
        #: SQLite in a file: batches go through a connection of their own.
        self._sqlite = SqliteUsage.of(db)
        self.eager = False
        """Settle once per event-loop turn rather than per batch: a fleet's budgets
        need each cost in Redis soon, not at the next flush (still batched per turn)."""
        self._settling = False
        self._stopping = False

    def record(self, record: Record, reading: Reading | None) -> None:
        """A finished request (the hot path): kept as it is, made a row in `settle`."""
        pending = self._pending
        waiting = len(pending) + len(self._queue)
        if waiting >= self.capacity:
            self._drop()
            return
        pending.append((record, reading))
        if waiting + 1 >= self.batch:
            self._wake.set()
        if self.eager and not self._settling:
            self._settling = True
            asyncio.get_running_loop().call_soon(self._settle_turn)

    def _settle_turn(self) -> None:
        self._settling = False
        try:
            self.settle()
        except Exception:  # never on a request's account; the batch will retry
            log.exception("usage_settle_failed")

    def add(self, row: UsageRow) -> None:
        """A row already built (priced here if it has no cost)."""
        if len(self._pending) + len(self._queue) >= self.capacity:
            self._drop()
            return
        if row.cost is None and row.model is not None:
            cost = self.prices.table_cost(row.model, row.prompt_tokens, row.completion_tokens)
            if cost is not None:
                row = row._replace(cost=cost)
        self._queued([row])

    def settle(self, most: int | None = None) -> None:
        """Make rows of the records waiting (the `most` oldest, or all): read their
        usage, price them, queue them."""
        if not self._pending:
            return
        if most is None or len(self._pending) <= most:
            pending, self._pending = self._pending, []
        else:
            pending, self._pending = self._pending[:most], self._pending[most:]
        prices = self.prices
        try:
            rows = [usage_row(record, reading, prices) for record, reading in pending]
        except Exception:
            rows = []
            for record, reading in pending:
                try:
                    rows.append(usage_row(record, reading, prices))
                except Exception:
                    self.failures += 1
                    log.exception("usage_record_unreadable", correlation_id=record[13])
        self._queued(rows)

    def _queued(self, rows: list[UsageRow]) -> None:
        unpriced, listener = 0, self.listener
        for row in rows:
            if row.cost:
                if listener is not None:
                    listener.added(row)
            elif row.cost is None and (
                row.prompt_tokens is not None or row.completion_tokens is not None
            ):
                unpriced += 1
        self._queue.extend(rows)
        if unpriced:
            self.unpriced += unpriced
            if self.metrics is not None:
                self.metrics.usage_records("unpriced", unpriced)

    def _drop(self) -> None:
        self.dropped += 1
        if self.metrics is not None:
            self.metrics.usage_records("dropped")

    def queued_cost(self, matches: Callable[[UsageRow], bool], since: date) -> float:
        """The cost of the queued rows that `matches` picks, from the day `since` on."""
        self.settle()
        start = start_of(since)
        return sum(row.cost for row in self._queue if row.cost and row.at >= start and matches(row))

    @property
    def queued(self) -> int:
        return len(self._pending) + len(self._queue)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="usage-writer")

    async def _loop(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()
            if self._stopping:
                return
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
        while self._pending:
            # In slices, letting requests in between: a whole batch at once would hold
            # the event loop for milliseconds.
            self.settle(SETTLE_SLICE)
            await asyncio.sleep(0)
        while self._queue:
            async with self.lock:
                queue = self._queue
                rows = [queue.popleft() for _ in range(min(self.batch, len(queue)))]
                try:
                    if self._sqlite is not None:
                        await self._sqlite.write(rows)
                    else:
                        await usage.write(self.db, rows)
                except BaseException:
                    queue.extendleft(reversed(rows))  # kept for the next round
                    raise
                if self.listener is not None:
                    self.listener.written(rows)
            self.written += len(rows)
            if self.metrics is not None:
                self.metrics.usage_records("written", len(rows))

    async def stop(self) -> None:
        """Write everything still queued. A batch being written is let finish (cancelled,
        it could commit in its thread and then be queued again)."""
        if self._task is not None:
            self._stopping = True
            self._wake.set()
            await asyncio.wait([self._task])  # however it ended
            self._task = None
        try:
            await self.flush()
        finally:
            if self._sqlite is not None:
                await self._sqlite.close()
                self._sqlite = None
