"""Where limiter state lives: this process's memory, or Redis (one atomic script).

Both take a request's tiers together and answer one decision per tier; unless every
tier admits, no state changes (a request refused by one tier consumes none).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from ferryman.limits.algorithms import Decision, charge, gcra, sliding_window
from ferryman.limits.rates import Rate

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript


class Tier(NamedTuple):
    """One tier of one request: the counter's key, its algorithm and rate, and what the
    request costs in it (GCRA only: 0 checks without consuming; see `charge`)."""

    key: str
    algorithm: str  # "gcra" | "sliding_window"
    rate: Rate
    cost: int = 1


class MemoryBackend:
    """Counters in a dict, on the event loop thread (no lock needed)."""

    def __init__(self) -> None:
        self.gcra: dict[str, float] = {}
        self.windows: dict[str, tuple[int, int, int]] = {}

    def hit(self, tiers: list[Tier], now: float) -> list[Decision]:
        decisions: list[Decision] = []
        writes: list[tuple[str, float | tuple[int, int, int]]] = []
        for tier in tiers:
            if tier.algorithm == "gcra":
                decision, tat = gcra(tier.rate, self.gcra.get(tier.key, 0.0), now, tier.cost)
                writes.append((tier.key, tat))
            else:
                window, current, previous = self.windows.get(tier.key, (0, 0, 0))
                decision, *state = sliding_window(tier.rate, window, current, previous, now)
                writes.append((tier.key, (state[0], state[1], state[2])))
            decisions.append(decision)
        if all(d.allowed for d in decisions):
            for key, value in writes:
                if isinstance(value, tuple):
                    self.windows[key] = value
                else:
                    self.gcra[key] = value
        return decisions

    def charge(self, tiers: list[Tier], now: float) -> None:
        """Consume each GCRA tier's cost unconditionally (tokens known after the fact)."""
        for tier in tiers:
            self.gcra[tier.key] = charge(tier.rate, self.gcra.get(tier.key, 0.0), now, tier.cost)

    def sweep(self, now: float) -> int:
        """Forget counters that no longer hold anything back; how many."""
        stale = [key for key, tat in self.gcra.items() if tat <= now]
        for key in stale:
            del self.gcra[key]
        old = [
            key
            for key, (window, _, _) in self.windows.items()
            if window < math.floor(now / _period_of(key)) - 1
        ]
        for key in old:
            del self.windows[key]
        return len(stale) + len(old)


def _period_of(key: str) -> float:
    """Window keys end in `|<period>` (see `limiter.tier_key`)."""
    return float(key.rsplit("|", 1)[1])


SCRIPT = (Path(__file__).parent / "redis_script.lua").read_text()


# `max_parallel` slots (limits/parallel.py). KEYS[1]: a key's set of slots, scored by
# when each lease ends. ARGV: limit, lease seconds, member. 1 admitted, 0 full.
ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local lease = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + lease, ARGV[3])
redis.call('PEXPIRE', KEYS[1], math.ceil(lease * 1000))
return 1
"""

# KEYS: sets; ARGV[1]: lease seconds; ARGV[i + 1]: the member held in KEYS[i]. Only
# members still there are renewed (XX): one that expired meanwhile stays given up.
RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local lease = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  if redis.call('ZSCORE', key, ARGV[i + 1]) then
    redis.call('ZADD', key, 'XX', now + lease, ARGV[i + 1])
    redis.call('PEXPIRE', key, math.ceil(lease * 1000))
  end
end
return #KEYS
"""


class RedisBackend:
    """Every tier in one EVALSHA, timed by Redis's own clock (`TIME`); and the
    `max_parallel` slots, leased by the same clock."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix
        self._script: AsyncScript = redis.register_script(SCRIPT)
        self._acquire: AsyncScript = redis.register_script(ACQUIRE)
        self._renew: AsyncScript = redis.register_script(RENEW)

    async def acquire(self, key: str, limit: int, lease: float, member: str) -> bool:
        """Take a slot under `key` unless `limit` are held (expired leases are not)."""
        answer = await self._acquire(keys=[self.prefix + key], args=[limit, lease, member])
        return int(answer) == 1

    async def release(self, key: str, member: str) -> None:
        await self.redis.zrem(self.prefix + key, member)

    async def renew(self, held: dict[str, str], lease: float) -> None:
        """Extend the leases of `held` (member -> key), in one call."""
        members = list(held)
        keys = [self.prefix + held[member] for member in members]
        await self._renew(keys=keys, args=[lease, *members])

    async def hit(self, tiers: list[Tier]) -> list[Decision]:
        raw = await self._call(tiers, None)
        decisions = []
        for index, tier in enumerate(tiers):
            allowed, remaining, reset, retry = raw[index * 4 : index * 4 + 4]
            limit = tier.rate.burst if tier.algorithm == "gcra" else tier.rate.count
            decisions.append(
                Decision(
                    allowed=int(allowed) == 1,
                    limit=limit,
                    remaining=int(remaining),
                    reset=float(reset),
                    retry_after=float(retry),
                )
            )
        return decisions

    async def charge(self, tiers: list[Tier]) -> None:
        """Consume each GCRA tier's cost unconditionally, in one call."""
        await self._call(tiers, "c")

    async def _call(self, tiers: list[Tier], algorithm: str | None) -> list[str | int]:
        keys = [self.prefix + tier.key for tier in tiers]
        args: list[str | float | int] = []
        for tier in tiers:
            rate = tier.rate
            kind = algorithm or ("g" if tier.algorithm == "gcra" else "w")
            args += [kind, rate.count, rate.period, rate.burst, tier.cost]
        result: list[str | int] = await self._script(keys=keys, args=args)
        return result
