"""Limit accuracy through real `ferryman serve` processes: exactly L admitted out of N
concurrent requests, alone and as two processes sharing Redis, and what happens when
Redis goes away mid-run (a private redis-server this test starts and stops)."""

from __future__ import annotations

import asyncio
import signal
import statistics
import subprocess
import time
import uuid
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from tests.fakes.upstream import FakeUpstream
from tests.support import gateway_dict

LIMIT = 40
CLIENTS = 120


def limited(upstream: str, backend: str = "memory", **limiter: Any) -> dict[str, Any]:
    gateway = gateway_dict(upstream, limits=[f"{LIMIT}/hour"])
    gateway["limiter"] = {"backend": backend, **limiter}
    return gateway


async def burst(urls: list[str], n: int = CLIENTS) -> list[int]:
    """`n` requests at once, spread over `urls`; their statuses."""
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def one(i: int) -> int:
            async with http.get(urls[i % len(urls)] + "/echo/x") as response:
                await response.read()
                return response.status

        return await asyncio.gather(*(one(i) for i in range(n)))


async def test_one_process_admits_exactly_the_limit(
    processes: Callable[..., Any], upstream: FakeUpstream
) -> None:
    gw = await processes("one", limited(upstream.url), {})
    statuses = await burst([gw.url])
    assert statuses.count(200) == LIMIT
    assert statuses.count(429) == CLIENTS - LIMIT


async def test_two_processes_sharing_redis_admit_exactly_the_limit_together(
    processes: Callable[..., Any], upstream: FakeUpstream, redis_url: str
) -> None:
    env = {"FERRYMAN_REDIS_URL": redis_url, "FERRYMAN_REDIS_PREFIX": f"t{uuid.uuid4().hex}:"}
    gateway = limited(upstream.url, "redis", timeout=1.0)
    one = await processes("one", gateway, env)
    two = await processes("two", gateway, env)
    statuses = await burst([one.url, two.url])
    assert statuses.count(200) == LIMIT
    assert statuses.count(429) == CLIENTS - LIMIT


@pytest.mark.parametrize("mode", ["fail_open", "fail_closed"])
async def test_redis_stopping_mid_run(
    mode: str,
    processes: Callable[..., Any],
    upstream: FakeUpstream,
    private_redis: tuple[str, subprocess.Popen[bytes]],
) -> None:
    url, server = private_redis
    gateway = limited(upstream.url, "redis", on_error=mode)
    gw = await processes("one", gateway, {"FERRYMAN_REDIS_URL": url})
    async with aiohttp.ClientSession() as http:
        async with http.get(gw.url + "/echo/x") as response:
            assert response.status == 200
            assert response.headers["RateLimit-Remaining"] == str(LIMIT - 1)
        server.kill()
        server.wait()
        started = time.monotonic()
        statuses = []
        for _ in range(10):
            async with http.get(gw.url + "/echo/x") as response:
                statuses.append(response.status)
                body = await response.json()
        elapsed = time.monotonic() - started
    if mode == "fail_open":
        assert statuses == [200] * 10  # counted in-process meanwhile
        assert any(e["event"] == "limiter_fallback" for e in gw.lines())
        warnings = [e for e in gw.lines() if e["event"] == "limiter_fallback"]
        assert len(warnings) == 1  # logged once a minute, not per request
    else:
        assert statuses == [503] * 10
        assert body["error"] == "limiter_unavailable"
    # Never blocked beyond the limiter's timeout (50 ms) per request, plus the request.
    assert elapsed < 10 * 0.5


async def test_a_redis_that_stops_answering_costs_a_few_requests_the_timeout_then_none(
    processes: Callable[..., Any],
    upstream: FakeUpstream,
    private_redis: tuple[str, subprocess.Popen[bytes]],
) -> None:
    url, server = private_redis
    gateway = limited(upstream.url, "redis", timeout=0.05, breaker={"failures": 3})
    gw = await processes("one", gateway, {"FERRYMAN_REDIS_URL": url})
    async with aiohttp.ClientSession() as http:
        async with http.get(gw.url + "/echo/x") as response:
            assert response.status == 200
        server.send_signal(signal.SIGSTOP)  # alive, connected, silent
        try:
            timings = []
            for _ in range(10):
                started = time.monotonic()
                async with http.get(gw.url + "/echo/x") as response:
                    assert response.status == 200
                timings.append(time.monotonic() - started)
        finally:
            server.send_signal(signal.SIGCONT)
    # The first three wait out the limiter's 50 ms, then the breaker opens: Redis is
    # not asked any more and the rest are counted in-process at once.
    assert min(timings[:3]) >= 0.04, timings
    assert max(timings) < 0.5, timings
    assert statistics.median(timings[3:]) < 0.03, timings
