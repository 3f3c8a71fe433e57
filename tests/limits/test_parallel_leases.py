"""`max_parallel` slots in a real Redis: leases expire, renewals keep them, a full key
refuses, and a Redis that fails follows `on_error`."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from ferryman.clock import FakeClock
from ferryman.config.limits import Limiter, Parallel
from ferryman.config.routes import Route
from ferryman.errors import ServiceUnavailable, TooManyRequests
from ferryman.limits.backends import RedisBackend
from ferryman.limits.limiter import Caller, Limits
from ferryman.limits.parallel import ParallelCap
from ferryman.observability.metrics import LocalMetrics


@pytest.fixture
async def backend(redis_url: str) -> AsyncIterator[RedisBackend]:
    redis = Redis.from_url(redis_url, socket_connect_timeout=0.2)
    yield RedisBackend(redis, f"t{uuid.uuid4().hex[:10]}:")
    await redis.aclose()


async def test_a_lease_runs_out_unless_renewed(backend: RedisBackend) -> None:
    assert await backend.acquire("k", 1, 0.3, "a")
    assert not await backend.acquire("k", 1, 0.3, "b")  # full
    await asyncio.sleep(0.4)
    assert await backend.acquire("k", 1, 0.3, "c")  # a's lease ran out (its instance died)
    for _ in range(3):
        await asyncio.sleep(0.15)
        await backend.renew({"c": "k"}, 0.3)  # c's instance is alive
    assert not await backend.acquire("k", 1, 0.3, "d")
    await backend.release("k", "c")
    assert await backend.acquire("k", 1, 0.3, "d")


async def test_a_renewal_does_not_bring_back_a_released_slot(backend: RedisBackend) -> None:
    assert await backend.acquire("k", 1, 5, "a")
    await backend.release("k", "a")
    await backend.renew({"a": "k"}, 5)  # raced the release
    assert await backend.acquire("k", 1, 5, "b")


def cap(limits: Limits, limit: int = 2) -> ParallelCap:
    route = Route.model_validate({"path": "/", "upstream": "up"})
    return ParallelCap(Parallel(limit=limit, by=("route",)), route, "main", limits)


async def test_two_instances_share_the_cap_and_hand_slots_back(backend: RedisBackend) -> None:
    clock, metrics = FakeClock(), LocalMetrics()
    one = Limits(Limiter(), clock, metrics, redis=backend)
    two = Limits(Limiter(), clock, metrics, redis=backend)
    caps, caller = [cap(one), cap(two)], Caller(ip="1.2.3.4", route="main")
    first = await caps[0].acquire(caller)
    second = await caps[1].acquire(caller)
    with pytest.raises(TooManyRequests) as refused:
        await caps[0].acquire(caller)
    assert refused.value.code == "too_many_in_flight"
    assert set(one.leases) == {first.member} and set(two.leases) == {second.member}
    await one.renew()
    await caps[0].release(first)
    assert one.leases == {}
    third = await caps[0].acquire(caller)
    assert third.member is not None and caps[0].in_flight == {}  # counted in Redis


async def test_a_failing_redis_follows_on_error(redis_url: str) -> None:
    gone = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    clock, metrics = FakeClock(), LocalMetrics()
    caller = Caller(ip="1.2.3.4", route="main")
    opened = Limits(Limiter(on_error="fail_open"), clock, metrics, redis=RedisBackend(gone, ""))
    capped = cap(opened, limit=1)
    slot = await capped.acquire(caller)  # counted in this process instead
    assert slot.member is None and capped.in_flight == {"main": 1}
    with pytest.raises(TooManyRequests):
        await capped.acquire(caller)
    await capped.release(slot)
    assert capped.in_flight == {} and opened.fallbacks == 2
    closed = Limits(Limiter(on_error="fail_closed"), clock, metrics, redis=RedisBackend(gone, ""))
    with pytest.raises(ServiceUnavailable) as refused:
        await cap(closed).acquire(caller)
    assert refused.value.code == "limiter_unavailable"
    await gone.aclose()
