"""The keys of one upstream in memory, and how one is chosen for a request.

Choosing is on the hot path: no I/O, no allocation beyond the chosen key. Only keys a
request may use are candidates (the caller's own keys, or the shared pool, per
`user_keys`; the shared pool only for callers it is lent to, per `shared_access`), and
only usable ones are chosen: enabled, and healthy or at the end of a
cool-down. Health changes are handed to a listener (`PoolEvents`) that persists,
counts, logs and broadcasts them off the request path.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ferryman.auth.identity import ALL
from ferryman.clock import Clock
from ferryman.config.accounts import ANY_POOL, pool_permission
from ferryman.config.upstreams import PoolCredential
from ferryman.upstreams.health import Failure, KeyState

if TYPE_CHECKING:
    from ferryman.auth.identity import Identity


class PoolKey:
    """One provider key as the proxy uses it; the secret only ever lives here."""

    __slots__ = (
        "current",
        "enabled",
        "failed",
        "failures",
        "header_value",
        "id",
        "in_flight",
        "last_error",
        "last_used",
        "name",
        "owner_id",
        "requests",
        "secret",
        "state",
        "trips",
        "unflushed_failures",
        "unflushed_requests",
        "until",
        "upstream",
        "weight",
    )

    def __init__(
        self,
        *,
        id: str,
        upstream: str,
        owner_id: str | None,
        name: str,
        secret: str,
        prefix: str,
        weight: int = 1,
        enabled: bool = True,
        state: KeyState = KeyState.HEALTHY,
        until: float = 0.0,
        last_error: str | None = None,
    ) -> None:
        self.id = id
        self.upstream = upstream
        self.owner_id = owner_id
        self.name = name
        self.secret = secret
        self.header_value = prefix + secret
        self.weight = max(1, weight)
        self.enabled = enabled
        self.state = state
        self.until = until
        self.last_error = last_error
        self.failures = 0  # consecutive breaker failures
        self.trips = 0  # times the breaker opened since the last success
        self.in_flight = 0
        self.requests = 0
        self.failed = 0
        self.unflushed_requests = 0
        self.unflushed_failures = 0
        self.last_used = 0.0
        self.current = 0  # smooth weighted round robin

    def usable(self, now: float) -> bool:
        if not self.enabled:
            return False
        state = self.state
        return state is KeyState.HEALTHY or (state is KeyState.COOLING_DOWN and self.until <= now)

    def adopt(self, other: PoolKey) -> None:
        """Take the configuration of a freshly loaded copy, keeping live health."""
        self.name = other.name
        self.secret = other.secret
        self.header_value = other.header_value
        self.weight = other.weight
        self.enabled = other.enabled
        self.owner_id = other.owner_id


@dataclass(frozen=True, slots=True)
class StateChange:
    key: PoolKey
    state: KeyState
    until: float
    error: str | None
    reason: str


Listener = Callable[[StateChange], None]

#: Asks the provider whether a key still works (True), after an ambiguous refusal.
Confirm = Callable[["PoolKey"], Awaitable[bool]]


class KeyPool:
    """The keys of one upstream and its selection strategy."""

    def __init__(
        self,
        upstream: str,
        spec: PoolCredential,
        clock: Clock,
        listener: Listener | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.upstream = upstream
        self.spec = spec
        self._clock = clock
        self._listener = listener
        self._random = rng or random.Random()  # noqa: S311 - spreading load, not secrets
        self.header_name = frozenset({spec.header.lower().encode("latin-1")})
        #: Set when the provider can be asked about a key (see `Forwarder`: a 403 is
        #: confirmed before the key is taken out, as providers also use it for requests
        #: they refuse, such as moderation).
        self.confirm: Confirm | None = None
        self._open_to_all = spec.shared_access == "everyone"
        #: Permissions that lend an account the shared keys (admins hold them all).
        self._grants = frozenset({ALL, ANY_POOL, pool_permission(upstream)})
        self.keys: dict[str, PoolKey] = {}
        self._shared: list[PoolKey] = []
        self._own: dict[str, list[PoolKey]] = {}
        self._cursor: dict[str | None, int] = {}
        self._choose = {
            "round_robin": self._round_robin,
            "least_used": self._least_used,
            "weighted": self._weighted,
            "random": self._random_choice,
        }[spec.strategy]

    def listen(self, listener: Listener) -> None:
        self._listener = listener

    # -- membership ----------------------------------------------------------------

    def install(self, fresh: Iterable[PoolKey]) -> None:
        """Replace the membership; keys already known keep their live health."""
        keys: dict[str, PoolKey] = {}
        for key in fresh:
            known = self.keys.get(key.id)
            if known is not None:
                known.adopt(key)
                key = known
            keys[key.id] = key
        self.keys = keys
        shared: list[PoolKey] = []
        own: dict[str, list[PoolKey]] = {}
        for key in keys.values():
            if key.owner_id is None:
                shared.append(key)
            else:
                own.setdefault(key.owner_id, []).append(key)
        self._shared, self._own = shared, own

    def owns_keys(self, user_id: str | None) -> bool:
        return user_id is not None and user_id in self._own

    def lends_to(self, identity: Identity | None) -> bool:
        """May this caller's requests spend the operator's shared keys?"""
        if self._open_to_all:
            return True
        if identity is None:
            return False
        return identity.is_admin or not self._grants.isdisjoint(identity.permissions)

    def serves_own(self, user_id: str | None) -> bool:
        """Does this caller bring keys of its own that its requests go out with?"""
        return self.spec.user_keys != "ignore" and self.owns_keys(user_id)

    def candidates(self, user_id: str | None, shared: bool = True) -> list[PoolKey]:
        """Every key this caller's requests may use, usable or not."""
        mode = self.spec.user_keys
        if user_id is not None and mode != "ignore":
            own = self._own.get(user_id)
            if own:
                if mode == "exclusive" or not shared:
                    return list(own)
                return [*own, *self._shared]
        return list(self._shared) if shared else []

    def has_usable(
        self, user_id: str | None, tried: Sequence[PoolKey], shared: bool = True
    ) -> bool:
        now = self._clock.time()
        return any(k.usable(now) and k not in tried for k in self.candidates(user_id, shared))

    def now(self) -> float:
        return self._clock.time()

    # -- selection -----------------------------------------------------------------

    def choose(
        self, user_id: str | None, tried: Sequence[PoolKey] = (), shared: bool = True
    ) -> PoolKey | None:
        """A usable key for this caller not yet tried for this request, or None.

        `shared` says whether the caller may fall back on the operator's shared keys."""
        now = self._clock.time()
        mode = self.spec.user_keys
        if user_id is not None and mode != "ignore":
            own = self._own.get(user_id)
            if own:
                key = self._choose(user_id, own, tried, now)
                if key is not None or mode == "exclusive":
                    return key
        return self._choose(None, self._shared, tried, now) if shared else None

    def _round_robin(
        self, owner: str | None, keys: list[PoolKey], tried: Sequence[PoolKey], now: float
    ) -> PoolKey | None:
        count = len(keys)
        start = self._cursor.get(owner, 0)
        for step in range(count):
            key = keys[(start + step) % count]
            if key.usable(now) and key not in tried:
                self._cursor[owner] = (start + step + 1) % count
                return key
        return None

    def _least_used(
        self, owner: str | None, keys: list[PoolKey], tried: Sequence[PoolKey], now: float
    ) -> PoolKey | None:
        best: PoolKey | None = None
        for key in keys:
            if (
                key.usable(now)
                and key not in tried
                and (
                    best is None or (key.in_flight, key.requests) < (best.in_flight, best.requests)
                )
            ):
                best = key
        return best

    def _weighted(
        self, owner: str | None, keys: list[PoolKey], tried: Sequence[PoolKey], now: float
    ) -> PoolKey | None:
        # Smooth weighted round robin (as nginx): even spread, exact proportions.
        best: PoolKey | None = None
        total = 0
        for key in keys:
            if key.usable(now) and key not in tried:
                key.current += key.weight
                total += key.weight
                if best is None or key.current > best.current:
                    best = key
        if best is not None:
            best.current -= total
        return best

    def _random_choice(
        self, owner: str | None, keys: list[PoolKey], tried: Sequence[PoolKey], now: float
    ) -> PoolKey | None:
        usable = [key for key in keys if key.usable(now) and key not in tried]
        return self._random.choice(usable) if usable else None

    # -- outcomes ------------------------------------------------------------------

    def started(self, key: PoolKey) -> None:
        key.in_flight += 1
        key.requests += 1
        key.unflushed_requests += 1
        key.last_used = self._clock.time()

    def finished(self, key: PoolKey) -> None:
        key.in_flight -= 1

    def succeeded(self, key: PoolKey) -> None:
        """The key did its job: its breaker closes."""
        key.failures = 0
        key.trips = 0
        if key.state is KeyState.COOLING_DOWN:
            self._set(key, KeyState.HEALTHY, 0.0, None, "recovered")

    def failed(self, key: PoolKey, failure: Failure) -> None:
        key.failed += 1
        key.unflushed_failures += 1
        now = self._clock.time()
        spec = self.spec
        if failure.reason == "invalid":
            self._set(key, KeyState.INVALID, 0.0, failure.message, failure.reason)
        elif failure.reason == "out_of_credit":
            self._set(key, KeyState.OUT_OF_CREDIT, 0.0, failure.message, failure.reason)
        elif failure.reason == "rate_limited":
            wait = failure.retry_after if failure.retry_after is not None else spec.cooldown
            self._set(key, KeyState.COOLING_DOWN, now + wait, failure.message, failure.reason)
        else:
            key.failures += 1
            half_open = key.state is KeyState.COOLING_DOWN
            if half_open or key.failures >= spec.failure_threshold:
                wait = min(spec.backoff * 2**key.trips, spec.max_backoff)
                key.trips += 1
                key.failures = 0
                self._set(key, KeyState.COOLING_DOWN, now + wait, failure.message, failure.reason)

    def restore(self, key: PoolKey, reason: str) -> None:
        """A probe or an operator says the key works again."""
        key.failures = 0
        key.trips = 0
        if key.state is not KeyState.HEALTHY:
            self._set(key, KeyState.HEALTHY, 0.0, None, reason)

    def mark(self, key: PoolKey, state: KeyState, until: float, error: str, reason: str) -> None:
        """A probe found the key in this state."""
        if state is KeyState.HEALTHY:
            self.restore(key, reason)
        elif key.state is not state or key.until != until:
            self._set(key, state, until, error, reason)

    def apply(self, key: PoolKey, state: KeyState, until: float, error: str | None) -> None:
        """A state decided elsewhere (another instance): taken as is, not re-announced."""
        key.state = state
        key.until = until
        if error is not None:
            key.last_error = error

    def _set(
        self, key: PoolKey, state: KeyState, until: float, error: str | None, reason: str
    ) -> None:
        key.state = state
        key.until = until
        if error is not None:
            key.last_error = error
        if self._listener is not None:
            self._listener(StateChange(key, state, until, error, reason))
