"""An upstream's circuit breaker across a fleet of real `ferryman serve` processes:
opened by one instance, it is open on all; half-open, the whole fleet sends exactly
one probe; its success closes it everywhere."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.fakes.flaky import FlakyUpstream
from tests.fleet.conftest import Start
from tests.support import GatewayProcess, gateway_dict

OPEN_FOR = 1.0
BREAKER = {"failures": 3, "failure_rate": None, "open_for": OPEN_FOR, "max_open_for": 5}


@pytest.fixture
async def flaky() -> AsyncIterator[FlakyUpstream]:
    fake = await FlakyUpstream().start()
    yield fake
    await fake.stop()


async def status(http: aiohttp.ClientSession, gw: GatewayProcess) -> int:
    async with http.get(f"{gw.url}/x") as r:
        await r.read()
        return r.status


async def until(check: Any, seconds: float = 3.0) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, "the fleet did not follow in time"
        await asyncio.sleep(0.02)


async def test_the_fleet_opens_together_probes_once_and_closes_together(
    fleet: Start, flaky: FlakyUpstream
) -> None:
    gateway = gateway_dict(flaky.url, upstream_spec={"breaker": BREAKER})
    one, two = await fleet(2, gateway)
    async with aiohttp.ClientSession() as http:
        flaky.mode = "fail"
        for _ in range(3):
            assert await status(http, one) == 500
        assert await status(http, one) == 503

        # `two` saw no failure of its own: it refuses because `one` opened the breaker
        # (once the broadcast arrived, a few milliseconds later).
        async def two_refuses() -> bool:
            return await status(http, two) == 503

        await until(two_refuses, 1.0)
        hits = flaky.hits
        assert [await status(http, two) for _ in range(10)] == [503] * 10
        assert flaky.hits == hits
        async with http.get(f"{two.url}/health") as r:
            breaker = (await r.json())["checks"]["upstreams"]["breakers"]["up"]
        assert breaker["state"] == "open" and breaker["shared"] is True

        await asyncio.sleep(OPEN_FOR + 0.1)
        flaky.mode, flaky.delay = "ok", 0.5
        results = await asyncio.gather(*(status(http, gw) for _ in range(25) for gw in (one, two)))
        assert sorted(results) == [200] + [503] * 49
        assert flaky.hits == hits + 1  # one probe for the whole fleet

        flaky.delay = 0

        async def both_serve() -> bool:
            return [await status(http, gw) for gw in (one, two)] == [200, 200]

        await until(both_serve, 1.0)
