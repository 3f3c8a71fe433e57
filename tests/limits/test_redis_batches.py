"""The Redis backend's batches: checks asked in the same turn of the event loop go to
a real Redis (the test's own, so its command counts are ours) in one script call, and
each request is still all-or-nothing, in order."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from ferryman.limits.backends import RedisBackend, Tier
from ferryman.limits.rates import parse_rate

Server = tuple[str, subprocess.Popen[bytes]]


@pytest.fixture
async def backend(private_redis: Server) -> AsyncIterator[RedisBackend]:
    redis = Redis.from_url(private_redis[0])
    yield RedisBackend(redis, "t:")
    await redis.aclose()


async def script_calls(backend: RedisBackend) -> int:
    stats = await backend.redis.info("commandstats")
    return sum(
        int(v["calls"]) for k, v in stats.items() if k in ("cmdstat_evalsha", "cmdstat_eval")
    )


def gcra(key: str, rate: str, cost: int = 1) -> Tier:
    return Tier(key, "gcra", parse_rate(rate), cost)


async def test_concurrent_checks_are_one_call_and_admit_exactly_the_burst(
    backend: RedisBackend,
) -> None:
    await backend.hit([gcra("warm", "1/hour")])  # the script is loaded (EVAL once)
    before = await script_calls(backend)
    decisions = await asyncio.gather(*(backend.hit([gcra("k", "10/hour")]) for _ in range(50)))
    allowed = [d[0].allowed for d in decisions]
    assert allowed == [True] * 10 + [False] * 40  # in the order they asked
    assert [d[0].remaining for d in decisions[:10]] == list(range(9, -1, -1))
    assert await script_calls(backend) - before == 1


async def test_a_request_refused_by_one_tier_takes_nothing_even_within_a_batch(
    backend: RedisBackend,
) -> None:
    assert (await backend.hit([gcra("one", "1/hour")]))[0].allowed
    both = [gcra("one", "1/hour"), gcra("shared", "100/hour")]
    alone = [gcra("shared", "100/hour")]
    refused, *others = await asyncio.gather(
        backend.hit(both), backend.hit(alone), backend.hit(alone), backend.hit(alone)
    )
    assert [d.allowed for d in refused] == [False, True]  # "one" is spent
    # "shared" counted the three that were admitted, not the refused one before them.
    assert [d[0].remaining for d in others] == [99, 98, 97]


async def test_each_request_gets_its_own_tiers_answers_and_sliding_windows_hold(
    backend: RedisBackend,
) -> None:
    window = Tier("w", "sliding_window", parse_rate("5/minute"))
    asks = [[gcra(f"own{i}", f"{i + 2}/hour")] for i in range(5)] + [[window]] * 20
    decisions = await asyncio.gather(*(backend.hit(tiers) for tiers in asks))
    assert [d[0].remaining for d in decisions[:5]] == [1, 2, 3, 4, 5]
    assert [d[0].limit for d in decisions[:5]] == [2, 3, 4, 5, 6]
    assert [d[0].allowed for d in decisions[5:]] == [True] * 5 + [False] * 15


async def test_a_failed_call_fails_every_request_of_its_batch(private_redis: Server) -> None:
    gone = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    backend = RedisBackend(gone, "t:")
    results = await asyncio.gather(
        *(backend.hit([gcra("k", "10/hour")]) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, RedisConnectionError) for r in results), results
    await gone.aclose()
