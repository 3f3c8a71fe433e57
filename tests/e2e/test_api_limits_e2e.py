"""The management API's default limits through real `ferryman serve` processes."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.test_auth_e2e import CHEAP_HASH
from tests.fakes.upstream import FakeUpstream
from tests.support import PASSWORD, GatewayProcess, client_session, gateway_dict

pytestmark = pytest.mark.e2e

#: Nothing about the limits is set: the defaults apply.
ENV = {"FERRYMAN_REGISTRATION_ENABLED": "true", **CHEAP_HASH}

Start = Callable[[str, dict[str, Any], dict[str, str]], Awaitable[GatewayProcess]]


@pytest.fixture
async def processes(tmp_path: Path) -> AsyncIterator[Start]:
    started: list[GatewayProcess] = []

    async def start(name: str, gateway: dict[str, Any], env: dict[str, str]) -> GatewayProcess:
        workdir = tmp_path / name
        workdir.mkdir()
        shared = {"FERRYMAN_DATA_DIR": str(tmp_path / "data"), **ENV, **env}
        proc = GatewayProcess(workdir, gateway, shared)
        started.append(proc)
        return await proc.start()

    yield start
    for proc in started:
        await proc.stop()


async def post(
    http: aiohttp.ClientSession, url: str, path: str, body: dict[str, str]
) -> tuple[int, Any, Any]:
    async with http.post(f"{url}/api/v1{path}", json=body) as r:
        return r.status, r.headers, json.loads(await r.read())


async def test_five_attempts_a_minute_and_a_hundred_stats_calls_an_hour(
    processes: Start, upstream: FakeUpstream
) -> None:
    gw = await processes("one", gateway_dict(upstream.url), {})
    me = {"username": "ann", "password": PASSWORD}
    async with client_session() as http:
        seen = [await post(http, gw.url, "/auth/register", me)]
        seen += [await post(http, gw.url, "/auth/login", me) for _ in range(4)]
        assert [status for status, _, _ in seen] == [201, 200, 200, 200, 200]
        assert [h["RateLimit-Remaining"] for _, h, _ in seen] == ["4", "3", "2", "1", "0"]
        assert {h["RateLimit-Policy"] for _, h, _ in seen} == {"5;w=60"}
        status, headers, body = await post(http, gw.url, "/auth/session", me)
        assert status == 429 and body["error"] == "rate_limited"
        assert set(body) == {"error", "message", "correlation_id", "timestamp"}
        assert 1 <= int(headers["Retry-After"]) <= 12
        assert headers["RateLimit-Limit"] == "5" and headers["RateLimit-Remaining"] == "0"

        token = seen[-1][2]["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        statuses = []
        for _ in range(101):
            async with http.get(f"{gw.url}/api/v1/stats", headers=auth) as r:
                statuses.append(r.status)
                last = r.headers
        assert statuses == [200] * 100 + [429]
        assert last["RateLimit-Policy"] == "100;w=3600"
        assert 1 <= int(last["Retry-After"]) <= 36


async def test_two_processes_on_redis_share_the_count(
    processes: Start, upstream: FakeUpstream, redis_url: str
) -> None:
    gateway = {**gateway_dict(upstream.url), "limiter": {"backend": "redis", "timeout": 1.0}}
    env = {"FERRYMAN_REDIS_URL": redis_url, "FERRYMAN_REDIS_PREFIX": f"t{uuid.uuid4().hex}:"}
    one = await processes("one", gateway, env)
    two = await processes("two", gateway, env)
    me = {"username": "ann", "password": PASSWORD}
    async with client_session() as http:
        seen = [await post(http, one.url, "/auth/register", me)]
        seen += [await post(http, url, "/auth/login", me) for url in (one.url, two.url) * 2]
        assert [status for status, _, _ in seen] == [201, 200, 200, 200, 200]
        assert [h["RateLimit-Remaining"] for _, h, _ in seen] == ["4", "3", "2", "1", "0"]
        for url in (one.url, two.url):
            status, _, body = await post(http, url, "/auth/login", me)
            assert status == 429 and body["error"] == "rate_limited"
