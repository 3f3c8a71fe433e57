"""A circuit breaker in front of Redis: stop waiting on a server that does not answer.

    closed ──`failures` errors in a row──▶ open ──`cooloff` passed, next caller──▶ half-open
      ▲                                     ▲                                       │
      │                                     └──── the probe failed: cooloff x 2 ────┤
      └──────────────────────────── the probe succeeded ────────────────────────────┘

Closed, every call goes to Redis; an error or an answer later than the caller's timeout
counts, a success resets the count. Open, no call goes to Redis: callers take their
fallback at once (the limiter's `on_error`) instead of each waiting out the timeout.
Once the cool-off has passed, the next caller is the probe (half-open) and every other
caller keeps the fallback until it reports: a success closes the breaker (the cool-off
starts again from `cooloff`), a failure opens it again for twice the cool-off, up to
`max_cooloff`.

Each admitted call holds a ticket, the breaker's state when it was admitted; a report
under an older ticket is ignored. So calls that were already waiting when the breaker
opened neither open it again nor lengthen (or shorten) the wait, and only the probe
decides a half-open breaker. A probe that is cancelled (its client left) frees the
probe slot for the next caller without a verdict.

One breaker per Redis client, shared by every caller on the request path: whichever
of them sees Redis fail, all of them stop waiting. Closed, it costs a caller two
attribute reads before the call and one method call after.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import structlog

from ferryman.clock import Clock

if TYPE_CHECKING:
    from ferryman.config.limits import RedisBreaker
    from ferryman.observability.metrics import Metrics

log = structlog.get_logger("ferryman.redis")

T = TypeVar("T")

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
STATES = (CLOSED, OPEN, HALF_OPEN)


class BreakerOpen(Exception):
    """Not called: the breaker is open, or half-open with its probe under way."""


class Breaker:
    """See the module docstring. Runs on the event loop thread only (no lock)."""

    def __init__(self, spec: RedisBreaker, clock: Clock, metrics: Metrics | None = None) -> None:
        self.spec = spec
        self.clock = clock
        self.metrics = metrics
        self.closed = True
        """The hot path's test: `state == "closed"`, as one attribute read."""
        self.state = CLOSED
        self.ticket = 0
        """Changes with every state change; see the module docstring."""
        self.failures = 0
        """Consecutive failures while closed."""
        self.cooloff = spec.cooloff
        """The wait of the current opening (the next one's, while closed)."""
        self.retry_at = -math.inf
        self.probing = False
        self.opened_at: float | None = None
        """When the current outage began (the first opening since the breaker closed)."""
        self.opens = 0
        """Times it opened, ever (a failed probe counts too)."""
        self.reason: str | None = None
        if metrics is not None:
            metrics.redis_breaker(CLOSED, transition=False)

    # -- the caller's side ---------------------------------------------------------

    def admit(self) -> int | None:
        """A ticket for one call to Redis, or None: take the fallback without calling."""
        if self.closed:
            return self.ticket
        if self.probing or self.clock.monotonic() < self.retry_at:
            return None
        self._move(HALF_OPEN)
        self.probing = True
        return self.ticket

    def succeeded(self, ticket: int) -> None:
        if ticket != self.ticket:
            return
        if self.closed:
            if self.failures:
                self.failures = 0
            return
        # The probe: Redis answers again.
        down = self.clock.monotonic() - (self.opened_at or 0.0)
        self.probing = False
        self.failures = 0
        self.cooloff = self.spec.cooloff
        self.opened_at = None
        self.reason = None
        self._move(CLOSED)
        log.info("redis_breaker_closed", down_for=round(down, 3))

    def failed(self, ticket: int, error: BaseException | str) -> None:
        if ticket != self.ticket:
            return
        reason = error if isinstance(error, str) else type(error).__name__
        if self.closed:
            self.failures += 1
            if self.failures >= self.spec.failures:
                self.opened_at = self.clock.monotonic()
                self._open(reason, self.spec.cooloff, probe=False)
            return
        # The probe failed: wait longer (never shorter) before the next one.
        self.probing = False
        self._open(reason, min(self.cooloff * 2, self.spec.max_cooloff), probe=True)

    def abandoned(self, ticket: int) -> None:
        """The call was cancelled before Redis answered: no verdict. A probe's slot goes
        to the next caller (the cool-off has already passed)."""
        if ticket == self.ticket and self.probing:
            self.probing = False

    async def call(self, job: Callable[[], Awaitable[T]], seconds: float) -> T:
        """`await job()` within `seconds`, reporting the outcome; BreakerOpen without
        calling when the breaker says not to."""
        ticket = self.admit()
        if ticket is None:
            raise BreakerOpen("Redis is not asked while the breaker is open")
        try:
            async with asyncio.timeout(seconds):
                result = await job()
        except Exception as exc:  # TimeoutError included
            self.failed(ticket, exc)
            raise
        except BaseException:
            self.abandoned(ticket)
            raise
        self.succeeded(ticket)
        return result

    # -- the states ----------------------------------------------------------------

    def _open(self, reason: str, cooloff: float, *, probe: bool) -> None:
        self.cooloff = cooloff
        self.retry_at = self.clock.monotonic() + cooloff
        self.opens += 1
        self.reason = reason
        self._move(OPEN)
        log.warning(
            "redis_breaker_open",
            reason=reason,
            cooloff=cooloff,
            probe_failed=probe,
            failures=self.failures,
        )

    def _move(self, state: str) -> None:
        self.state = state
        self.closed = state == CLOSED
        self.ticket += 1
        if self.metrics is not None:
            self.metrics.redis_breaker(state)

    def report(self) -> dict[str, Any]:
        """For `/health/ready`: the state, and while not closed, since when and why."""
        out: dict[str, Any] = {"state": self.state, "opens": self.opens}
        if not self.closed:
            now = self.clock.monotonic()
            out["cooloff"] = self.cooloff
            out["probe_in"] = round(max(0.0, self.retry_at - now), 3)
            out["down_for"] = round(now - (self.opened_at or now), 3)
            out["reason"] = self.reason
        elif self.failures:
            out["failures"] = self.failures
        return out
