"""Rate limits and concurrency caps on routes, through the gateway."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Any

import aiohttp

from ferryman.config.settings import Settings
from tests.fakes.upstream import FakeUpstream
from tests.support import client_session, gateway_dict, serve_app

ERROR_KEYS = {"error", "message", "correlation_id", "timestamp"}


async def get(http: aiohttp.ClientSession, url: str, **kwargs: Any) -> tuple[int, Any, Any]:
    async with http.get(url, **kwargs) as response:
        body = await response.read()
        return response.status, response.headers, body


async def test_headers_on_admitted_and_refused_requests(
    settings: Settings, upstream: FakeUpstream
) -> None:
    gateway = gateway_dict(upstream.url, limits=["3/minute", {"rate": "100/hour", "by": ["ip"]}])
    async with serve_app(settings, gateway) as gw, client_session() as http:
        seen = [await get(http, gw.url + "/echo/x") for _ in range(4)]
    statuses = [status for status, _, _ in seen]
    assert statuses == [200, 200, 200, 429]
    first = seen[0][1]
    assert first["RateLimit-Limit"] == "3"
    assert first["RateLimit-Remaining"] == "2"
    assert 0 < int(first["RateLimit-Reset"]) <= 60
    assert first["RateLimit-Policy"] == "3;w=60, 100;w=3600"
    assert [h["RateLimit-Remaining"] for _, h, _ in seen] == ["2", "1", "0", "0"]
    _, refused, body = seen[3]
    error = json.loads(body)
    assert set(error) == ERROR_KEYS and error["error"] == "rate_limited"
    assert "3 per 60 s" in error["message"]
    assert 1 <= int(refused["Retry-After"]) <= 20
    assert refused["RateLimit-Remaining"] == "0"
    assert len(upstream.seen.requests) == 3  # the refused one never reached it


async def test_keys_by_credential_count_each_caller_on_its_own(
    settings: Settings, upstream: FakeUpstream
) -> None:
    from tests.support import Api

    gateway = gateway_dict(upstream.url, auth=["api_key"], limits=["2/minute"])
    async with serve_app(settings, gateway) as gw, client_session() as http:
        api = Api(http, gw.url)
        keys = []
        for name in ("ann", "bob"):
            _, token = await api.user(name)
            keys.append((await api.new_key(token))["key"])
        results = {
            key[:8]: [
                (await get(http, gw.url + "/echo/", headers={"X-API-Key": key}))[0]
                for _ in range(3)
            ]
            for key in keys
        }
    assert list(results.values()) == [[200, 200, 429], [200, 200, 429]]


async def test_a_refusal_by_one_tier_spends_nothing_from_the_others(
    settings: Settings, upstream: FakeUpstream
) -> None:
    gateway = gateway_dict(
        upstream.url,
        limits=[
            {"rate": "2/minute", "by": ["ip", "route"], "algorithm": "sliding_window"},
            {"rate": "5/minute", "by": ["ip"]},
        ],
    )
    async with serve_app(settings, gateway) as gw, client_session() as http:
        statuses = [(await get(http, gw.url + "/echo/"))[0] for _ in range(6)]
        assert gw.app.limits.memory.gcra  # the loose tier kept state
        (loose,) = [tat for key, tat in gw.app.limits.memory.gcra.items() if ":1:" in key]
    assert statuses == [200, 200, 429, 429, 429, 429]
    # Two admitted requests at the sustained 5/minute: the TAT moved by 2 x 12 s only.
    assert 23 < loose - gw.app.clock.time() <= 24.5


async def test_a_concurrency_cap_refuses_at_once_and_a_gone_client_frees_its_slot(
    settings: Settings, upstream: FakeUpstream
) -> None:
    gateway = gateway_dict(upstream.url, max_parallel={"limit": 1, "by": ["ip"]})
    async with serve_app(settings, gateway) as gw:
        async with client_session() as http:
            stream = await http.get(gw.url + "/sse?events=50&interval=0.1")
            assert stream.status == 200
            await stream.content.readline()  # the stream is flowing
            status, headers, body = await get(http, gw.url + "/echo/")
            assert status == 429 and json.loads(body)["error"] == "too_many_in_flight"
            assert headers["Retry-After"] == "1"
            stream.close()  # the client leaves mid-stream
        caps = gw.app.proxy._caps["main"]
        for _ in range(100):
            if not caps.in_flight:
                break
            await asyncio.sleep(0.02)
        assert caps.in_flight == {}
        async with client_session() as http:
            assert (await get(http, gw.url + "/echo/"))[0] == 200
        # A finished stream frees it too.
        async with client_session() as http:
            async with http.get(gw.url + "/sse?events=2&interval=0") as response:
                await response.read()
            assert (await get(http, gw.url + "/echo/"))[0] == 200
        assert caps.in_flight == {}


async def test_redis_backend_counts_every_tier_in_one_script(
    settings_factory: Callable[..., Settings], upstream: FakeUpstream, redis_url: str
) -> None:
    settings = settings_factory(
        redis_url=redis_url, redis_prefix=f"ferryman-test-{uuid.uuid4().hex[:8]}:"
    )
    gateway = gateway_dict(
        upstream.url,
        limits=["4/minute", {"rate": "3/minute", "algorithm": "sliding_window", "by": ["ip"]}],
    )
    gateway["limiter"] = {"backend": "redis"}
    async with serve_app(settings, gateway) as gw, client_session() as http:
        seen = [await get(http, gw.url + "/echo/") for _ in range(5)]
        assert gw.app.limits.fallbacks == 0
        assert gw.app.limits.memory.gcra == {} and gw.app.limits.memory.windows == {}
    assert [s for s, _, _ in seen] == [200, 200, 200, 429, 429]
    assert [h["RateLimit-Remaining"] for _, h, _ in seen[:3]] == ["2", "1", "0"]
    assert seen[0][1]["RateLimit-Policy"] == "4;w=60, 3;w=60"
