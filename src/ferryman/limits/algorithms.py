"""The two limiter algorithms, as pure functions of a stored state and the time.

Each `check` returns the decision and the state to store if the request is admitted;
callers that check several tiers store nothing unless every tier admits. The Redis
backend runs the same arithmetic in Lua (`redis_script.lua`); the tests hold both to
the same answers.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from ferryman.limits.rates import Rate


class Decision(NamedTuple):
    allowed: bool
    limit: int
    remaining: int
    reset: float
    """Seconds until the limit is whole again."""
    retry_after: float
    """Seconds until a refused request would be admitted (0 when admitted)."""


def gcra(rate: Rate, tat: float, now: float, cost: int = 1) -> tuple[Decision, float]:
    """GCRA: `tat` is the theoretical arrival time stored for the key (0 when new).

    Returns the decision and the new TAT to store when admitted. A `cost` of 0 asks
    only whether anything is left (tokens a minute: checked before the request, paid
    with `charge` once the tokens are known)."""
    interval = rate.interval
    tolerance = rate.burst * interval
    start = max(tat, now)
    new_tat = start + cost * interval
    allowed = new_tat - now <= tolerance + 1e-9 if cost else start - now < tolerance - 1e-9
    if allowed:
        used = new_tat - now
        remaining = int((tolerance - used) / interval + 1e-9)
        return Decision(True, rate.burst, remaining, new_tat - now, 0.0), new_tat
    remaining = 0
    retry = new_tat - tolerance - now
    return Decision(False, rate.burst, remaining, start - now, max(retry, 0.0)), tat


def charge(rate: Rate, tat: float, now: float, cost: int) -> float:
    """The TAT after `cost` units used unconditionally (possibly beyond the burst: the
    debt holds later requests back until it is paid off)."""
    return max(tat, now) + cost * rate.interval


def sliding_window(
    rate: Rate, window: int, current: int, previous: int, now: float
) -> tuple[Decision, int, int, int]:
    """Weighted two-window counter. `window` is the stored window number, `current` and
    `previous` its count and the one before. Returns the decision and the (window,
    current, previous) to store when admitted."""
    period = rate.period
    this = math.floor(now / period)
    if this != window:
        previous = current if this == window + 1 else 0
        current = 0
    elapsed = now - this * period
    weight = 1.0 - elapsed / period
    estimate = previous * weight + current
    limit = rate.count
    reset = period - elapsed
    if estimate + 1 <= limit + 1e-9:
        remaining = max(0, math.floor(limit - estimate - 1 + 1e-9))
        return Decision(True, limit, remaining, reset, 0.0), this, current + 1, previous
    # Refused: when will the estimate have room for one more?
    if current + 1 > limit:
        # Not in this window; in the next, this window's count weighs in as previous.
        fraction = 1.0 - (limit - 1) / current if current else 0.0
        retry = reset + max(0.0, fraction) * period
    else:
        fraction = 1.0 - (limit - 1 - current) / previous
        retry = max(0.0, fraction * period - elapsed)
    return Decision(False, limit, 0, reset, retry), this, current, previous
