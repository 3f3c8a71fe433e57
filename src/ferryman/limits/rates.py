"""Rate limits as written in the gateway file: `"60/minute"`, `"10/second burst 20"`.

A rate is a count per period. GCRA (a token bucket without a timer) admits `burst`
requests at once (by default the count) and then one every `period / count`; the
sliding window (a weighted two-window counter) admits `count` requests in any window of
`period`, estimating the previous window's share by its overlap.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PERIODS = {
    "second": 1.0,
    "minute": 60.0,
    "hour": 3600.0,
    "day": 86_400.0,
}

_RATE = re.compile(
    r"^\s*(?P<count>\d+)\s*/\s*(?:(?P<n>\d+)\s*)?(?P<unit>second|minute|hour|day)s?"
    r"(?:\s+burst\s+(?P<burst>\d+))?\s*$"
)


@dataclass(frozen=True, slots=True)
class Rate:
    count: int
    period: float
    burst: int

    @property
    def interval(self) -> float:
        """Seconds between two requests at the sustained rate (GCRA's emission interval)."""
        return self.period / self.count

    @property
    def text(self) -> str:
        window = int(self.period) if self.period == int(self.period) else self.period
        burst = f" burst {self.burst}" if self.burst != self.count else ""
        return f"{self.count}/{window}s{burst}"


def parse_rate(text: str) -> Rate:
    """`N/unit`, `N/M units`, optionally `burst B`; ValueError saying what is expected."""
    match = _RATE.match(text.lower())
    if match is None:
        raise ValueError(
            f"{text!r} is not a rate like '60/minute', '1000/hour', '5/10 seconds' or "
            "'10/second burst 20'"
        )
    count = int(match["count"])
    if count < 1:
        raise ValueError(f"{text!r}: the count must be at least 1")
    period = PERIODS[match["unit"]] * int(match["n"] or 1)
    if period <= 0:
        raise ValueError(f"{text!r}: the period must be positive")
    burst = int(match["burst"]) if match["burst"] else count
    if burst < 1:
        raise ValueError(f"{text!r}: the burst must be at least 1")
    return Rate(count=count, period=period, burst=burst)
