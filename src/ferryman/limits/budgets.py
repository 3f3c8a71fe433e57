"""Budgets: spending limits per client credential and per account on LLM routes.

The spend of a budget is what its subject's metered requests cost in the budget's
window. Each process keeps a tally per budget in use:

- `base`: the database's sum over the window (the daily usage aggregate) when last read;
- `since`: this process's cost written to the database after that read;
- `pending`: this process's cost still queued for writing.

A tally is seeded on first use (and when its window moves on), and re-read every
`refresh` seconds, both while the usage writer is held still (`UsageWriter.lock`) so
no row is counted twice or lost between the queue and the database. A request is
checked before it is forwarded: refused with 429 `budget_exceeded` once the spend
has reached the budget; its own cost is added when it ends.

How far spend can go past a budget: a request is admitted while the spend is below
the budget, and its cost is only known when it ends. So the spend stops at most the
cost of the requests that were already admitted and still running when the budget was
reached (bounded in number by `max_parallel`), plus, with several instances, what the
other instances spent in the last `refresh` seconds and usage flush interval (they
learn of each other's spend through the database). With Redis the instances share one
counter per budget window instead (limits/fleet_spend.py), read before each request:
what the other instances spent counts at once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

import structlog

from ferryman.auth.identity import Identity
from ferryman.auth.singleflight import SingleFlight
from ferryman.clock import Clock
from ferryman.config.limits import Budgets as BudgetsSpec
from ferryman.errors import TooManyRequests
from ferryman.limits.alerts import Alert, Alerts
from ferryman.limits.allowance import Budget, money
from ferryman.limits.fleet_spend import FleetSpend
from ferryman.metering.writer import UsageWriter
from ferryman.observability.metrics import Metrics
from ferryman.store import budgets as rows
from ferryman.store.budgets import Scope
from ferryman.store.engine import Database
from ferryman.store.usage import UsageRow, start_of

log = structlog.get_logger("ferryman.budgets")

#: A tally nobody has asked about for this long is forgotten (re-read when needed).
IDLE = 3600.0


@dataclass(slots=True)
class Tally:
    scope: Scope
    subject: str
    budget: Budget
    start: date
    start_ts: float
    renews: datetime
    renews_ts: float
    base: float = 0.0
    since: float = 0.0
    pending: float = 0.0
    announced: int = 0
    """The highest alert threshold (percent) this process has seen crossed."""
    used_at: float = field(default_factory=time.monotonic)
    fleet: float | None = None
    """The fleet's spend per Redis when last read (plus this process's since), or None
    without Redis or while it fails."""

    @property
    def spent(self) -> float:
        """What this process knows of: the database's sum and its own cost since."""
        return self.base + self.since + self.pending

    @property
    def total(self) -> float:
        """The spend a request is checked against: the fleet's if known."""
        return self.spent if self.fleet is None else self.fleet

    def counts(self, row: UsageRow) -> bool:
        subject = row.credential_id if self.scope == "credential" else row.user_id
        return subject == self.subject and row.at >= self.start_ts


