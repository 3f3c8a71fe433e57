"""A circuit breaker in front of one upstream (`upstreams.<name>.breaker`).

    closed ──failures in a row, or a failure rate──▶ open ──open_for passed──▶ half-open
      ▲                                               ▲                          │
      │                                               └── the probe failed: ─────┤
      │                                                   open_for x growth      │
      └──────────────────────── the probe succeeded ─────────────────────────────┘

Closed, every call goes through and its outcome is counted: a 5xx, a timeout or a
connection error is a failure, anything else (4xx included) a success. Open, calls are
refused at once (503 with `Retry-After`). Once the open time has passed, the next
caller becomes the probe and every other caller is still refused, not queued.

Each admitted call holds a ticket, the breaker's generation when it was admitted; the
generation changes with every state change, so a verdict from before (a slow call that
was admitted while closed and fails after the breaker opened) neither opens it again
nor decides a probe. A probe cancelled before its verdict frees the slot for the next
caller; one that never reports loses it after `probe_timeout`.

In a fleet (`breaker_fleet.FleetBreaker`), every transition is also made in Redis and
broadcast, and the probe slot is claimed in Redis, so the fleet opens together and
sends exactly one probe. Each instance counts its own calls; deciding to open never
waits on Redis, only claiming the probe does.

Closed, a call costs one attribute read before and a few integer operations after.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from ferryman.clock import Clock
from ferryman.config.resilience import Breaker as BreakerSpec
from ferryman.errors import ServiceUnavailable

if TYPE_CHECKING:
    from ferryman.observability.metrics import Metrics

log = structlog.get_logger("ferryman.upstreams")

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
STATES = (CLOSED, OPEN, HALF_OPEN)

#: Buckets of the failure-rate window.
SLOTS = 10


class Fleet(Protocol):
    """What the breaker asks of its fleet side (`breaker_fleet.FleetBreaker`)."""

    async def claim(self, breaker: UpstreamBreaker) -> bool | None:
        """Take the fleet's probe slot: True, False (another instance has it or the
        state moved on), None (Redis did not answer: decide locally)."""
        ...

    def opened(self, breaker: UpstreamBreaker) -> None: ...

    def closed(self, breaker: UpstreamBreaker) -> None: ...

    def released(self, breaker: UpstreamBreaker) -> None: ...


class Window:
    """Calls and failures in the last `seconds`, in `SLOTS` buckets."""

    __slots__ = ("calls", "fails", "stamps", "step")

    def __init__(self, seconds: float) -> None:
        self.step = seconds / SLOTS
        self.stamps = [-1] * SLOTS
        self.calls = [0] * SLOTS
        self.fails = [0] * SLOTS

    def add(self, now: float, failed: bool) -> None:
        slot = int(now / self.step)
        i = slot % SLOTS
        if self.stamps[i] != slot:
            self.stamps[i], self.calls[i], self.fails[i] = slot, 0, 0
        self.calls[i] += 1
        if failed:
            self.fails[i] += 1

    def totals(self, now: float) -> tuple[int, int]:
        slot = int(now / self.step)
        calls = fails = 0
        for i in range(SLOTS):
            if slot - self.stamps[i] < SLOTS:
                calls += self.calls[i]
                fails += self.fails[i]
        return calls, fails

    def clear(self) -> None:
        self.stamps = [-1] * SLOTS


class UpstreamBreaker:
    """See the module docstring. Runs on the event loop thread only (no lock)."""

    def __init__(
        self, upstream: str, spec: BreakerSpec, clock: Clock, metrics: Metrics | None = None
    ) -> None:
        self.upstream = upstream
        self.spec = spec
        self.clock = clock
        self.metrics = metrics
        self.closed = True
        """The hot path's test: one attribute read."""
        self.state = CLOSED
        self.gen = 0
        self.until = 0.0
        """Wall-clock time the current opening ends (comparable across a fleet)."""
        self.opens = 0
        """Openings in a row (a failed probe counts); 0 once closed."""
        self.failures = 0
        """Failures in a row while closed."""
        self.window = Window(spec.window) if spec.failure_rate is not None else None
        self.probe_ends = 0.0
        self.reason: str | None = None
        self.refusals = 0
        self.fleet: Fleet | None = None
        self.fleet_gen = 0
        """The generation of the fleet's shared state this mirror last saw."""
        self.quiet_until = 0.0
        """After the fleet said another instance probes: refuse without asking again."""
        if metrics is not None:
            metrics.upstream_breaker(upstream, CLOSED, transition=False)

    # -- the caller's side ---------------------------------------------------------

    async def enter(self) -> int:
        """A ticket for a call made while not closed (the probe), or ServiceUnavailable."""
        if self.closed:
            return self.gen
        now = self.clock.time()
        if self.state == OPEN and now < self.until:
            raise self.refusal(self.until - now)
        if self.state == HALF_OPEN and now < self.probe_ends:
            raise self.refusal(1.0)
        if now < self.quiet_until:
            raise self.refusal(self.quiet_until - now)
        if self.fleet is not None:
            claimed = await self.fleet.claim(self)
            if self.closed:  # the fleet closed it meanwhile
                return self.gen
            if claimed is False:
                self.quiet_until = self.clock.time() + 1.0
                raise self.refusal(max(self.until - self.clock.time(), 1.0))
        self.probe_ends = self.clock.time() + self.spec.probe_timeout
        self._move(HALF_OPEN)
        log.info("upstream_breaker_probe", upstream=self.upstream, opens=self.opens)
        return self.gen

    def succeeded(self, ticket: int) -> None:
        if ticket != self.gen:
            return
        if self.closed:
            self.failures = 0
            if self.window is not None:
                self.window.add(self.clock.time(), False)
            return
        if self.state == HALF_OPEN:
            self.close()
            if self.fleet is not None:
                self.fleet.closed(self)

    def failed(self, ticket: int, reason: str) -> bool:
        """Count a failure (True: a verdict was given, for the caller's bookkeeping)."""
        if ticket != self.gen:
            return True
        if self.closed:
            self.failures += 1
            if self.failures >= self.spec.failures or self._rate_tripped():
                self.open(reason)
        elif self.state == HALF_OPEN:
            self.open(reason)
        return True

    def answered(self, ticket: int, status: int) -> bool:
        """The upstream answered with `status`: a 5xx is a failure, anything else not."""
        if status >= 500:
            return self.failed(ticket, f"status {status}")
        self.succeeded(ticket)
        return True

    def abandoned(self, ticket: int) -> None:
        """The call ended without a verdict (its client left): a probe's slot is free."""
        if ticket == self.gen and self.state == HALF_OPEN:
            self.probe_ends = 0.0
            if self.fleet is not None:
                self.fleet.released(self)

    def refusal(self, wait: float) -> ServiceUnavailable:
        self.refusals += 1
        if self.metrics is not None:
            self.metrics.upstream_breaker_refused(self.upstream)
        seconds = max(1, math.ceil(wait))
        return ServiceUnavailable(
            f"the upstream {self.upstream!r} is failing and its circuit breaker is open; "
            f"try again in {seconds} s",
            code="upstream_circuit_open",
            headers=[(b"retry-after", str(seconds).encode())],
        )

    # -- the states ----------------------------------------------------------------

    def _rate_tripped(self) -> bool:
        window, rate = self.window, self.spec.failure_rate
        if window is None or rate is None:
            return False
        now = self.clock.time()
        window.add(now, True)
        calls, fails = window.totals(now)
        return calls >= self.spec.min_calls and fails >= rate * calls

    def open(self, reason: str) -> None:
        """Open (again) for the next step's time, here, and in the fleet."""
        self.opens += 1
        wait = self.spec.open_time(self.opens)
        self.until = self.clock.time() + wait
        self.reason = reason
        was = self.state
        self._move(OPEN)
        log.warning(
            "upstream_breaker_open",
            upstream=self.upstream,
            reason=reason,
            open_for=wait,
            probe_failed=was == HALF_OPEN,
            failures=self.failures,
        )
        if self.fleet is not None:
            self.fleet.opened(self)

    def close(self) -> None:
        self.failures = 0
        self.opens = 0
        self.reason = None
        self.quiet_until = 0.0
        if self.window is not None:
            self.window.clear()
        self._move(CLOSED)
        log.info("upstream_breaker_closed", upstream=self.upstream)

    def adopt(self, fleet_gen: int, state: str, until: float, opens: int) -> None:
        """The fleet's state, when newer than the one this mirror last saw."""
        if fleet_gen <= self.fleet_gen:
            return
        self.fleet_gen = fleet_gen
        if state == OPEN:
            self.until, self.opens = until, opens
            self.reason = self.reason or "another instance opened it"
            if self.state != OPEN:
                self._move(OPEN)
        elif not self.closed:
            self.close()

    def _move(self, state: str) -> None:
        self.state = state
        self.closed = state == CLOSED
        self.gen += 1
        if self.metrics is not None:
            self.metrics.upstream_breaker(self.upstream, state)

    def report(self) -> dict[str, Any]:
        """For `/health`: the state, and while not closed, why and until when."""
        out: dict[str, Any] = {"state": self.state, "refused": self.refusals}
        if not self.closed:
            out["opens"] = self.opens
            out["retry_in"] = round(max(0.0, self.until - self.clock.time()), 3)
            out["reason"] = self.reason
        elif self.failures:
            out["failures"] = self.failures
        if self.fleet is not None:
            out["shared"] = True
        return out
