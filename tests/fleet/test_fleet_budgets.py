"""Spend and revocation in a fleet of real `ferryman serve` processes: a budget spent
through one instance is spent on the others at once, concurrent requests overshoot it
by those in flight only, and a revoked key is refused everywhere within a second."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest

from tests.fakes.openrouter import COST, FakeOpenRouter
from tests.fleet.conftest import Start
from tests.limits.llm import CHAT, POOL_KEY
from tests.support import PASSWORD, Api, GatewayProcess

ADMIN = {"FERRYMAN_ADMIN_USERNAME": "root", "FERRYMAN_ADMIN_PASSWORD": PASSWORD}


def llm(fake: FakeOpenRouter, budget: float) -> dict[str, Any]:
    """`/v1` to the fake OpenRouter with one fixed upstream key, client keys, metered,
    a daily budget per key; the database is re-read only every hour, so what the
    instances know of each other's spend comes through Redis."""
    return {
        "upstreams": {
            "openrouter": {
                "url": fake.base_url,
                "provider": "openrouter",
                "credential": {"kind": "fixed", "value_env": "OR_KEY", "prefix": "Bearer "},
            }
        },
        "routes": [
            {
                "name": "llm",
                "path": "/v1",
                "upstream": "openrouter",
                "strip_prefix": True,
                "auth": ["api_key"],
                "meter": "llm",
            }
        ],
        "budgets": {"defaults": {"api_key": {"amount": budget, "period": "day"}}, "refresh": 3600},
    }


async def chat(
    http: aiohttp.ClientSession, gw: GatewayProcess, key: str, **extra: Any
) -> tuple[int, dict[str, Any]]:
    async with http.post(
        gw.url + "/v1/chat/completions", json={**CHAT, **extra}, headers={"X-API-Key": key}
    ) as response:
        raw = await response.read()
        body = json.loads(raw) if response.status != 200 or not extra.get("stream") else {}
        return response.status, body


async def root_key(api: Api) -> str:
    """A client key of the admin the fleet was started with."""
    key: str = (await api.new_key(await api.login("root")))["key"]
    return key


async def start(fleet: Start, fake: FakeOpenRouter, budget: float) -> list[GatewayProcess]:
    fake.add_key(POOL_KEY, label="fixed")
    instances: list[GatewayProcess] = await fleet(2, llm(fake, budget), OR_KEY=POOL_KEY, **ADMIN)
    return instances


async def test_a_budget_spent_through_one_instance_is_spent_on_the_other(
    fleet: Start, openrouter: FakeOpenRouter
) -> None:
    one, two = await start(fleet, openrouter, COST * 2.5)
    async with aiohttp.ClientSession() as http:
        api = Api(http, one.url)
        key = await root_key(api)
        assert [(await chat(http, gw, key))[0] for gw in (one, one, two)] == [200] * 3
        await asyncio.sleep(0.2)  # the last cost goes to Redis in the background
        for gw in (two, one):
            status, body = await chat(http, gw, key)
            assert (status, body["error"]) == (429, "budget_exceeded")


async def test_concurrent_requests_across_the_fleet_overshoot_by_those_in_flight(
    fleet: Start, openrouter: FakeOpenRouter
) -> None:
    one, two = await start(fleet, openrouter, COST * 2.5)
    async with aiohttp.ClientSession() as http:
        api = Api(http, one.url)
        key = await root_key(api)
        streams = [
            chat(http, (one, two)[i % 2], key, stream=True, x_chunks=3, x_interval=0.1)
            for i in range(8)
        ]
        # All eight are checked before any has cost anything: all admitted.
        assert [s for s, _ in await asyncio.gather(*streams)] == [200] * 8
        await asyncio.sleep(0.2)
        assert [(await chat(http, gw, key))[0] for gw in (one, two)] == [429, 429]
        # The spend, once both have written it: the eight in flight when the budget was
        # reached, and nothing after.
        token, deadline = await api.login("root"), time.monotonic() + 10
        while True:
            _, stats = await api.call("GET", "/stats", token=token, expect=200)
            spent = stats["summary"]["total_cost"]
            if spent >= COST * 8 * 0.999 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
    assert spent == pytest.approx(COST * 8)


async def test_a_key_revoked_on_one_instance_is_refused_by_the_other_within_a_second(
    fleet: Start, openrouter: FakeOpenRouter
) -> None:
    one, two = await start(fleet, openrouter, COST * 100)
    async with aiohttp.ClientSession() as http:
        api = Api(http, one.url)
        token = await api.login("root")
        key = await api.new_key(token)
        assert (await chat(http, two, key["key"]))[0] == 200  # cached as valid on two
        await api.call("DELETE", f"/keys/{key['id']}", token=token, expect=204)
        revoked = time.monotonic()
        while (await chat(http, two, key["key"]))[0] == 200:
            assert time.monotonic() - revoked < 1.0, "instance two still accepts the key"
            await asyncio.sleep(0.02)
        status, body = await chat(http, two, key["key"])
        assert (status, body["error"]) == (401, "revoked_credential")
