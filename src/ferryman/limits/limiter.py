"""A route's limits applied to one request: keys, backend, fallback, headers.

Every tier of the route is checked in one backend call; the request is refused
(`429 rate_limited`, with `Retry-After`) when any tier refuses, and then nothing is
consumed. Admitted or not, the answer carries `RateLimit-Limit`, `-Remaining`,
`-Reset` of the tightest tier and `RateLimit-Policy` listing every tier.

With the Redis backend, an error or an answer slower than `limiter.timeout` is handled
per `on_error`: `fail_open` counts in this process instead (logged at most once a
minute, counted in `ferryman_limiter_fallbacks_total`), `fail_closed` refuses with 503.
After `breaker.failures` such answers in a row, Redis is not asked at all for a while
(`store.breaker`): the fallback applies at once instead of after the timeout.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from ferryman.auth.identity import Identity
from ferryman.clock import Clock
from ferryman.config.limits import Limiter, LimitKey
from ferryman.config.routes import Route
from ferryman.errors import ServiceUnavailable, TooManyRequests
from ferryman.limits.algorithms import Decision
from ferryman.limits.backends import MemoryBackend, RedisBackend, Tier
from ferryman.limits.rates import Rate, parse_rate
from ferryman.observability.metrics import Metrics
from ferryman.store.breaker import Breaker, BreakerOpen

log = structlog.get_logger("ferryman.limits")

#: Seconds between two log lines about the Redis limiter falling back.
FALLBACK_LOG_EVERY = 60.0

LEASE = 30.0
"""Seconds a `max_parallel` slot in Redis outlives its instance's last renewal."""
RENEW = 10.0
"""Seconds between two renewals of this process's slots."""


@dataclass(slots=True)
class Caller:
    """What limit keys are made of, for one request."""

    ip: str
    route: str
    user: str | None = None
    credential: str | None = None
    session: str | None = None
    origin: str | None = None


def part(name: LimitKey, caller: Caller) -> str:
    """The caller's value of one `by` name, as it goes into a limit key."""
    if name == "ip":
        return caller.ip
    if name == "route":
        return caller.route
    if name == "origin":
        return caller.origin or "-"
    value = getattr(caller, name)
    # Without an identity (an open route), each address counts on its own.
    return value if value is not None else f"ip={caller.ip}"


def default_by(route: Route) -> tuple[LimitKey, ...]:
    return ("ip",) if route.auth == ("none",) else ("credential",)


@dataclass(frozen=True, slots=True)
class CompiledTier:
    by: tuple[LimitKey, ...]
    algorithm: str
    rate: Rate
    prefix: str
    suffix: str

    @classmethod
    def of(
        cls, route: str, index: int, by: tuple[LimitKey, ...], algorithm: str, rate: Rate
    ) -> CompiledTier:
        # The period closes the key: the memory backend's sweep reads it back.
        return cls(by, algorithm, rate, f"rl:{route}:{index}:", f"|{rate.period:g}")

    def key(self, caller: Caller) -> str:
        by = self.by
        if len(by) == 1:
            return self.prefix + part(by[0], caller) + self.suffix
        return self.prefix + ":".join(part(name, caller) for name in by) + self.suffix


