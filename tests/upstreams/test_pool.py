"""The key pool in memory: strategies, health transitions, whose keys a caller gets."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

from ferryman.clock import FakeClock
from ferryman.config.upstreams import PoolCredential
from ferryman.upstreams.health import Failure, KeyState, parse_retry_after, verdict
from ferryman.upstreams.pool import KeyPool, PoolKey, StateChange


def make_pool(**spec: Any) -> tuple[KeyPool, FakeClock, list[StateChange]]:
    clock = FakeClock()
    changes: list[StateChange] = []
    pool = KeyPool("up", PoolCredential(**spec), clock, changes.append, random.Random(7))
    return pool, clock, changes


def key(name: str, owner: str | None = None, weight: int = 1, **extra: Any) -> PoolKey:
    return PoolKey(
        id=f"id-{name}",
        upstream="up",
        owner_id=owner,
        name=name,
        secret=f"secret-{name}",
        prefix="Bearer ",
        weight=weight,
        **extra,
    )


def picks(pool: KeyPool, n: int, user: str | None = None) -> list[str]:
    out = []
    for _ in range(n):
        chosen = pool.choose(user)
        out.append(chosen.name if chosen else "-")
    return out


def test_round_robin_cycles_through_usable_keys_in_order() -> None:
    pool, _, _ = make_pool()
    pool.install([key("a"), key("b"), key("c")])
    assert picks(pool, 6) == ["a", "b", "c", "a", "b", "c"]


def test_weighted_spreads_picks_in_exact_proportion_and_evenly() -> None:
    pool, _, _ = make_pool(strategy="weighted")
    pool.install([key("a", weight=5), key("b", weight=1), key("c", weight=1)])
    first = picks(pool, 7)
    assert Counter(first) == {"a": 5, "b": 1, "c": 1}
    assert "a,a,a" not in ",".join(first)  # smooth: never all of a's share in one run
    assert Counter(picks(pool, 700)) == {"a": 500, "b": 100, "c": 100}


def test_least_used_prefers_the_key_with_fewest_requests_in_flight() -> None:
    pool, _, _ = make_pool(strategy="least_used")
    a, b = key("a"), key("b")
    pool.install([a, b])
    pool.started(a)
    assert pool.choose(None) is b
    pool.started(b)
    pool.started(b)
    assert pool.choose(None) is a
    pool.finished(b)
    pool.finished(b)
    assert pool.choose(None) is b  # equal in flight: fewer requests in all


def test_random_only_picks_usable_keys() -> None:
    pool, _, _ = make_pool(strategy="random")
    a, b, c = key("a"), key("b"), key("c")
    pool.install([a, b, c])
    pool.failed(b, Failure("invalid", "401"))
    assert set(picks(pool, 200)) == {"a", "c"}


def test_a_tried_key_is_skipped_for_the_same_request() -> None:
    pool, _, _ = make_pool()
    a, b = key("a"), key("b")
    pool.install([a, b])
    assert pool.choose(None, [a]) is b
    assert pool.choose(None, [a, b]) is None


def test_invalid_and_out_of_credit_keys_stay_out_until_restored() -> None:
    pool, clock, changes = make_pool()
    a, b, c = key("a"), key("b"), key("c")
    pool.install([a, b, c])
    pool.failed(a, Failure("invalid", "refused (401)"))
    pool.failed(b, Failure("out_of_credit", "402"))
    clock.advance(days=30)
    assert picks(pool, 3) == ["c", "c", "c"]
    assert [(ch.key.name, ch.state) for ch in changes] == [
        ("a", KeyState.INVALID),
        ("b", KeyState.OUT_OF_CREDIT),
    ]
    pool.restore(a, "probe")
    assert a.state is KeyState.HEALTHY and "a" in picks(pool, 3)


def test_a_rate_limited_key_rests_for_its_retry_after_then_returns() -> None:
    pool, clock, _ = make_pool()
    a, b = key("a"), key("b")
    pool.install([a, b])
    pool.failed(a, Failure("rate_limited", "429", retry_after=30))
    clock.advance(seconds=29)
    assert picks(pool, 4) == ["b"] * 4
    clock.advance(seconds=2)
    assert "a" in picks(pool, 2)
    pool.succeeded(a)
    assert a.state is KeyState.HEALTHY


def test_the_breaker_opens_after_the_threshold_and_backs_off_exponentially() -> None:
    pool, clock, changes = make_pool(failure_threshold=3, backoff=5, max_backoff=12)
    a, b = key("a"), key("b")
    pool.install([a, b])
    for _ in range(2):
        pool.failed(a, Failure("server_error", "500"))
    assert a.state is KeyState.HEALTHY  # below the threshold
    pool.failed(a, Failure("timeout", "slow"))
    assert a.state is KeyState.COOLING_DOWN and a.until == clock.time() + 5
    clock.advance(seconds=5)
    assert a.usable(clock.time())  # half-open: tried again
    pool.failed(a, Failure("connect", "reset"))  # one failure half-open re-opens it
    assert a.until == clock.time() + 10
    clock.advance(seconds=10)
    pool.failed(a, Failure("server_error", "502"))
    assert a.until == clock.time() + 12  # capped
    clock.advance(seconds=12)
    pool.succeeded(a)
    assert a.state is KeyState.HEALTHY and a.trips == 0
    assert [ch.reason for ch in changes] == [
        "timeout",
        "connect",
        "server_error",
        "recovered",
    ]


def test_a_success_resets_the_count_of_consecutive_failures() -> None:
    pool, _, _ = make_pool(failure_threshold=2)
    a = key("a")
    pool.install([a])
    pool.failed(a, Failure("server_error", "500"))
    pool.succeeded(a)
    pool.failed(a, Failure("server_error", "500"))
    assert a.state is KeyState.HEALTHY


def test_exclusive_user_keys_serve_only_their_owner() -> None:
    pool, _, _ = make_pool(user_keys="exclusive")
    shared, alice_key = key("shared"), key("alice", owner="alice")
    pool.install([shared, alice_key])
    assert set(picks(pool, 4, "alice")) == {"alice"}
    assert set(picks(pool, 4, "bob")) == {"shared"}
    assert set(picks(pool, 4)) == {"shared"}
    pool.failed(alice_key, Failure("invalid", "401"))
    assert pool.choose("alice") is None  # never the operator's pool


def test_prefer_falls_back_to_the_shared_pool_and_ignore_never_uses_own_keys() -> None:
    pool, _, _ = make_pool(user_keys="prefer")
    shared, alice_key = key("shared"), key("alice", owner="alice")
    pool.install([shared, alice_key])
    assert pool.choose("alice") is alice_key
    pool.failed(alice_key, Failure("out_of_credit", "402"))
    assert pool.choose("alice") is shared
    ignoring, _, _ = make_pool(user_keys="ignore")
    ignoring.install([key("shared"), key("alice", owner="alice")])
    assert set(picks(ignoring, 4, "alice")) == {"shared"}


def test_reinstalling_keeps_live_health_and_takes_new_configuration() -> None:
    pool, _, _ = make_pool()
    a = key("a")
    pool.install([a])
    pool.failed(a, Failure("invalid", "401"))
    renamed = key("a")
    renamed.name = "renamed"
    pool.install([renamed, key("b")])
    live = pool.keys["id-a"]
    assert live is a and live.name == "renamed" and live.state is KeyState.INVALID
    assert set(pool.keys) == {"id-a", "id-b"}
    pool.install([key("b")])
    assert set(pool.keys) == {"id-b"}


def test_a_disabled_key_is_never_chosen() -> None:
    pool, _, _ = make_pool()
    pool.install([key("a", enabled=False), key("b")])
    assert set(picks(pool, 4)) == {"b"}


def test_verdicts_for_upstream_statuses() -> None:
    spec = PoolCredential(cooldown=60, max_cooldown=600)
    now = 1_000_000.0
    assert verdict(spec, 200, None, now) is None
    assert verdict(spec, 404, None, now) is None  # the request's fault, not the key's
    assert verdict(spec, 400, None, now) is None
    assert verdict(spec, 401, None, now) == Failure("invalid", "the upstream refused the key (401)")
    assert verdict(spec, 403, None, now).reason == "invalid"  # type: ignore[union-attr]
    assert verdict(spec, 402, None, now).reason == "out_of_credit"  # type: ignore[union-attr]
    limited = verdict(spec, 429, "17", now)
    assert limited is not None and limited.retry_after == 17
    assert verdict(spec, 429, None, now).retry_after == 60  # type: ignore[union-attr]
    assert verdict(spec, 429, "99999", now).retry_after == 600  # type: ignore[union-attr]
    assert verdict(spec, 503, None, now).reason == "server_error"  # type: ignore[union-attr]
    custom = PoolCredential(invalid_statuses=(401,))
    assert verdict(custom, 403, None, now) is None


def test_retry_after_as_seconds_or_http_date() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("120", now) == 120
    assert parse_retry_after("Tue, 14 Nov 2023 22:15:00 GMT", now) == 100
    assert parse_retry_after("Tue, 14 Nov 2000 22:15:20 GMT", now) == 0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None
