"""What an upstream's answer says about the key that was used, and what follows.

Passive health: every exchange made with a pool key ends in `verdict()`, which turns
the upstream's status (or the exception) into a `Failure`, or None when the key did its
job. The pool applies a failure to the key's state:

    invalid_statuses (401, 403)  → invalid        until a probe or an operator restores it
    402                          → out_of_credit  until a probe sees credit again
    429                          → cooling_down   until Retry-After (or `cooldown`)
    5xx, timeout, reset          → counted; `failure_threshold` in a row opens the key's
                                   breaker: cooling_down for `backoff`, doubled each time
                                   it opens again (up to `max_backoff`)

A cooled-down key whose time has passed is tried again ("half-open"): a success closes
its breaker, a failure opens it again at once with the doubled backoff.
"""

from __future__ import annotations

import email.utils
import enum
from dataclasses import dataclass

from ferryman.config.upstreams import PoolCredential
from ferryman.errors import UpstreamError, UpstreamTimeout


class KeyState(enum.StrEnum):
    HEALTHY = "healthy"
    COOLING_DOWN = "cooling_down"
    OUT_OF_CREDIT = "out_of_credit"
    INVALID = "invalid"


STATES = tuple(KeyState)

#: Statuses retried on the next key that say nothing bad about the key itself.
SERVER_ERRORS = frozenset({500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class Failure:
    """Why an exchange counts against its key."""

    reason: str
    """`invalid`, `out_of_credit`, `rate_limited`, `server_error`, `timeout`, `connect`."""
    message: str
    retry_after: float | None = None

    @property
    def breaker(self) -> bool:
        """Counted towards the key's circuit breaker (rather than a state of its own)."""
        return self.reason in ("server_error", "timeout", "connect")


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds from now that a `Retry-After` (delta-seconds or HTTP-date) asks for."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def verdict(
    spec: PoolCredential, status: int, retry_after: str | None, now: float
) -> Failure | None:
    """The failure an upstream status means for the key, or None."""
    if status < 400:
        return None
    if status in spec.invalid_statuses:
        return Failure("invalid", f"the upstream refused the key ({status})")
    if status == 402:
        return Failure("out_of_credit", "the upstream says the key is out of credit (402)")
    if status == 429:
        wait = parse_retry_after(retry_after, now)
        if wait is None:
            wait = spec.cooldown
        wait = min(wait, spec.max_cooldown)
        return Failure("rate_limited", "the upstream rate-limited the key (429)", wait)
    if status in SERVER_ERRORS:
        return Failure("server_error", f"the upstream failed ({status})")
    return None


def failure_of(error: UpstreamError) -> Failure:
    """The failure a transport error means for the key that was used."""
    if isinstance(error, UpstreamTimeout):
        return Failure("timeout", error.message)
    return Failure("connect", error.message)
