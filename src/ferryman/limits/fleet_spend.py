"""A fleet's spend per budget window, as counters in Redis.

Without Redis an instance learns of the others' spend through the database, every
`budgets.refresh` seconds once they have written it, so N instances can overshoot a
budget by what the others spent meanwhile. With FERRYMAN_REDIS_URL every budget window
in use is one counter, `{prefix}budget:{scope}:{subject}:{window start}`:

- read before each request with a budget (one MGET for all the caller's budgets);
- seeded, when missing, from the database's sum plus this instance's own queued cost
  (`SET NX`: the first seeder wins, the others read its value);
- increased by each metered request's cost when it ends (`INCRBYFLOAT`, batched, and
  only if the counter exists: a cost that finds none is in the database by the time a
  seeder reads it, or in that instance's queue, which its next seed counts);
- expired an hour after the window ends.

What can still slip past a budget: the requests admitted across the fleet before it
was reached (bounded with `max_parallel`), and, when a counter is seeded, the cost the
other instances had queued but not yet written (at most one usage flush interval's).
Redis failing or slow (its breaker open) leaves each instance on its own tally.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import structlog

if TYPE_CHECKING:
    from datetime import date

    from redis.asyncio import Redis

    from ferryman.store.breaker import Breaker

log = structlog.get_logger("ferryman.budgets")

#: Seconds a counter outlives its window (a late request's cost still finds it).
GRACE = 3600

# KEYS[1]: the counter; ARGV: the seed, its expiry (Unix seconds). The value now there.
SEED = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EXAT', ARGV[2]) then return ARGV[1] end
return redis.call('GET', KEYS[1])
"""

# KEYS[1..n]: counters to add to, ARGV[1] = n, ARGV[1 + i]: what to add to KEYS[i] if
# it exists; KEYS[n + 1..]: counters to read. Their values (nil where missing).
ADD_READ = """
local n = tonumber(ARGV[1])
for i = 1, n do
  if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('INCRBYFLOAT', KEYS[i], ARGV[1 + i]) end
end
local out = {}
for i = n + 1, #KEYS do out[#out + 1] = redis.call('GET', KEYS[i]) end
return out
"""


class Window(Protocol):
    """What names a counter and bounds its life: a budget's tally."""

    @property
    def scope(self) -> str: ...
    @property
    def subject(self) -> str: ...
    @property
    def start(self) -> date: ...
    @property
    def renews_ts(self) -> float: ...


class FleetSpend:
    """See the module docstring. Reads raise on failure (the breaker's included);
    additions are sent in the background and kept for the next try when they fail."""

    def __init__(self, redis: Redis, prefix: str, breaker: Breaker, timeout: float) -> None:
        self.redis = redis
        self.prefix = prefix + "budget:"
        self.breaker = breaker
        self.timeout = timeout
        self._seed = redis.register_script(SEED)
        self._add_read = redis.register_script(ADD_READ)
        self._owed: dict[str, float] = {}
        self._sending: asyncio.Task[None] | None = None

    def key(self, window: Window) -> str:
        return f"{self.prefix}{window.scope}:{window.subject}:{window.start.isoformat()}"

    async def read(self, windows: Sequence[Window]) -> list[float | None]:
        """The fleet's spend in each window, None where no counter exists yet; what
        this process owes the counters goes in the same call, first."""
        owed, self._owed = self._owed, {}
        try:
            values = await self._call(owed, [self.key(w) for w in windows], self.timeout)
        except BaseException:
            self._keep(owed)
            raise
        return [None if v is None else float(v) for v in values]

    async def seed(self, window: Window, spent: float) -> float:
        """Start the window's counter at `spent` unless another instance has; the
        counter's value."""
        args: list[str | int] = [repr(spent), int(window.renews_ts) + GRACE]
        value = await self.breaker.call(
            lambda: self._seed(keys=[self.key(window)], args=args), self.timeout
        )
        return float(value)

    def add(self, window: Window, cost: float) -> None:
        """Count a request's cost in the fleet's counter (soon, in the background)."""
        key = self.key(window)
        self._owed[key] = self._owed.get(key, 0.0) + cost
        if self._sending is None or self._sending.done():
            self._sending = asyncio.get_running_loop().create_task(self.send())

    async def send(self) -> None:
        """Send what is owed, in one call; kept for the next try if it fails."""
        owed, self._owed = self._owed, {}
        if not owed:
            return
        try:
            await self._call(owed, [], 1.0)
        except Exception as exc:  # BreakerOpen and TimeoutError included
            self._keep(owed)
            log.debug("budget_spend_not_sent", reason=type(exc).__name__, keys=len(owed))

    async def _call(self, owed: dict[str, float], read: list[str], seconds: float) -> list[Any]:
        keys = [*owed, *read]
        args: list[str | int] = [len(owed), *(repr(v) for v in owed.values())]
        result: list[Any] = await self.breaker.call(
            lambda: self._add_read(keys=keys, args=args), seconds
        )
        return result

    def _keep(self, owed: dict[str, float]) -> None:
        # A call that timed out may still have been applied: counted twice then, which
        # errs on the budget's side.
        for key, amount in owed.items():
            self._owed[key] = self._owed.get(key, 0.0) + amount
