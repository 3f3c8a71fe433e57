"""Budgets of a fleet: two instances (in this process, each its own app) on one
database and one real Redis count one spend per budget window, at once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from ferryman.config.settings import Settings
from tests.api.helpers import Client
from tests.conftest import TEST_REDIS_URL
from tests.fakes.openrouter import COST, FakeOpenRouter
from tests.limits.llm import add_pool_key, chat, llm_gateway
from tests.support import Running, client_session, serve_app


def gateway(fake: FakeOpenRouter, amount: float) -> dict[str, Any]:
    # Refresh from the database only every hour: what is shared here goes over Redis.
    budgets = {"defaults": {"api_key": {"amount": amount, "period": "day"}}, "refresh": 3600}
    return llm_gateway(fake, budgets=budgets)


@pytest.fixture
def fleet_settings(settings_factory: Callable[..., Settings]) -> Settings:
    if not TEST_REDIS_URL:
        pytest.skip("FERRYMAN_TEST_REDIS_URL is not set")
    return settings_factory(redis_url=TEST_REDIS_URL, redis_prefix=f"t{uuid.uuid4().hex[:10]}:")


async def user_key(http: aiohttp.ClientSession, gw: Running, username: str) -> str:
    """The pool's key stored (once, in the shared database), a user, and their key."""
    await add_pool_key(gw)
    client = Client(http, gw.url)
    _, token = await client.user(username)
    key: str = (await client.new_key(token))["key"]
    return key


async def statuses(http: aiohttp.ClientSession, gw: Running, key: str, n: int) -> list[int]:
    return [(await chat(http, gw, key))[0] for _ in range(n)]


async def counters(settings: Settings) -> dict[str, float]:
    assert settings.redis_url
    redis = Redis.from_url(settings.redis_url)
    keys = await redis.keys(settings.redis_prefix + "budget:*")
    values = {k.decode(): float(await redis.get(k)) for k in keys}
    await redis.aclose()
    return values


async def test_what_one_instance_spent_counts_on_the_other_at_once(
    fleet_settings: Settings, openrouter: FakeOpenRouter
) -> None:
    spec = gateway(openrouter, COST * 2.5)
    async with serve_app(fleet_settings, spec) as one, client_session() as http:
        key = await user_key(http, one, "fay")
        async with serve_app(fleet_settings, spec) as two:
            assert await statuses(http, one, key, 2) == [200, 200]
            assert await statuses(http, two, key, 1) == [200]
            # Nothing written to the database yet (flushed once a second), nor refreshed
            # (once an hour): both know of all three from Redis.
            await asyncio.sleep(0.1)  # the last cost is sent in the background
            for gw in (one, two):
                status, body, _ = await chat(http, gw, key)
                assert (status, body["error"]) == (429, "budget_exceeded")
                assert "(0.0003 of 0.00025)" in body["message"]
    [(name, spent)] = (await counters(fleet_settings)).items()
    assert ":credential:" in name and spent == pytest.approx(COST * 3)


async def test_concurrent_requests_on_two_instances_overshoot_by_those_in_flight_only(
    fleet_settings: Settings, openrouter: FakeOpenRouter
) -> None:
    spec = gateway(openrouter, COST * 2.5)
    async with serve_app(fleet_settings, spec) as one, client_session() as http:
        key = await user_key(http, one, "gus")
        async with serve_app(fleet_settings, spec) as two:
            streams = [
                chat(http, (one, two)[i % 2], key, stream=True, x_chunks=3, x_interval=0.1)
                for i in range(10)
            ]
            assert [r[0] for r in await asyncio.gather(*streams)] == [200] * 10
            await asyncio.sleep(0.1)
            for gw in (two, one, two):
                assert (await chat(http, gw, key))[0] == 429
    # The ten in flight when the budget was reached, and nothing after.
    assert list((await counters(fleet_settings)).values()) == [pytest.approx(COST * 10)]


async def test_a_redis_that_fails_leaves_each_instance_its_own_count(
    settings_factory: Callable[..., Settings], openrouter: FakeOpenRouter
) -> None:
    settings = settings_factory(redis_url="redis://127.0.0.1:1/0")  # nothing listens
    spec = gateway(openrouter, COST * 1.5)
    async with serve_app(settings, spec) as gw, client_session() as http:
        key = await user_key(http, gw, "hal")
        assert await statuses(http, gw, key, 3) == [200, 200, 429]
        assert gw.app.budgets is not None
        (tally,) = gw.app.budgets._tallies.values()
        assert tally.fleet is None and tally.spent == pytest.approx(COST * 2)
