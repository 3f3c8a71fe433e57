"""The failed-login throttle shared over a real Redis by several "instances" (one
LoginThrottle each, as each process has), and its fallback when Redis is away."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from ferryman.auth.shared_throttle import LoginThrottle
from ferryman.auth.throttle import FailureThrottle
from ferryman.clock import FakeClock
from ferryman.config.limits import RedisBreaker
from ferryman.errors import TooManyRequests
from ferryman.store.breaker import Breaker
from tests.conftest import LogReader

LIMIT, WINDOW = 5, 60.0


class Instances:
    """`make()`: one more instance's throttle on the same Redis and prefix, all on one
    clock (`make.clock`)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.prefix = f"t{uuid.uuid4().hex[:10]}:"
        self.clock = FakeClock()
        self.clients: list[Redis] = []

    def __call__(self, url: str | None = None) -> LoginThrottle:
        redis = Redis.from_url(url or self.url, socket_connect_timeout=0.2)
        self.clients.append(redis)
        local = FailureThrottle(self.clock, limit=LIMIT, window=WINDOW)
        breaker = Breaker(RedisBreaker(), self.clock)
        return LoginThrottle(local, self.clock, redis, self.prefix, breaker, timeout=0.5)


@pytest.fixture
async def make(redis_url: str) -> AsyncIterator[Instances]:
    instances = Instances(redis_url)
    yield instances
    for client in instances.clients:
        await client.aclose()


async def refused(throttle: LoginThrottle, *keys: str) -> TooManyRequests:
    with pytest.raises(TooManyRequests) as caught:
        await throttle.reserve(*keys)
    return caught.value


async def test_failures_on_two_instances_add_up(make: Instances) -> None:
    one, two = make(), make()
    for throttle in (one, one, one, two, two):
        await throttle.reserve("ip:1.2.3.4", "account:ann")
    for throttle in (one, two):
        answer = await refused(throttle, "ip:5.6.7.8", "account:ann")  # another address
        assert answer.code == "login_throttled"
        assert answer.retry_after == 60
        with pytest.raises(TooManyRequests):
            await throttle.check("ip:1.2.3.4")
    # Nothing was counted in either process: it all went to Redis.
    assert one.local._failures == {} and two.local._failures == {}


async def test_concurrent_attempts_across_instances_get_exactly_the_limit(make: Instances) -> None:
    throttles = [make() for _ in range(3)]

    async def attempt(i: int) -> bool:
        try:
            await throttles[i % 3].reserve(f"ip:10.0.0.{i}", "account:bob")
        except TooManyRequests:
            return False
        return True

    outcomes = await asyncio.gather(*(attempt(i) for i in range(30)))
    assert outcomes.count(True) == LIMIT


async def test_a_success_clears_the_account_and_takes_back_only_its_own_attempt(
    make: Instances,
) -> None:
    one, two = make(), make()
    for _ in range(4):
        await one.reserve("ip:1.1.1.1", "account:cat")
    attempt = await two.reserve("ip:1.1.1.1", "account:cat")  # the fifth, then right
    await two.succeeded(attempt, clear=("account:cat",), undo=("ip:1.1.1.1",))
    # The account starts afresh; the address keeps its four failures.
    for _ in range(LIMIT):
        await one.reserve("ip:2.2.2.2", "account:cat")
    await one.reserve("ip:1.1.1.1")
    assert (await refused(two, "ip:1.1.1.1")).code == "login_throttled"


async def test_the_window_passes_for_the_whole_fleet(make: Instances) -> None:
    one, two = make(), make()
    for _ in range(LIMIT):
        await one.reserve("account:dan")
    await refused(two, "account:dan")
    make.clock.advance(seconds=30)
    assert (await refused(two, "account:dan")).retry_after == 30
    make.clock.advance(seconds=30)
    await two.reserve("account:dan")


async def test_without_redis_each_instance_counts_for_itself_and_says_so_once(
    make: Instances, logs: LogReader
) -> None:
    gone = make("redis://127.0.0.1:1/0")  # nothing listens there
    for _ in range(LIMIT):
        await gone.reserve("ip:3.3.3.3", "account:eve")
    assert (await refused(gone, "account:eve")).code == "login_throttled"
    assert len(gone.local._failures["account:eve"]) == LIMIT  # counted here
    fallbacks = logs.events("login_throttle_fallback")
    assert len(fallbacks) == 1 and fallbacks[0]["level"] == "warning"
    # The breaker opened after three failures: later calls did not wait on Redis.
    assert gone.breaker is not None and gone.breaker.state == "open"
