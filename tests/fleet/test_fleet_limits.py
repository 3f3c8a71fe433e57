"""Limits in a fleet: FERRYMAN_REDIS_URL alone makes them shared (rate limits,
concurrency caps, the failed-login throttle)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
from redis.asyncio import Redis

from tests.fakes.upstream import FakeUpstream
from tests.fleet.conftest import Start
from tests.support import GatewayProcess, gateway_dict

LIMIT = 5


async def burst(instances: list[GatewayProcess], n: int) -> list[int]:
    """`n` requests at once, spread over the instances; their statuses."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:

        async def one(i: int) -> int:
            async with http.get(instances[i % len(instances)].url + "/echo/x") as response:
                await response.read()
                return response.status

        return await asyncio.gather(*(one(i) for i in range(n)))


def started_with(instance: GatewayProcess) -> dict[str, Any]:
    [started] = [e for e in instance.lines() if e.get("event") == "ferryman_started"]
    return started


async def test_three_instances_with_only_a_redis_url_admit_the_limit_between_them(
    fleet: Start, upstream: FakeUpstream
) -> None:
    instances = await fleet(3, gateway_dict(upstream.url, limits=[f"{LIMIT}/minute"]))
    statuses = await burst(instances, 30)
    assert statuses.count(200) == LIMIT, statuses
    assert statuses.count(429) == 30 - LIMIT
    assert {started_with(i)["limiter"] for i in instances} == {"redis"}


async def test_a_gateway_file_may_still_count_in_each_process(
    fleet: Start, upstream: FakeUpstream
) -> None:
    gateway = gateway_dict(upstream.url, limits=[f"{LIMIT}/minute"])
    gateway["limiter"] = {"backend": "memory"}
    instances = await fleet(2, gateway)
    statuses = await burst(instances, 30)
    assert statuses.count(200) == 2 * LIMIT, statuses  # each its own count, as asked
    assert {started_with(i)["limiter"] for i in instances} == {"memory"}


async def test_a_concurrency_cap_holds_across_instances_and_frees_its_slots(
    fleet: Start, upstream: FakeUpstream, redis_url: str
) -> None:
    gateway = gateway_dict(upstream.url, max_parallel={"limit": 3, "by": ["route"]})
    one, two = await fleet(2, gateway)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:

        async def slow(instance: GatewayProcess) -> tuple[int, dict[str, Any]]:
            async with http.get(instance.url + "/slow?delay=1") as response:
                return response.status, await response.json()

        answers = await asyncio.gather(*(slow((one, two)[i % 2]) for i in range(10)))
        statuses = [status for status, _ in answers]
        assert statuses.count(200) == 3, statuses
        refused = [body for status, body in answers if status == 429]
        assert len(refused) == 7
        assert {body["error"] for body in refused} == {"too_many_in_flight"}
        # Every slot was given back when its request ended, on both instances (in
        # Redis a round trip after the answer: the client may be quicker than that,
        # and a loaded machine slower than any fixed pause).
        redis = Redis.from_url(redis_url)
        prefix = one.env["FERRYMAN_REDIS_PREFIX"]

        async def held() -> int:
            """Slots still held once they settle (within 5 s)."""
            deadline = time.monotonic() + 5
            while True:
                keys = await redis.keys(prefix + "limits:par:*")
                count = sum([await redis.zcard(key) for key in keys])
                if not count or time.monotonic() > deadline:
                    return count
                await asyncio.sleep(0.05)

        assert await held() == 0
        again = await asyncio.gather(*(slow((one, two)[i % 2]) for i in range(3)))
        assert [status for status, _ in again] == [200] * 3
        assert await held() == 0
        await redis.aclose()


async def test_failed_logins_on_any_instance_count_against_the_account_everywhere(
    fleet: Start,
) -> None:
    password = "correct horse battery staple"
    one, two = await fleet(
        2,
        gateway_dict("http://127.0.0.1:9"),  # no route is called
        FERRYMAN_ADMIN_USERNAME="root",
        FERRYMAN_ADMIN_PASSWORD=password,
        FERRYMAN_AUTH_RATE_LIMIT="1000/minute",
    )
    async with aiohttp.ClientSession() as http:

        async def login(instance: GatewayProcess, secret: str) -> tuple[int, dict[str, Any]]:
            url = instance.url + "/api/v1/auth/login"
            async with http.post(url, json={"username": "root", "password": secret}) as r:
                return r.status, await r.json()

        wrong = [await login((one, two)[i % 2], "wrong password") for i in range(5)]
        assert [status for status, _ in wrong] == [401] * 5
        for instance in (one, two):
            status, body = await login(instance, password)  # even the right one, for now
            assert (status, body["error"]) == (429, "login_throttled")
