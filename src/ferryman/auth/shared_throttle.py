"""The failed-login throttle of a fleet: counted in Redis when there is one.

Without Redis each process counts on its own (`FailureThrottle`), so a guesser spread
over N instances gets N times the tries. With FERRYMAN_REDIS_URL the failures of a key
(`ip:…`, `account:…`) are one sorted set in Redis, scored by wall-clock time, checked
and reserved in one script call, so five failures are five across the fleet.

Redis failing or slower than the timeout (or its breaker open) does not lock anyone
out and does not wave guessers through: that call is counted in this process instead,
as without Redis, and the fallback is logged once a minute.
"""

from __future__ import annotations

import asyncio
import math
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import structlog

from ferryman.auth.throttle import FailureThrottle, refusal
from ferryman.clock import Clock

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from ferryman.store.breaker import Breaker

log = structlog.get_logger("ferryman.auth")

T = TypeVar("T")

FALLBACK_LOG_EVERY = 60.0

# KEYS: the throttle's keys. ARGV: now, window (seconds), limit, member, reserve (1/0).
# Returns the seconds to wait (as text: Lua numbers become integers on the way out), or
# "0" when every key is under the limit (and, with reserve, the attempt was counted).
_SCRIPT = """
local now, window, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local wait = 0
for _, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  if redis.call('ZCARD', key) >= limit then
    local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    local left = tonumber(first[2]) + window - now
    if left > wait then wait = left end
  end
end
if wait > 0 or ARGV[5] ~= '1' then return tostring(wait) end
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, now, ARGV[4])
  redis.call('PEXPIRE', key, math.ceil(window * 1000))
end
return '0'
"""


@dataclass(frozen=True, slots=True)
class Attempt:
    """A reserved attempt, to be taken back by `succeeded`."""

    local: float | None
    """The in-process token, when the attempt was counted here."""
    member: str | None
    """The attempt's member in Redis's sets, when it was counted there."""


class LoginThrottle:
    """`FailureThrottle`'s check/reserve/succeeded, shared through Redis when given."""

    def __init__(
        self,
        local: FailureThrottle,
        clock: Clock,
        redis: Redis | None = None,
        prefix: str = "",
        breaker: Breaker | None = None,
        timeout: float = 0.5,
    ) -> None:
        self.local = local
        self.clock = clock
        self.redis = redis
        self.prefix = prefix + "login:"
        self.breaker = breaker
        self.timeout = timeout
        self._script = None if redis is None else redis.register_script(_SCRIPT)
        self._last_fallback_log = -math.inf

    @property
    def shared(self) -> bool:
        return self.redis is not None

    async def check(self, *keys: str) -> None:
        """TooManyRequests (with Retry-After) if any key is over the limit."""
        wait = await self._shared(keys, reserve=False)
        if wait is None:
            self.local.check(*keys)
        elif wait > 0:
            raise refusal(wait)

    async def reserve(self, *keys: str) -> Attempt:
        """Check the keys, then count this attempt as a failure before it is verified
        (see `FailureThrottle.reserve`)."""
        member = secrets.token_hex(8)
        wait = await self._shared(keys, reserve=True, member=member)
        if wait is None:
            return Attempt(local=self.local.reserve(*keys), member=None)
        if wait > 0:
            raise refusal(wait)
        return Attempt(local=None, member=member)

    async def succeeded(
        self, attempt: Attempt, *, clear: tuple[str, ...], undo: tuple[str, ...]
    ) -> None:
        """The attempt was right: forget every failure of the `clear` keys, and take
        just this attempt back from the `undo` keys."""
        if attempt.local is not None:
            self.local.succeeded(attempt.local, clear=clear, undo=undo)
        if attempt.member is None or self.redis is None:
            return
        redis, member = self.redis, attempt.member

        async def forget() -> None:
            async with redis.pipeline(transaction=False) as pipe:
                for key in clear:
                    pipe.delete(self.prefix + key)
                for key in undo:
                    pipe.zrem(self.prefix + key, member)
                await pipe.execute()

        try:
            await self._call(forget)
        except Exception as exc:
            # The failures stay counted until the window passes: a user who just logged
            # in may meet the limit early; never a reason to refuse this login.
            self._fell_back(exc)

    async def _shared(
        self, keys: tuple[str, ...], *, reserve: bool, member: str = ""
    ) -> float | None:
        """Seconds to wait per Redis (0: go on), or None: count in this process."""
        script = self._script
        if script is None:
            return None
        args: list[str | float | int] = [
            repr(self.clock.time()),
            repr(self.local.window),
            self.local.limit,
            member,
            "1" if reserve else "0",
        ]
        names = [self.prefix + key for key in keys]
        try:
            answer = await self._call(lambda: script(keys=names, args=args))
            return float(answer)
        except Exception as exc:
            self._fell_back(exc)
            return None

    async def _call(self, job: Callable[[], Awaitable[T]]) -> T:
        if self.breaker is None:
            async with asyncio.timeout(self.timeout):
                return await job()
        return await self.breaker.call(job, self.timeout)

    def _fell_back(self, exc: Exception) -> None:
        now = self.clock.monotonic()
        if now - self._last_fallback_log >= FALLBACK_LOG_EVERY:
            self._last_fallback_log = now
            log.warning("login_throttle_fallback", error=type(exc).__name__)
