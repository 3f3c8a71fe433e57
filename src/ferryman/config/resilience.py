"""How the gateway copes with an upstream that fails: a circuit breaker and retries.

Both are per upstream. The breaker stops sending to an upstream that keeps failing
(callers get 503 at once instead of each waiting out a timeout); retries try a failed
request again, only before anything was relayed and only when that is safe.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ferryman.config.base import Model

#: Methods that may be sent twice without changing the outcome (RFC 9110, 9.2.2).
IDEMPOTENT = ("GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE")


class Breaker(Model):
    """Open after `failures` failed calls in a row, or when at least `min_calls` calls
    in the last `window` seconds failed at `failure_rate` or more. A failure is a 5xx
    answer, a timeout or a connection error; a 4xx never counts (it is the caller's).

    Open, calls are refused at once with 503 and `Retry-After`. After `open_for`
    seconds one call (the probe) goes through while every other is still refused: its
    success closes the breaker, its failure opens it again for `growth` times as long,
    up to `max_open_for`. With Redis, every instance of a fleet shares the state and
    the single probe; each counts its own calls."""

    failures: int = Field(default=5, ge=1, le=10_000)
    failure_rate: float | None = Field(default=0.5, gt=0, le=1)
    """Share of failed calls in the window that opens it; null counts only failures in
    a row."""
    window: float = Field(default=60.0, gt=0, le=86_400)
    min_calls: int = Field(default=20, ge=1)
    open_for: float = Field(default=5.0, gt=0)
    """Seconds the first opening lasts."""
    growth: float = Field(default=2.0, ge=1, le=10)
    max_open_for: float = Field(default=300.0, gt=0)
    probe_timeout: float = Field(default=60.0, gt=0)
    """Longest a probe holds the half-open slot (a probe whose answer never comes must
    not keep the upstream shut)."""

    @model_validator(mode="after")
    def _cap_above_start(self) -> Breaker:
        if self.max_open_for < self.open_for:
            raise ValueError("max_open_for must be at least open_for")
        return self

    def open_time(self, opens: int) -> float:
        """Seconds the `opens`-th opening in a row lasts (1 for the first)."""
        return float(min(self.open_for * self.growth ** max(opens - 1, 0), self.max_open_for))


class Retries(Model):
    """Try a failed request again: only before any byte of the answer was relayed, only
    for a body the gateway still holds, and only for an idempotent method or a route
    marked `retry: true`. Waits `backoff` seconds before the first retry, doubled (with
    jitter) for each next one, up to `max_backoff`."""

    attempts: int = Field(default=0, ge=0, le=10)
    """Retries after the first try (0: none)."""
    backoff: float = Field(default=0.2, ge=0)
    max_backoff: float = Field(default=2.0, ge=0)
    when: tuple[Literal["connect", "timeout", 500, 502, 503, 504], ...] = (
        "connect",
        "timeout",
        502,
        503,
        504,
    )
    """What is retried: connection errors, timeouts, and these statuses."""
