"""Limit accuracy through real `ferryman serve` processes: exactly L admitted out of N
concurrent requests, alone and as two processes sharing Redis, and what happens when
Redis goes away mid-run (a private redis-server this test starts and stops)."""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.fakes.upstream import FakeUpstream
from tests.support import GatewayProcess, gateway_dict

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


@pytest.fixture
async def processes(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    started: list[GatewayProcess] = []

    async def start(name: str, gateway: dict[str, Any], env: dict[str, str]) -> GatewayProcess:
        workdir = tmp_path / name
        workdir.mkdir()
        shared = {"FERRYMAN_DATA_DIR": str(tmp_path / "data"), **env}
        proc = GatewayProcess(workdir, gateway, shared)
        started.append(proc)
        return await proc.start()

    yield start
    for proc in started:
        await proc.stop()


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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    port = _free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0", proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


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


async def test_a_redis_that_stops_answering_costs_each_request_at_most_the_timeout(
    processes: Callable[..., Any],
    upstream: FakeUpstream,
    private_redis: tuple[str, subprocess.Popen[bytes]],
) -> None:
    url, server = private_redis
    gateway = limited(upstream.url, "redis", timeout=0.05)
    gw = await processes("one", gateway, {"FERRYMAN_REDIS_URL": url})
    async with aiohttp.ClientSession() as http:
        async with http.get(gw.url + "/echo/x") as response:
            assert response.status == 200
        server.send_signal(signal.SIGSTOP)  # alive, connected, silent
        try:
            timings = []
            for _ in range(5):
                started = time.monotonic()
                async with http.get(gw.url + "/echo/x") as response:
                    assert response.status == 200
                timings.append(time.monotonic() - started)
        finally:
            server.send_signal(signal.SIGCONT)
    assert max(timings) < 0.5, timings  # 50 ms of waiting, then counted in-process
    assert min(timings) >= 0.04, timings  # it did wait for Redis first