class Budgets:
    """The budgets of this process's callers; see the module docstring."""

    def __init__(
        self,
        db: Database,
        writer: UsageWriter,
        spec: BudgetsSpec,
        clock: Clock,
        metrics: Metrics,
        alerts: Alerts | None = None,
        fleet: FleetSpend | None = None,
    ) -> None:
        self.db = db
        self.fleet = fleet
        """The fleet's counters in Redis (limits/fleet_spend.py), with FERRYMAN_REDIS_URL."""
        self.writer = writer
        self.spec = spec
        self.clock = clock
        self.metrics = metrics
        self.alerts = alerts
        self.defaults: dict[str, Budget] = {k: rule.budget for k, rule in spec.defaults.items()}
        self.thresholds = spec.alerts
        self._tallies: dict[tuple[Scope, str], Tally] = {}
        self._seeding: SingleFlight[Tally] = SingleFlight()
        writer.listener = self

    def of(self, identity: Identity) -> list[tuple[Scope, str, Budget]]:
        """The budgets a caller's request counts against."""
        out: list[tuple[Scope, str, Budget]] = []
        own = identity.allowance.budget or self.defaults.get(identity.kind)
        if own is not None:
            out.append(("credential", identity.credential_id, own))
        account = identity.user_allowance.budget
        if account is not None:
            out.append(("user", identity.user_id, account))
        return out

    async def check(self, identity: Identity) -> None:
        """Refuse (429 `budget_exceeded`) if a budget of the caller is spent."""
        budgets = self.of(identity)
        if not budgets:
            return
        self.writer.settle()  # every finished request's cost is in the tallies
        now = self.clock.time()
        tallies = []
        for scope, subject, budget in budgets:
            tally = self._tallies.get((scope, subject))
            if tally is None or tally.budget != budget or now >= tally.renews_ts:
                tally = await self._seed(scope, subject, budget)
            tally.used_at = time.monotonic()
            tallies.append(tally)
        if self.fleet is not None:
            await self._read_fleet(tallies)
        for tally in tallies:
            scope, budget = tally.scope, tally.budget
            if tally.total >= budget.amount:
                self.metrics.budget_event(scope, "refused")
                if scope == "user":
                    whose = "the account's"
                else:
                    whose = "this key's" if identity.kind == "api_key" else "this credential's"
                raise TooManyRequests(
                    f"{whose} budget of {budget.text} is spent ({money(tally.total)} of "
                    f"{money(budget.amount)}); it renews at {tally.renews.isoformat()}",
                    retry_after=max(1, math.ceil(tally.renews_ts - now)),
                    code="budget_exceeded",
                )

    async def _read_fleet(self, tallies: list[Tally]) -> None:
        """The fleet's spend into each tally, seeding missing counters with this
        process's; on failure, each tally is left to this process's own count."""
        fleet = self.fleet
        assert fleet is not None
        try:
            values = await fleet.read(tallies)
            for tally, value in zip(tallies, values, strict=True):
                tally.fleet = value if value is not None else await fleet.seed(tally, tally.spent)
        except Exception as exc:  # BreakerOpen and TimeoutError included
            for tally in tallies:
                tally.fleet = None
            log.debug("budget_fleet_unavailable", reason=type(exc).__name__)
            return
        for tally in tallies:
            self._crossed(tally)

    async def _seed(self, scope: Scope, subject: str, budget: Budget) -> Tally:
        # Concurrent first requests share one read.
        key = f"{scope}:{subject}:{budget.amount!r}:{budget.period}"
        return await self._seeding.do(key, lambda: self._read(scope, subject, budget))

    async def _read(self, scope: Scope, subject: str, budget: Budget) -> Tally:
        today = self.clock.now().date()
        start, renews = budget.window(today)
        tally = Tally(scope, subject, budget, start, start_of(start), renews, renews.timestamp())
        async with self.writer.lock:  # nothing moves from the queue to the database
            spent = await rows.spend(self.db, scope, [subject], start)
            tally.base = spent.get(subject, 0.0)
            tally.pending = self.writer.queued_cost(tally.counts, start)
            self._tallies[(scope, subject)] = tally
        self._crossed(tally)
        return tally

    def added(self, row: UsageRow) -> None:
        """A metered request's cost, as it is queued for writing."""
        cost = row.cost or 0.0
        for tally in self._matching(row):
            tally.pending += cost
            if self.fleet is not None and cost:
                self.fleet.add(tally, cost)
                if tally.fleet is not None:
                    tally.fleet += cost
            self._crossed(tally)

    def written(self, written: Sequence[UsageRow]) -> None:
        """A batch committed: its cost moves from pending to written."""
        if not self._tallies:
            return
        for row in written:
            if row.cost:
                for tally in self._matching(row):
                    tally.pending -= row.cost
                    tally.since += row.cost

    def _matching(self, row: UsageRow) -> list[Tally]:
        tallies = self._tallies
        if not tallies:
            return []
        out = []
        if row.credential_id is not None:
            tally = tallies.get(("credential", row.credential_id))
            if tally is not None and row.at >= tally.start_ts:
                out.append(tally)
        if row.user_id is not None:
            tally = tallies.get(("user", row.user_id))
            if tally is not None and row.at >= tally.start_ts:
                out.append(tally)
        return out

    async def refresh(self) -> None:
        """Re-read every tally in use from the database; forget the idle and the old."""
        if self.fleet is not None:
            await self.fleet.send()  # what failed to go out before
        now, idle = self.clock.time(), time.monotonic() - IDLE
        for key, tally in list(self._tallies.items()):
            if tally.used_at < idle or now >= tally.renews_ts:
                del self._tallies[key]
        groups: dict[tuple[Scope, date], list[Tally]] = {}
        for tally in self._tallies.values():
            groups.setdefault((tally.scope, tally.start), []).append(tally)
        for (scope, start), tallies in groups.items():
            async with self.writer.lock:
                spent = await rows.spend(self.db, scope, [t.subject for t in tallies], start)
                for tally in tallies:
                    tally.base, tally.since = spent.get(tally.subject, 0.0), 0.0
            for tally in tallies:
                self._crossed(tally)

    def _crossed(self, tally: Tally) -> None:
        amount = tally.budget.amount
        percent = tally.total / amount * 100 if amount > 0 else 0.0
        crossed = [t for t in self.thresholds if tally.announced < t <= percent + 1e-9]
        if not crossed:
            return
        tally.announced = crossed[-1]
        if self.alerts is None:
            return
        for threshold in crossed:
            self.alerts.post(
                Alert(
                    scope=tally.scope,
                    subject_id=tally.subject,
                    threshold=threshold,
                    spent=tally.total,
                    budget=amount,
                    period=tally.budget.period,
                    window_start=tally.start,
                    renews=tally.renews,
                    at=self.clock.now(),
                )
            )
