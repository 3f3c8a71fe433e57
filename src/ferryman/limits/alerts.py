"""Budget alerts: a threshold of a budget crossed, announced once per budget window.

The request path only queues the alert. A background task claims it in the database
(`budget_alerts`: one row per budget, window and threshold, so an alert goes out once
however many instances, or restarts, see the spend cross it), then logs a
`budget_alert` event, counts it in `ferryman_budget_events_total{event="alert_N"}` and,
when a webhook is configured, POSTs it as JSON (5 s timeout, one retry; a failure is
logged, never retried later).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from datetime import date, datetime

import aiohttp
import structlog

from ferryman import __version__
from ferryman.observability.metrics import Metrics
from ferryman.store import budgets as rows
from ferryman.store.budgets import Scope
from ferryman.store.engine import Database

log = structlog.get_logger("ferryman.budgets")

#: Alerts waiting to be announced beyond this are dropped (and logged).
QUEUE_SIZE = 10_000
WEBHOOK_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class Alert:
    scope: Scope
    subject_id: str
    threshold: int
    """Percent of the budget."""
    spent: float
    budget: float
    period: str
    window_start: date
    renews: datetime
    at: datetime

    def payload(self) -> dict[str, object]:
        """The webhook's JSON body."""
        return {"event": "budget.threshold_crossed", **self.fields()}

    def fields(self) -> dict[str, object]:
        return {
            "scope": self.scope,
            "subject_id": self.subject_id,
            "threshold_percent": self.threshold,
            "spend": round(self.spent, 6),
            "budget": self.budget,
            "period": self.period,
            "window_start": self.window_start.isoformat(),
            "renews_at": self.renews.isoformat(),
            "at": self.at.isoformat(),
        }


class Alerts:
    def __init__(self, db: Database, metrics: Metrics, webhook: str | None = None) -> None:
        self.db = db
        self.metrics = metrics
        self.webhook = webhook
        self._queue: asyncio.Queue[Alert] = asyncio.Queue(QUEUE_SIZE)
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self.sent = 0

    def post(self, alert: Alert) -> None:
        try:
            self._queue.put_nowait(alert)
        except asyncio.QueueFull:
            log.error("budget_alert_dropped", **alert.fields())

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="budget-alerts")

    async def _run(self) -> None:
        while True:
            alert = await self._queue.get()
            try:
                await self.announce(alert)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("budget_alert_failed", **alert.fields())
            finally:
                self._queue.task_done()

    async def announce(self, alert: Alert) -> bool:
        """Claim, log, count and send one alert; False if it was already announced."""
        claimed = await rows.claim_alert(
            self.db,
            scope=alert.scope,
            subject_id=alert.subject_id,
            window_start=alert.window_start,
            threshold=alert.threshold,
            spent=alert.spent,
            budget=alert.budget,
            now=alert.at,
        )
        if not claimed:
            return False
        self.sent += 1
        log.warning("budget_alert", **alert.fields())
        self.metrics.budget_event(alert.scope, f"alert_{alert.threshold}")
        if self.webhook is not None:
            await self._send(alert)
        return True

    async def _send(self, alert: Alert) -> None:
        assert self.webhook is not None
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=WEBHOOK_TIMEOUT),
                headers={"User-Agent": f"ferryman/{__version__}"},
            )
        body = json.dumps(alert.payload()).encode()
        error = ""
        for _ in range(2):
            try:
                async with self._session.post(
                    self.webhook, data=body, headers={"Content-Type": "application/json"}
                ) as response:
                    if response.status < 300:
                        return
                    error = f"HTTP {response.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                error = f"{type(exc).__name__}: {exc}"
        log.warning("budget_webhook_failed", error=error[:200], threshold=alert.threshold,
                    scope=alert.scope, subject_id=alert.subject_id)  # fmt: skip

    async def drain(self) -> None:
        """Wait until every queued alert is handled (tests, shutdown)."""
        if self._task is not None:
            await self._queue.join()

    async def stop(self) -> None:
        if self._task is not None:
            if not self._task.done():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._queue.join(), 2 * WEBHOOK_TIMEOUT)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._session is not None:
            await self._session.close()
            self._session = None
