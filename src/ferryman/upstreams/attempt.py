"""One request's walk through the key pool: which keys it tried and why they failed.

Created per pooled request by the forwarder, it picks the next key, counts each
exchange against it, and, when no key is left, words the 503 the client gets.
"""

from __future__ import annotations

import math
from collections import Counter

from ferryman.errors import GatewayError, ServiceUnavailable
from ferryman.observability.context import RequestContext
from ferryman.observability.metrics import Metrics
from ferryman.upstreams.health import Failure, KeyState
from ferryman.upstreams.pool import KeyPool, PoolKey

_STATE_WORDS = {
    KeyState.COOLING_DOWN: "cooling down",
    KeyState.OUT_OF_CREDIT: "out of credit",
    KeyState.INVALID: "invalid",
}


class Attempt:
    __slots__ = ("ctx", "key", "metrics", "pool", "reasons", "shared", "tried")

    def __init__(
        self, pool: KeyPool, ctx: RequestContext, metrics: Metrics, shared: bool = True
    ) -> None:
        self.pool = pool
        self.ctx = ctx
        self.metrics = metrics
        self.shared = shared  # may this caller fall back on the shared keys?
        self.tried: list[PoolKey] = []
        self.reasons: list[str] = []
        self.key: PoolKey | None = None

    def next_key(self) -> PoolKey | None:
        """The next key to try (counted as in use), or None when none is left."""
        pool = self.pool
        if len(self.tried) >= pool.spec.max_attempts:
            return None
        key = pool.choose(self.ctx.consumer, self.tried, self.shared)
        if key is None:
            return None
        self.done()
        self.key = key
        self.tried.append(key)
        pool.started(key)
        ctx = self.ctx
        ctx.upstream_key = key.id
        ctx.attempts += 1
        self.metrics.key_request(pool.upstream, key.id, key.name)
        return key

    def more(self) -> bool:
        """Is there another key to fail over to?"""
        return len(self.tried) < self.pool.spec.max_attempts and self.pool.has_usable(
            self.ctx.consumer, self.tried, self.shared
        )

    def now(self) -> float:
        return self.pool.now()

    def succeeded(self) -> None:
        if self.key is not None:
            self.pool.succeeded(self.key)

    def failed(self, failure: Failure) -> None:
        key = self.key
        if key is None:
            return
        self.reasons.append(failure.reason)
        self.metrics.key_failure(self.pool.upstream, key.id, key.name, failure.reason)
        self.pool.failed(key, failure)

    def broke_off(self) -> None:
        """The upstream broke off a response already being relayed."""
        self.failed(Failure("connect", "the upstream broke off the response"))

    def done(self) -> None:
        if self.key is not None:
            self.pool.finished(self.key)
            self.key = None

    def exhausted(self, replayable: bool) -> GatewayError:
        """The 503 for a request no key can serve, saying why."""
        pool = self.pool
        name = pool.upstream
        if self.reasons and not replayable:
            return ServiceUnavailable(
                f"the upstream key for {name!r} failed ({self.reasons[-1]}) and the request "
                f"body, larger than {pool.spec.replay_limit} bytes, cannot be replayed on "
                "another key",
                code="no_upstream_key",
            )
        candidates = pool.candidates(self.ctx.consumer, self.shared)
        own = pool.owns_keys(self.ctx.consumer) and (
            pool.spec.user_keys == "exclusive" or not self.shared
        )
        whose = "your upstream keys" if own else "upstream keys"
        if not candidates:
            return ServiceUnavailable(
                f"no upstream key is configured for {name!r}", code="no_upstream_key"
            )
        now = pool.now()
        states: Counter[str] = Counter()
        soonest = math.inf
        for key in candidates:
            if not key.enabled:
                states["disabled"] += 1
            elif key.usable(now):
                states["usable"] += 1
            else:
                states[_STATE_WORDS.get(key.state, key.state.value)] += 1
                if key.state is KeyState.COOLING_DOWN:
                    soonest = min(soonest, key.until - now)
        if states["usable"] and self.reasons:
            return ServiceUnavailable(
                f"{len(self.tried)} upstream keys for {name!r} failed in turn "
                f"({', '.join(self.reasons)}); the limit is {pool.spec.max_attempts} "
                "attempts per request",
                code="no_upstream_key",
            )
        summary = ", ".join(f"{count} {word}" for word, count in sorted(states.items()))
        tried = ""
        if self.reasons:
            tried = f"; tried {len(self.tried)}: {', '.join(self.reasons)}"
        headers: list[tuple[bytes, bytes]] = []
        if soonest != math.inf:
            headers.append((b"retry-after", str(max(1, math.ceil(soonest))).encode()))
        return ServiceUnavailable(
            f"no healthy upstream key is left for {name!r} ({len(candidates)} {whose}: "
            f"{summary}{tried})",
            code="no_upstream_key",
            headers=headers,
        )
