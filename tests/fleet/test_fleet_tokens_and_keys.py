"""Tokens a minute and the key pool's health in a fleet of real `ferryman serve`
processes with nothing but a Redis URL in common besides the database: what one
instance charged or learned about a key, the others act on."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from tests.fakes.openrouter import PROMPT_TOKENS, FakeOpenRouter
from tests.fleet.conftest import Start
from tests.fleet.test_fleet_budgets import ADMIN, chat, root_key
from tests.limits.llm import POOL_KEY
from tests.support import Api, GatewayProcess
from tests.upstreams.conftest import pooled_gateway

PER_CHAT = PROMPT_TOKENS + 3  # the fake's answer: five prompt and three completion tokens
A = "sk-or-v1-" + "a" * 64
B = "sk-or-v1-" + "b" * 64


def fixed_llm(fake: FakeOpenRouter, **sections: Any) -> dict[str, Any]:
    """`/v1` to the fake with one fixed upstream key, client keys, `meter: llm`."""
    return {
        "upstreams": {
            "openrouter": {
                "url": fake.base_url,
                "provider": "openrouter",
                "credential": {"kind": "fixed", "value_env": "OR_KEY", "prefix": "Bearer "},
            }
        },
        "routes": [
            {"name": "llm", "path": "/v1", "upstream": "openrouter", "strip_prefix": True,
             "auth": ["api_key"], "meter": "llm"}
        ],
        **sections,
    }  # fmt: skip


async def test_tokens_a_minute_are_counted_across_the_fleet(
    fleet: Start, openrouter: FakeOpenRouter
) -> None:
    openrouter.add_key(POOL_KEY, label="fixed")
    # 17 tokens a minute: used before each chat 0, 8, 16 → admitted; then 24 → refused.
    limiter = {"token_defaults": {"api_key": PER_CHAT * 2 + 1}}
    one, two = await fleet(2, fixed_llm(openrouter, limiter=limiter), OR_KEY=POOL_KEY, **ADMIN)
    async with aiohttp.ClientSession() as http:
        key = await root_key(Api(http, one.url))
        for gw in (one, two, one):
            assert (await chat(http, gw, key))[0] == 200
            await asyncio.sleep(0.1)  # the tokens are charged once the answer is read
        # Counted per process, `two` would have used 8 of its 17 and let this through.
        status, body = await chat(http, two, key)
        assert (status, body["error"]) == (429, "token_rate_limited")
        assert f"token limit of {PER_CHAT * 2 + 1} per minute" in body["message"]
        assert (await chat(http, one, key))[0] == 429


async def pooled_fleet(fleet: Start, fake: FakeOpenRouter) -> list[GatewayProcess]:
    gateway = pooled_gateway(fake.base_url, shared_access="everyone")
    gateway["routes"][0]["auth"] = ["api_key"]
    # The pools are re-read from the database only every hour: what the instances know
    # of each other's keys comes through Redis.
    env = {**ADMIN, "FERRYMAN_UPSTREAM_REFRESH_INTERVAL": "3600"}
    instances: list[GatewayProcess] = await fleet(2, gateway, **env)
    return instances


async def test_a_key_cooling_down_on_one_instance_is_left_alone_by_the_other(
    fleet: Start, openrouter: FakeOpenRouter
) -> None:
    openrouter.add_key(A, label="a", behaviour="429", retry_after="300")
    openrouter.add_key(B, label="b")
    one, two = await pooled_fleet(fleet, openrouter)
    async with aiohttp.ClientSession() as http:
        api = Api(http, one.url)
        admin = await api.login("root")
        for name, secret in (("a", A), ("b", B)):
            await api.call("POST", "/upstream-keys", token=admin, expect=201,
                           json={"upstream": "openrouter", "name": name, "key": secret,
                                 "validate": False})  # fmt: skip
        key = (await api.new_key(admin))["key"]
        await asyncio.sleep(0.3)  # the new keys reach `two` over Redis
        # Round robin reaches A within two requests; its 429 moves the request to B.
        for _ in range(2):
            status, _ = await chat(http, one, key)
            assert status == 200
        assert len(openrouter.calls_for(A)) == 1
        deadline = time.monotonic() + 1
        while True:  # the state reaches the other instance within a second
            status, listing = await Api(http, two.url).call("GET", "/upstream-keys", token=admin)
            states = {k["name"]: k["state"] for k in listing["items"]}
            if states == {"a": "cooling_down", "b": "healthy"}:
                break
            assert time.monotonic() < deadline, states
            await asyncio.sleep(0.05)
        (a,) = [k for k in listing["items"] if k["name"] == "a"]
        assert a["cooling_until"] is not None  # Retry-After: 300 s from now
        # `two` never asks A while it cools down: every answer is B's.
        for _ in range(6):
            async with http.post(
                two.url + "/v1/chat/completions",
                json={"model": "m", "messages": []},
                headers={"X-API-Key": key},
            ) as response:
                assert response.status == 200
                assert response.headers["X-Fake-Key-Label"] == "b"
        assert len(openrouter.calls_for(A)) == 1