class Limits:
    """Checks routes' rate limits against one backend (plus a fallback)."""

    def __init__(
        self,
        spec: Limiter,
        clock: Clock,
        metrics: Metrics,
        redis: RedisBackend | None = None,
        breaker: Breaker | None = None,
    ) -> None:
        self.spec = spec
        self.clock = clock
        self.metrics = metrics
        self.memory = MemoryBackend()
        self.redis = redis
        #: The Redis client's breaker (the app shares one with every Redis caller).
        self.breaker = breaker or Breaker(spec.breaker, clock)
        self.fallbacks = 0
        self._last_fallback_log = -math.inf
        self.leases: dict[str, str] = {}
        """This process's concurrency slots in Redis: member -> key."""
        self._instance = secrets.token_hex(6)
        self._members = itertools.count()

    async def hit(self, tiers: list[Tier]) -> list[Decision]:
        if self.redis is None:
            return self.memory.hit(tiers, self.clock.time())
        return await self._shared(tiers)

    async def _shared(self, tiers: list[Tier]) -> list[Decision]:
        redis, breaker = self.redis, self.breaker
        assert redis is not None
        # Inlined `Breaker.call`: this runs for every limited request.
        ticket = breaker.ticket if breaker.closed else breaker.admit()
        if ticket is None:
            return self._fallback(tiers, BreakerOpen("the Redis breaker is open"))
        try:
            async with asyncio.timeout(self.spec.timeout):
                decisions = await redis.hit(tiers)
        except Exception as exc:  # TimeoutError included
            breaker.failed(ticket, exc)
            return self._fallback(tiers, exc)
        except BaseException:
            breaker.abandoned(ticket)
            raise
        breaker.succeeded(ticket)
        return decisions

    def _fallback(self, tiers: list[Tier], exc: Exception) -> list[Decision]:
        self.fell_back(exc)
        return self.memory.hit(tiers, self.clock.time())

    def fell_back(self, exc: Exception) -> None:
        """Redis failed a check: refuse (`fail_closed`) or say that this process counts
        instead (`fail_open`: counted, logged at most once a minute)."""
        if self.spec.on_error == "fail_closed":
            raise ServiceUnavailable(
                "the rate limiter is unavailable", code="limiter_unavailable"
            ) from exc
        self.fallbacks += 1
        self.metrics.limiter_fallback()
        now = time.monotonic()
        if now - self._last_fallback_log >= FALLBACK_LOG_EVERY:
            self._last_fallback_log = now
            log.warning(
                "limiter_fallback",
                reason=type(exc).__name__,
                detail=str(exc)[:200],
                fallbacks=self.fallbacks,
            )

    # -- concurrency slots (`max_parallel`, limits/parallel.py) -----------------------

    async def enter(self, key: str, limit: int) -> str | None:
        """A slot under `key` in Redis: its member, or None when `limit` are held.
        Raises when Redis fails (BreakerOpen, TimeoutError, a connection error)."""
        redis = self.redis
        assert redis is not None
        member = f"{self._instance}:{next(self._members)}"
        admitted = await self.breaker.call(
            lambda: redis.acquire(key, limit, LEASE, member), self.spec.timeout
        )
        if not admitted:
            return None
        self.leases[member] = key
        return member

    async def leave(self, key: str, member: str) -> None:
        """Give a slot back; if Redis cannot be told, its lease runs out by itself."""
        self.leases.pop(member, None)
        redis = self.redis
        if redis is None:
            return
        try:
            await self.breaker.call(lambda: redis.release(key, member), self.spec.timeout)
        except Exception as exc:  # BreakerOpen and TimeoutError included
            log.debug("parallel_release_failed", reason=type(exc).__name__)

    async def renew(self) -> None:
        """Extend the lease of every slot this process holds (a periodic job)."""
        redis, leases = self.redis, dict(self.leases)
        if redis is None or not leases:
            return
        try:
            # Not the request path's 50 ms: one call for every slot, off the hot path.
            await self.breaker.call(lambda: redis.renew(leases, LEASE), max(1.0, self.spec.timeout))
        except BreakerOpen:
            pass  # the breaker said once that it opened; a lease outlives two misses
        except Exception as exc:  # TimeoutError included
            log.warning("parallel_renew_failed", reason=type(exc).__name__, slots=len(leases))

    async def charge(self, tiers: list[Tier]) -> None:
        """Consume what a request used after the fact (its tokens); never raises."""
        redis = self.redis
        if redis is not None:
            try:
                await self.breaker.call(lambda: redis.charge(tiers), self.spec.timeout)
                return
            except BreakerOpen:
                # Not logged per request: the breaker said once that it opened.
                self.fallbacks += 1
                self.metrics.limiter_fallback()
            except Exception as exc:  # TimeoutError included
                self.fallbacks += 1
                self.metrics.limiter_fallback()
                log.warning("limiter_charge_failed", reason=type(exc).__name__)
        self.memory.charge(tiers, self.clock.time())


