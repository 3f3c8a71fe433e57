"""`max_parallel`: at most N requests of one key in flight, across the fleet.

With the limiter counting in Redis (`limiter.backend`; `auto` with FERRYMAN_REDIS_URL)
the requests in flight under a key are a sorted set in Redis: an admitted request adds
a member scored by when its lease ends and removes it when it ends. A lease lasts
`limiter.LEASE` seconds and the process renews its requests' leases every
`limiter.RENEW` seconds while they last (an LLM stream may run for minutes), so the
slots of an instance that dies free themselves within a lease. Redis's own clock
(`TIME`) scores the leases: the instances' clocks need not agree.

Redis failing or slow follows `limiter.on_error`, like the rate limits: `fail_open`
counts in this process (the cap then holds per instance), `fail_closed` refuses with
503. Without Redis the count is this process's own.
"""

from __future__ import annotations

from dataclasses import dataclass

from ferryman.config.limits import Parallel
from ferryman.config.routes import Route
from ferryman.errors import TooManyRequests
from ferryman.limits.limiter import Caller, Limits, default_by, part


@dataclass(slots=True, frozen=True)
class Slot:
    """One admitted request's place: its key, and its member in Redis if counted there."""

    key: str
    member: str | None = None


class ParallelCap:
    """At most `limit` requests of one key in flight; see the module docstring."""

    def __init__(self, spec: Parallel, route: Route, name: str, limits: Limits) -> None:
        self.limit = spec.limit
        self.by = spec.by or default_by(route)
        self.name = name
        self.limits = limits
        self.in_flight: dict[str, int] = {}
        """This process's count per key (without Redis, or while it fails)."""

    async def acquire(self, caller: Caller) -> Slot:
        """The request's slot; TooManyRequests (429 `too_many_in_flight`) when its key
        is full, ServiceUnavailable when Redis fails under `fail_closed`."""
        key = ":".join(part(name, caller) for name in self.by)
        limits = self.limits
        if limits.redis is not None:
            try:
                member = await limits.enter(self._shared_key(key), self.limit)
            except Exception as exc:  # BreakerOpen and TimeoutError included
                limits.fell_back(exc)  # raises under fail_closed
            else:
                if member is None:
                    raise self._refusal()
                return Slot(key, member)
        held = self.in_flight.get(key, 0)
        if held >= self.limit:
            raise self._refusal()
        self.in_flight[key] = held + 1
        return Slot(key)

    async def release(self, slot: Slot) -> None:
        if slot.member is not None:
            await self.limits.leave(self._shared_key(slot.key), slot.member)
            return
        held = self.in_flight.get(slot.key, 0) - 1
        if held <= 0:
            self.in_flight.pop(slot.key, None)
        else:
            self.in_flight[slot.key] = held

    def _shared_key(self, key: str) -> str:
        return f"par:{self.name}:{key}"

    def _refusal(self) -> TooManyRequests:
        return TooManyRequests(
            f"at most {self.limit} requests may be in flight at once here "
            f"(counted by {', '.join(self.by)})",
            retry_after=1,
            code="too_many_in_flight",
        )
