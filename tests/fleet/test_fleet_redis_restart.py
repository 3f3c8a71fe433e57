"""Redis going away under a fleet and coming back (a redis-server of the test's own,
killed and started again on the same port): no request waits on it beyond the
limiter's timeout meanwhile, and once it is back the instances count together again."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.fakes.upstream import FakeUpstream
from tests.fleet.conftest import Start
from tests.support import GatewayProcess, gateway_dict

TIMEOUT = 0.05


class RedisServer:
    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed")
        self.binary, self.directory = binary, directory
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.kill()


async def remaining(http: aiohttp.ClientSession, gw: GatewayProcess, tag: str) -> int:
    """The RateLimit-Remaining of one request (200 expected)."""
    async with http.get(gw.url + "/echo/x", headers={"X-Request-ID": tag}) as response:
        await response.read()
        assert response.status == 200
        return int(response.headers["RateLimit-Remaining"])


def own_ms(instances: list[GatewayProcess], prefix: str) -> list[float]:
    """The gateway's own time (duration less upstream) of each request tagged `prefix`."""
    return [
        e["duration_ms"] - (e["upstream_total_ms"] or 0)
        for gw in instances
        for e in gw.lines()
        if e.get("event") == "request" and e["correlation_id"].startswith(prefix)
    ]


async def test_redis_gone_and_back_costs_no_wait_and_sharing_resumes(
    fleet: Start, upstream: FakeUpstream, own_redis: RedisServer
) -> None:
    gateway: dict[str, Any] = gateway_dict(upstream.url, limits=["100/minute"])
    gateway["limiter"] = {
        "timeout": TIMEOUT,
        "breaker": {"failures": 3, "cooloff": 0.5, "max_cooloff": 1},
    }
    one, two = await fleet(2, gateway, FERRYMAN_REDIS_URL=own_redis.url)
    async with aiohttp.ClientSession() as http:
        # Shared: the instances count down one budget.
        assert [await remaining(http, gw, f"a-{i}") for i, gw in enumerate((one, two, one))] == [
            99,
            98,
            97,
        ]
        own_redis.kill()
        # Gone: each instance counts on its own meanwhile (fail_open), at once.
        during = [await remaining(http, gw, f"b-{i}") for i, gw in enumerate((one, two) * 10)]
        assert during[:2] == [99, 99]  # their own counts, from scratch
        own_redis.start()  # empty: a restarted Redis without persistence
        # Back: after a cool-off one request probes it and the breaker closes.
        deadline = time.monotonic() + 10
        while True:
            counts = [await remaining(http, gw, f"c-{i}") for i, gw in enumerate((one, two, one))]
            if counts[1] == counts[0] - 1 and counts[2] == counts[1] - 1:
                break  # one count again, whichever instance asks
            assert time.monotonic() < deadline, counts
            await asyncio.sleep(0.2)
        assert counts[0] <= 99
    await asyncio.sleep(0.3)  # access lines are written in batches
    waited = own_ms([one, two], "b-")
    assert len(waited) == 20
    # Not one request of the outage waited out more than the limiter's timeout (plus
    # 100 ms for a busy machine): a refused connection fails at once, and after three
    # failures the breaker stops asking.
    assert max(waited) < (TIMEOUT + 0.1) * 1000, waited