class RouteLimits:
    """One route's tiers, compiled; or, without a route, the given tiers (the management
    API's own limits, which no gateway file describes)."""

    def __init__(
        self, route: Route | None, name: str, limits: Limits, tiers: Sequence[CompiledTier] = ()
    ) -> None:
        self.name = name
        self.limits = limits
        if route is not None:
            fallback = default_by(route)
            tiers = [
                CompiledTier.of(name, index, tier.by or fallback, tier.algorithm, tier.parsed)
                for index, tier in enumerate(route.limits)
            ]
        self.tiers = list(tiers)
        self.policy = ", ".join(
            f"{t.rate.burst if t.algorithm == 'gcra' else t.rate.count};w={t.rate.period:g}"
            for t in self.tiers
        ).encode()

    async def check(
        self, caller: Caller, account: Sequence[AccountTier] = ()
    ) -> list[tuple[bytes, bytes]]:
        """The RateLimit headers for an admitted request; TooManyRequests otherwise.

        `account` are the caller's own tiers (its credential's and account's rates),
        checked in the same backend call as the route's."""
        tiers = [Tier(t.key(caller), t.algorithm, t.rate) for t in self.tiers]
        compiled: list[CompiledTier | AccountTier] = [*self.tiers]
        if account:
            tiers += [Tier(a.key, "gcra", a.rate, 0 if a.tokens else 1) for a in account]
            compiled += account
        limits = self.limits
        if limits.redis is None:  # no coroutine to await on the in-process path
            decisions = limits.memory.hit(tiers, limits.clock.time())
        else:
            decisions = await limits._shared(tiers)
        headers = self.headers(decisions, account)
        refused = [(t, d) for t, d in zip(compiled, decisions, strict=True) if not d.allowed]
        if refused:
            tier, decision = max(refused, key=lambda pair: pair[1].retry_after)
            retry_after = max(1, math.ceil(decision.retry_after))
            if isinstance(tier, AccountTier) and tier.tokens:
                error = TooManyRequests(
                    f"token limit of {tier.rate.count} per minute used up "
                    f"(counted by {', '.join(tier.by)})",
                    retry_after=retry_after,
                    code="token_rate_limited",
                )
            else:
                error = TooManyRequests(
                    f"rate limit of {tier.rate.count} per {tier.rate.period:g} s exceeded "
                    f"(counted by {', '.join(tier.by)})",
                    retry_after=retry_after,
                    code="rate_limited",
                )
            error.headers.extend(headers)
            raise error
        return headers

    def headers(
        self, decisions: Sequence[Decision], account: Sequence[AccountTier] = ()
    ) -> list[tuple[bytes, bytes]]:
        """The RateLimit headers of the request tiers (token tiers count tokens, not
        requests, and are left out)."""
        policy = self.policy
        if account:
            requests = [a for a in account if not a.tokens]
            if len(requests) != len(account):
                decisions = [
                    d
                    for d, t in zip(decisions, [*self.tiers, *account], strict=True)
                    if not (isinstance(t, AccountTier) and t.tokens)
                ]
            if requests:
                extra = ", ".join(f"{a.rate.burst};w={a.rate.period:g}" for a in requests)
                policy = policy + b", " + extra.encode() if policy else extra.encode()
        if not decisions:
            return []
        tight = min(decisions, key=lambda d: (d.remaining, -d.reset))
        return [
            (b"ratelimit-limit", str(tight.limit).encode()),
            (b"ratelimit-remaining", str(tight.remaining).encode()),
            (b"ratelimit-reset", str(max(0, math.ceil(tight.reset))).encode()),
            (b"ratelimit-policy", policy),
        ]


@dataclass(frozen=True, slots=True)
class AccountTier:
    """A rate that follows the caller across routes: its credential's or account's.

    A `tokens` tier counts LLM tokens a minute: checked (is any left?) before the
    request and charged with the tokens the upstream reports once it has answered."""

    key: str
    by: tuple[str, ...]
    rate: Rate
    tokens: bool = False


class AccountRates:
    """The per-credential and per-account tiers of a caller: a key's own `rpm`, else the
    default for its kind; and the account's `rpm`. On LLM routes, the same for `tpm`."""

    def __init__(self, spec: Limiter) -> None:
        self.defaults: dict[str, Rate] = {
            kind: parse_rate(rate) for kind, rate in spec.defaults.items()
        }
        self.token_defaults: dict[str, int] = dict(spec.token_defaults.items())
        self._per_minute: dict[int, Rate] = {}

    def _rpm(self, rpm: int) -> Rate:
        rate = self._per_minute.get(rpm)
        if rate is None:
            rate = self._per_minute[rpm] = Rate(rpm, 60.0, rpm)
        return rate

    def tiers(self, identity: Identity | None, tokens: bool = False) -> list[AccountTier]:
        """The caller's own tiers; with `tokens` (an LLM route) its token tiers too."""
        if identity is None:
            return []
        out: list[AccountTier] = []
        own, account = identity.allowance, identity.user_allowance
        rate = self._rpm(own.rpm) if own.rpm else self.defaults.get(identity.kind)
        if rate is not None:
            key = f"rl:credential:{identity.credential_id}|{rate.period:g}"
            out.append(AccountTier(key, ("credential",), rate))
        if account.rpm:
            rate = self._rpm(account.rpm)
            out.append(AccountTier(f"rl:user:{identity.user_id}|60", ("user",), rate))
        if tokens:
            tpm = own.tpm or self.token_defaults.get(identity.kind)
            if tpm:
                key = f"tpm:credential:{identity.credential_id}"
                out.append(AccountTier(key, ("credential",), self._rpm(tpm), tokens=True))
            if account.tpm:
                key = f"tpm:user:{identity.user_id}"
                out.append(AccountTier(key, ("user",), self._rpm(account.tpm), tokens=True))
        return out
