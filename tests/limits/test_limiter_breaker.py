"""The limiter in front of a frozen Redis (the test's own redis-server, SIGSTOPped): a
few checks wait out the timeout, then the breaker opens and none do; the breaker's
cool-off runs on a fake clock."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from ferryman.clock import FakeClock
from ferryman.config.limits import Limiter
from ferryman.errors import ServiceUnavailable
from ferryman.limits.backends import RedisBackend, Tier
from ferryman.limits.limiter import Limits
from ferryman.limits.rates import Rate
from ferryman.observability.metrics import LocalMetrics
from ferryman.store.redis import connect_redis

TIERS = [Tier("rl:r:0:1.2.3.4|3600", "gcra", Rate(100, 3600.0, 100))]
TOKENS = [Tier("tpm:credential:c", "gcra", Rate(1000, 60.0, 1000), 10)]


@pytest.fixture
def frozen(private_redis: tuple[str, subprocess.Popen[bytes]]) -> Iterator[Any]:
    """`frozen(True)` stops the private Redis (SIGSTOP), `frozen(False)` lets it go on."""
    _, server = private_redis

    def freeze(on: bool) -> None:
        server.send_signal(signal.SIGSTOP if on else signal.SIGCONT)

    yield freeze
    freeze(False)


@pytest.fixture
async def make(private_redis: tuple[str, subprocess.Popen[bytes]]) -> AsyncIterator[Any]:
    url, _ = private_redis
    client = connect_redis(url)

    def build(on_error: str = "fail_open") -> tuple[Limits, FakeClock]:
        spec = Limiter.model_validate(
            {
                "backend": "redis",
                "on_error": on_error,
                "timeout": 0.05,
                "breaker": {"failures": 3, "cooloff": 5, "max_cooloff": 60},
            }
        )
        clock = FakeClock()
        return Limits(spec, clock, LocalMetrics(), RedisBackend(client, "t:")), clock

    yield build
    await client.aclose()


async def timed(limits: Limits) -> float:
    started = time.monotonic()
    await limits.hit(TIERS)
    return time.monotonic() - started


async def test_three_timeouts_open_the_breaker_then_no_check_waits_until_the_probe(
    make: Any, frozen: Any
) -> None:
    limits, clock = make()
    assert (await limits.hit(TIERS))[0].remaining == 99  # counted in Redis
    frozen(True)
    waited = [await timed(limits) for _ in range(3)]
    assert min(waited) >= 0.045, waited
    assert limits.breaker.state == "open"
    started = time.monotonic()
    for _ in range(50):
        assert (await limits.hit(TIERS))[0].allowed  # in-process, at once
    await limits.charge(TOKENS)  # nor does a charge wait
    assert time.monotonic() - started < 0.045  # less than one timeout for all of them
    assert limits.fallbacks == 3 + 50 + 1

    clock.advance(seconds=5)
    assert await timed(limits) >= 0.045  # the probe: Redis is still frozen
    assert limits.breaker.state == "open" and limits.breaker.cooloff == 10
    frozen(False)
    clock.advance(seconds=9)
    assert await timed(limits) < 0.045  # not yet: the wait is never shortened
    assert limits.breaker.state == "open"
    clock.advance(seconds=1)
    decisions = await limits.hit(TIERS)  # the probe, answered by Redis
    assert limits.breaker.closed
    # Redis's count went on from where it was: the 50 checks made in-process are not in
    # it. (The four that timed out may be: Redis runs what it had already received.)
    assert 94 <= decisions[0].remaining <= 98


async def test_with_fail_closed_an_open_breaker_refuses_at_once(make: Any, frozen: Any) -> None:
    limits, _ = make("fail_closed")
    frozen(True)
    for _ in range(3):
        with pytest.raises(ServiceUnavailable):
            await limits.hit(TIERS)
    started = time.monotonic()
    for _ in range(20):
        with pytest.raises(ServiceUnavailable) as refused:
            await limits.hit(TIERS)
        assert refused.value.code == "limiter_unavailable"
    assert time.monotonic() - started < 0.045


async def test_a_cancelled_probe_leaves_the_probe_to_the_next_check(make: Any, frozen: Any) -> None:
    limits, clock = make()
    frozen(True)
    for _ in range(3):
        await limits.hit(TIERS)
    clock.advance(seconds=5)
    probe = asyncio.create_task(limits.hit(TIERS))
    await asyncio.sleep(0.01)
    assert limits.breaker.probing
    probe.cancel()  # its client left
    with pytest.raises(asyncio.CancelledError):
        await probe
    assert not limits.breaker.probing and limits.breaker.cooloff == 5
    frozen(False)
    await limits.hit(TIERS)  # the next check probes, and Redis answers
    assert limits.breaker.closed
