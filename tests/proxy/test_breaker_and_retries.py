"""An upstream's circuit breaker and retries, through a served gateway and a real
upstream on loopback whose health the test switches."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from ferryman.config.settings import Settings
from tests.fakes.flaky import FlakyUpstream
from tests.support import client_session, gateway_dict, serve_app

BREAKER = {"failures": 3, "failure_rate": None, "open_for": 0.4, "max_open_for": 2}


@pytest.fixture
async def flaky() -> AsyncIterator[FlakyUpstream]:
    fake = await FlakyUpstream().start()
    yield fake
    await fake.stop()


def config(fake: FlakyUpstream, **upstream: Any) -> dict[str, Any]:
    return gateway_dict(fake.url, upstream_spec={"timeout": {"read": 0.5}, **upstream})


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, Any], str | None]:
    async with http.get(url) as r:
        return r.status, await r.json(), r.headers.get("Retry-After")


async def test_after_n_failures_calls_are_refused_without_reaching_the_upstream(
    settings: Settings, flaky: FlakyUpstream
) -> None:
    flaky.mode = "fail"
    async with serve_app(settings, config(flaky, breaker=BREAKER)) as gw, client_session() as http:
        for _ in range(3):
            assert (await get(http, f"{gw.url}/x"))[0] == 500  # the upstream's own answer
        assert flaky.hits == 3
        for _ in range(20):
            status, body, retry = await get(http, f"{gw.url}/x")
            assert (status, body["error"]) == (503, "upstream_circuit_open")
            assert retry == "1"
        assert flaky.hits == 3  # none of the 20 reached it
        async with http.get(f"{gw.url}/health") as r:
            health = await r.json()
        assert r.status == 200  # the upstream's outage is not the gateway's
        breaker = health["checks"]["upstreams"]["breakers"]["up"]
        assert breaker["state"] == "open" and breaker["refused"] == 20
        async with http.get(f"{gw.url}/metrics") as r:
            text = await r.text()
        assert 'ferryman_upstream_breaker_state{state="open",upstream="up"} 1.0' in text
        assert 'ferryman_upstream_breaker_refusals_total{upstream="up"} 20.0' in text


async def test_connection_errors_and_timeouts_count_and_client_errors_do_not(
    settings: Settings, flaky: FlakyUpstream
) -> None:
    async with serve_app(settings, config(flaky, breaker=BREAKER)) as gw, client_session() as http:
        flaky.mode = "refuse"
        for _ in range(10):
            assert (await get(http, f"{gw.url}/x"))[0] == 403
        flaky.mode = "reset"
        assert (await get(http, f"{gw.url}/x"))[0] == 502
        flaky.mode = "hang"
        assert (await get(http, f"{gw.url}/x"))[0] == 504
        flaky.mode = "reset"
        assert (await get(http, f"{gw.url}/x"))[0] == 502
        assert (await get(http, f"{gw.url}/x"))[1]["error"] == "upstream_circuit_open"


async def test_fifty_callers_in_half_open_send_exactly_one_probe_and_recovery_closes_it(
    settings: Settings, flaky: FlakyUpstream
) -> None:
    flaky.mode = "fail"
    # A read timeout well above the probe's 0.3 s: on a loaded machine, 50 callers in
    # this one process can hold the probe's answer past 0.5 s (seen in CI: it timed out,
    # and the breaker rightly opened again).
    spec = config(flaky, breaker=BREAKER, timeout={"read": 5})
    async with serve_app(settings, spec) as gw, client_session() as http:
        for _ in range(3):
            await get(http, f"{gw.url}/x")
        await asyncio.sleep(0.45)  # open_for passed: the next caller probes
        flaky.mode, flaky.delay = "ok", 0.3  # healthy again, and slow enough to overlap
        before = flaky.hits
        results = await asyncio.gather(*(get(http, f"{gw.url}/x") for _ in range(50)))
        statuses = sorted(status for status, _, _ in results)
        assert statuses == [200] + [503] * 49
        assert flaky.hits == before + 1
        flaky.delay = 0
        results = await asyncio.gather(*(get(http, f"{gw.url}/x") for _ in range(20)))
        assert [status for status, _, _ in results] == [200] * 20  # closed again


async def test_a_failed_probe_opens_it_again_for_longer(
    settings: Settings, flaky: FlakyUpstream
) -> None:
    flaky.mode = "fail"
    async with serve_app(settings, config(flaky, breaker=BREAKER)) as gw, client_session() as http:
        for _ in range(3):
            await get(http, f"{gw.url}/x")
        await asyncio.sleep(0.45)
        assert (await get(http, f"{gw.url}/x"))[0] == 500  # the probe, failing
        status, _, retry = await get(http, f"{gw.url}/x")
        assert status == 503 and retry == "1"  # 0.8 s, rounded up
        await asyncio.sleep(0.45)
        assert (await get(http, f"{gw.url}/x"))[0] == 503  # the first 0.4 s is not enough


async def test_a_websocket_handshake_goes_through_the_breaker_too(
    settings: Settings, flaky: FlakyUpstream
) -> None:
    flaky.mode, flaky.status = "fail", 502
    async with serve_app(settings, config(flaky, breaker=BREAKER)) as gw, client_session() as http:
        for _ in range(3):
            with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
                await http.ws_connect(f"{gw.url}/ws")
            assert caught.value.status == 502
        hits = flaky.hits
        with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
            await http.ws_connect(f"{gw.url}/ws")
        assert caught.value.status == 503 and flaky.hits == hits
        await asyncio.sleep(0.45)
        flaky.mode = "ok"
        async with http.ws_connect(f"{gw.url}/ws") as ws:  # the probe
            await ws.send_str("hi")
            assert (await ws.receive()).data == "hi"
        assert (await get(http, f"{gw.url}/x"))[0] == 200


async def test_idempotent_requests_are_retried_on_a_server_error(
    settings: Settings, flaky: FlakyUpstream
) -> None:
    retries = {"attempts": 2, "backoff": 0.01}
    async with serve_app(settings, config(flaky, retries=retries)) as gw, client_session() as http:
        flaky.mode, flaky.status = "fail", 503
        assert (await get(http, f"{gw.url}/x"))[0] == 503
        assert flaky.hits == 3  # the first try and two retries
        async with http.post(f"{gw.url}/x", data=b"pay once") as r:
            assert r.status == 503
        assert flaky.hits == 4  # a POST is tried once
        flaky.status = 500  # not in `when`: the upstream's answer at once
        assert (await get(http, f"{gw.url}/x"))[0] == 500
        assert flaky.hits == 5
        flaky.mode = "reset"
        assert (await get(http, f"{gw.url}/x"))[0] == 502
        # Three tries; aiohttp itself sends a try again once when the kept-alive
        # connection it used turns out dead, so each try reaches the upstream once or twice.
        assert 8 <= flaky.hits <= 11


async def test_a_retry_that_succeeds_is_the_answer_and_a_route_may_mark_posts_retryable(
    settings: Settings, flaky: FlakyUpstream
) -> None:
    gateway = config(flaky, retries={"attempts": 3, "backoff": 0.01})
    gateway["routes"][0]["retry"] = True
    async with serve_app(settings, gateway) as gw, client_session() as http:
        flaky.mode, flaky.status = "fail", 502

        async def heal() -> None:
            while flaky.hits < 2:
                await asyncio.sleep(0.001)
            flaky.mode = "ok"

        healer = asyncio.create_task(heal())
        async with http.post(f"{gw.url}/x", data=b"same body") as r:
            assert r.status == 200
            assert (await r.json())["n"] >= 2
        await healer
        assert set(flaky.bodies) == {b"same body"}  # every try carried the whole body
