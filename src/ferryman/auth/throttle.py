"""Failed-login throttling: N failures in a sliding window per key (IP, account)."""

from __future__ import annotations

import contextlib
import math
from collections import deque

from ferryman.clock import Clock
from ferryman.errors import TooManyRequests


def refusal(wait: float) -> TooManyRequests:
    """The answer to an attempt made `wait` seconds too early."""
    return TooManyRequests(
        "too many failed logins; try again later",
        retry_after=max(1, math.ceil(wait)),
        code="login_throttled",
    )


class FailureThrottle:
    """Refuses further attempts for a key once it has `limit` failures in `window` s.

    In-process; `shared_throttle.LoginThrottle` shares it over Redis in a fleet.
    """

    def __init__(self, clock: Clock, limit: int = 5, window: float = 60.0) -> None:
        self._clock = clock
        self.limit = limit
        self.window = window
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str) -> deque[float]:
        now = self._clock.monotonic()
        failures = self._failures.get(key)
        if failures is None:
            return deque()
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[key]
        return failures

    def check(self, *keys: str) -> None:
        """TooManyRequests (with Retry-After) if any key is over the limit."""
        wait = 0.0
        now = self._clock.monotonic()
        for key in keys:
            failures = self._recent(key)
            if len(failures) >= self.limit:
                wait = max(wait, failures[0] + self.window - now)
        if wait > 0:
            raise refusal(wait)

    def reserve(self, *keys: str) -> float:
        """Check the keys, then count this attempt as a failure before it is verified.

        Counting first is what makes the limit hold for attempts made in parallel: the
        sixth of six concurrent guesses is refused before its password is checked.
        Returns a token for `succeeded`, which takes the failure back.
        """
        self.check(*keys)
        now = self._clock.monotonic()
        for key in keys:
            self._failures.setdefault(key, deque()).append(now)
        if len(self._failures) > 100_000:  # bound memory under a spray of names
            for key in list(self._failures)[:10_000]:
                self._recent(key)
        return now

    def succeeded(self, token: float, *, clear: tuple[str, ...], undo: tuple[str, ...]) -> None:
        """The attempt was right: forget every failure of the `clear` keys, and take
        just this attempt back from the `undo` keys."""
        for key in clear:
            self._failures.pop(key, None)
        for key in undo:
            failures = self._failures.get(key)
            if failures is not None:
                with contextlib.suppress(ValueError):
                    failures.remove(token)
