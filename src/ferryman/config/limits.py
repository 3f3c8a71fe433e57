"""Limits: rate tiers and concurrency caps of a route, the limiter's backend and the
defaults per credential kind, and budgets."""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from ferryman.config.base import Model
from ferryman.limits.allowance import Budget, check_period
from ferryman.limits.rates import Rate, parse_rate

LimitKey = Literal["ip", "user", "credential", "route", "session", "origin"]
Algorithm = Literal["gcra", "sliding_window"]


class LimitTier(Model):
    """One rate limit of a route: `{rate: "60/minute", by: [credential]}`."""

    rate: str
    """`N/unit` (second, minute, hour, day; `N/M units` too), optionally `burst B`."""
    by: tuple[LimitKey, ...] | None = None
    """What the count is kept per; by default the caller: its credential on routes
    that require one, its IP address on open routes."""
    algorithm: Algorithm = "gcra"
    """`gcra` (token bucket: the burst at once, then the sustained rate) or
    `sliding_window` (at most N in any window of the period)."""

    @field_validator("rate")
    @classmethod
    def _check_rate(cls, value: str) -> str:
        parse_rate(value)
        return value

    @field_validator("by")
    @classmethod
    def _check_by(cls, value: tuple[LimitKey, ...] | None) -> tuple[LimitKey, ...] | None:
        if value is not None and not value:
            raise ValueError("must name at least one of ip, user, credential, route, ...")
        return None if value is None else tuple(dict.fromkeys(value))

    @property
    def parsed(self) -> Rate:
        return parse_rate(self.rate)


class Parallel(Model):
    """At most `limit` requests in flight at once, per `by` (default: the caller)."""

    limit: int = Field(ge=1)
    by: tuple[LimitKey, ...] | None = None


class RedisBreaker(Model):
    """When to stop waiting on Redis, and when to try it again (`store.breaker`).

    It guards every call the request path makes to Redis (the limiter's checks and
    charges, the fleet's broadcasts), not the readiness check."""

    failures: int = Field(default=3, ge=1, le=1000)
    """Consecutive errors or timeouts that open it: Redis is not asked meanwhile (the
    limiter falls back per `on_error` at once)."""
    cooloff: float = Field(default=5.0, ge=0.1, le=3600)
    """Seconds it stays open before one call probes Redis; doubled each time the probe
    fails."""
    max_cooloff: float = Field(default=60.0, ge=0.1, le=3600)
    """The longest the doubled cool-off grows."""

    @model_validator(mode="after")
    def _check_order(self) -> RedisBreaker:
        if self.max_cooloff < self.cooloff:
            raise ValueError(
                f"max_cooloff ({self.max_cooloff:g}) must be at least cooloff ({self.cooloff:g})"
            )
        return self


class Limiter(Model):
    """Where rate limits are counted."""

    backend: Literal["auto", "memory", "redis"] = "auto"
    """`redis` (shared by every instance; one atomic script call per request checks
    every tier; needs FERRYMAN_REDIS_URL), `memory` (this process only) or `auto`: Redis
    when FERRYMAN_REDIS_URL is set, else memory, so a fleet shares its limits without
    saying so twice."""
    on_error: Literal["fail_open", "fail_closed"] = "fail_open"
    """Redis unreachable or slower than `timeout`: count in this process instead
    (`fail_open`, logged once a minute) or refuse with 503 (`fail_closed`)."""
    timeout: float = Field(default=0.05, gt=0, le=5)
    """Seconds to wait for Redis."""
    breaker: RedisBreaker = RedisBreaker()
    """After `failures` errors or timeouts in a row, Redis is not asked for `cooloff`
    seconds (the fallback applies at once), then one request probes it."""
    defaults: dict[Literal["api_key", "access_pass", "jwt", "session"], str] = Field(
        default_factory=dict
    )
    """A rate every credential of a kind gets across all routes, e.g.
    `{api_key: "600/minute"}`; a key's own `rpm` (management API) replaces it."""
    token_defaults: dict[
        Literal["api_key", "access_pass", "jwt", "session"], Annotated[int, Field(ge=1)]
    ] = Field(default_factory=dict)
    """Tokens a minute every credential of a kind may use on LLM routes (`meter: llm`),
    e.g. `{api_key: 100000}`; a key's own `tpm` replaces it."""

    @field_validator("defaults")
    @classmethod
    def _check_defaults(cls, value: dict[str, str]) -> dict[str, str]:
        for rate in value.values():
            parse_rate(rate)
        return value


class BudgetRule(Model):
    """A spending limit: `{amount: 5, period: day}`."""

    amount: Annotated[float, Field(gt=0)]
    """In the price table's currency."""
    period: str
    """`day`, `week` (from Monday), `month` (calendar) or `N days` (rolling); UTC days."""

    @field_validator("period")
    @classmethod
    def _check_period(cls, value: str) -> str:
        return check_period(value)

    @property
    def budget(self) -> Budget:
        return Budget(self.amount, self.period)


class Budgets(Model):
    """Spending limits on LLM routes (`meter: llm`), summed from metered cost."""

    defaults: dict[Literal["api_key", "access_pass", "jwt", "session"], BudgetRule] = Field(
        default_factory=dict
    )
    """A budget every credential of a kind gets, e.g. `{api_key: {amount: 5, period:
    day}}`; a key's own budget (management API) replaces it."""
    alerts: tuple[Annotated[int, Field(ge=1, le=1000)], ...] = (50, 80, 100)
    """Percentages of a budget at which an alert goes out (once per budget and period)."""
    webhook: str | None = None
    """An http(s) URL that receives each alert as a JSON POST."""
    refresh: Annotated[float, Field(ge=0.5, le=3600)] = 10.0
    """Seconds between re-reading spend from the database (what other instances spent)."""

    @field_validator("alerts")
    @classmethod
    def _sort_alerts(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(sorted(set(value)))

    @field_validator("webhook")
    @classmethod
    def _check_webhook(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"{value!r} is not an http(s) URL")
        return value
