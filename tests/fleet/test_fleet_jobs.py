"""Background jobs in a fleet: a job that must run once per period for the whole fleet
(here the provider sync of the key pool, every half second) runs on one instance per
period, not on each."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from tests.fakes.openrouter import FakeOpenRouter
from tests.fleet.conftest import Start
from tests.support import PASSWORD, Api

INTERVAL = 0.5
WATCH = 4.0  # seconds of sync rounds counted


def pooled(fake: FakeOpenRouter) -> dict[str, Any]:
    return {
        "upstreams": {
            "openrouter": {
                "url": fake.base_url,
                "provider": "openrouter",
                "credential": {"kind": "pool", "probe_interval": 0, "shared_access": "everyone"},
            }
        },
        "routes": [{"name": "llm", "path": "/v1", "upstream": "openrouter", "auth": ["jwt"]}],
    }


def rounds_for(fake: FakeOpenRouter, key: str) -> list[Any]:
    """The sync rounds that asked about `key` (each also reads the credits)."""
    return [call for call in fake.calls_for(key) if call.path == "/api/v1/key"]


async def test_a_fleet_wide_job_runs_once_per_period_whichever_instance_runs_it(
    fleet: Start, openrouter: FakeOpenRouter, secret: Any
) -> None:
    key = secret("sk-or-v1-")
    openrouter.add_key(key, usage=1.0, limit=5.0)
    instances = await fleet(
        3,
        pooled(openrouter),
        FERRYMAN_ADMIN_USERNAME="root",
        FERRYMAN_ADMIN_PASSWORD=PASSWORD,
        FERRYMAN_UPSTREAM_SYNC_INTERVAL=str(INTERVAL),
    )
    async with aiohttp.ClientSession() as http:
        api = Api(http, instances[0].url)
        token = await api.login("root")
        await api.call(
            "POST",
            "/upstream-keys",
            token=token,
            json={"upstream": "openrouter", "name": "shared", "key": key},
            expect=201,
        )
    await asyncio.sleep(2)  # every instance has loaded the key (refreshed on broadcast)
    before = len(rounds_for(openrouter, key))
    await asyncio.sleep(WATCH)
    rounds = len(rounds_for(openrouter, key)) - before
    # One instance a period: about WATCH / INTERVAL = 8 (a turn is held for 0.9 of the
    # period, so phase drift may add one now and then); every instance on its own
    # would make 24.
    assert 5 <= rounds <= 11, rounds
    unavailable = [
        e for gw in instances for e in gw.lines() if e.get("event") == "task_leader_unavailable"
    ]
    assert unavailable == []
