"""The fake OpenRouter itself: shapes, failures and recording are what the gateway tests expect."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest

from tests.fakes.openrouter import CHAT_PATH, FakeOpenRouter
from tests.support import client_session


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_key_endpoint_shape_for_ok_key(openrouter: FakeOpenRouter) -> None:
    openrouter.add_key("k-ok", label="primary", usage=1.5, limit=10.0)
    assert openrouter.base_url == f"http://127.0.0.1:{openrouter.port}/api/v1"
    async with client_session() as http:
        async with http.get(f"{openrouter.base_url}/key", headers=auth("k-ok")) as r:
            assert r.status == 200
            body = await r.json()
        async with http.get(f"{openrouter.base_url}/credits", headers=auth("k-ok")) as r:
            assert r.status == 200
            assert await r.json() == {"data": {"total_credits": 100.0, "total_usage": 0.0}}
    assert body == {
        "data": {
            "label": "primary",
            "usage": 1.5,
            "usage_daily": 0.0,
            "limit": 10.0,
            "limit_remaining": 8.5,
            "is_free_tier": False,
            "rate_limit": {"requests": 10, "interval": "10s"},
        }
    }
    [call, _] = openrouter.calls_for("k-ok")
    assert (call.method, call.path, call.status) == ("GET", "/api/v1/key", 200)
    assert call.headers["authorization"] == "Bearer k-ok"


async def test_unknown_missing_and_401_keys_are_401(openrouter: FakeOpenRouter) -> None:
    openrouter.add_key("k-revoked", behaviour="401")
    async with client_session() as http:
        for headers in (auth("k-nope"), {}, {"Authorization": "Basic abc"}, auth("k-revoked")):
            async with http.get(f"{openrouter.base_url}/key", headers=headers) as r:
                assert r.status == 401
                body = await r.json()
                assert body["error"]["code"] == 401 and body["error"]["message"]
    assert [call.key for call in openrouter.requests] == ["k-nope", None, None, "k-revoked"]
    assert all(call.status == 401 for call in openrouter.requests)


async def test_429_has_retry_after_but_the_key_still_validates(
    openrouter: FakeOpenRouter,
) -> None:
    openrouter.add_key("k-busy", behaviour="429", retry_after="7")
    openrouter.add_key("k-busy-bare", behaviour="429")
    async with client_session() as http:
        async with http.post(
            f"{openrouter.base_url}/chat/completions", headers=auth("k-busy"), json={}
        ) as r:
            assert r.status == 429
            assert r.headers["Retry-After"] == "7"
            assert (await r.json())["error"]["code"] == 429
        async with http.get(f"{openrouter.base_url}/models", headers=auth("k-busy-bare")) as r:
            assert r.status == 429
            assert "Retry-After" not in r.headers
        async with http.get(f"{openrouter.base_url}/key", headers=auth("k-busy")) as r:
            assert r.status == 200


async def test_402_key_shows_no_credit_left(openrouter: FakeOpenRouter) -> None:
    openrouter.add_key("k-broke", usage=3.0, behaviour="402")
    async with client_session() as http:
        async with http.get(f"{openrouter.base_url}/key", headers=auth("k-broke")) as r:
            data = (await r.json())["data"]
            assert (r.status, data["limit"], data["limit_remaining"]) == (200, 3.0, 0.0)
        async with http.post(
            f"{openrouter.base_url}/chat/completions", headers=auth("k-broke"), json={}
        ) as r:
            assert r.status == 402
        async with http.get(f"{openrouter.base_url}/nowhere", headers=auth("k-broke")) as r:
            assert r.status == 402
    openrouter.set_behaviour("k-broke", "ok")
    async with client_session() as http:
        async with http.get(f"{openrouter.base_url}/nowhere", headers=auth("k-broke")) as r:
            assert r.status == 404
            assert (await r.json())["error"]["code"] == 404


async def test_reset_drops_the_connection(openrouter: FakeOpenRouter) -> None:
    openrouter.add_key("k-reset", behaviour="reset")
    async with client_session() as http:
        with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
            async with http.get(f"{openrouter.base_url}/key", headers=auth("k-reset")) as r:
                await r.read()
    assert openrouter.calls_for("k-reset")[0].status == 0


async def test_json_completion_has_usage_and_label(openrouter: FakeOpenRouter) -> None:
    openrouter.add_key("k-a", label="alpha")
    openrouter.add_key("k-b", label="beta")
    request = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    async with client_session() as http:
        async with http.post(
            f"{openrouter.base_url}/chat/completions",
            headers={**auth("k-b"), "HTTP-Referer": "https://ferryman.test"},
            json=request,
        ) as r:
            assert r.status == 200
            assert r.headers["X-Fake-Key-Label"] == "beta"
            body = await r.json()
        async with http.post(
            f"{openrouter.base_url}/chat/completions",
            headers={**auth("k-b"), "Content-Type": "application/json"},
            data=b"{not json",
        ) as r:
            assert r.status == 400
            assert (await r.json())["error"]["code"] == 400
    assert body["model"] == "openai/gpt-4o-mini"
    assert body["choices"][0]["message"]["content"]
    assert body["usage"] == {
        "prompt_tokens": 5,
        "completion_tokens": 3,
        "total_tokens": 8,
        "cost": 0.0001,
    }
    assert (openrouter.served_by("k-b"), openrouter.served_by("k-a")) == (1, 0)
    assert openrouter.calls_for("k-b")[0].headers["http-referer"] == "https://ferryman.test"


async def test_charging_bills_each_completion_to_its_key(openrouter: FakeOpenRouter) -> None:
    openrouter.add_key("k-paid", usage=2.0, limit=10.0)
    request = {"model": "openai/gpt-4o-mini", "messages": []}

    async def complete(**extra: object) -> None:
        async with http.post(
            f"{openrouter.base_url}/chat/completions",
            headers=auth("k-paid"),
            json={**request, **extra},
        ) as r:
            assert r.status == 200
            await r.read()

    async with client_session() as http:
        await complete()  # not charging yet
        openrouter.charge = True
        await complete()
        await complete(stream=True)
        async with http.get(f"{openrouter.base_url}/key", headers=auth("k-paid")) as r:
            data = (await r.json())["data"]
    assert data["usage"] == pytest.approx(2.0002)
    assert data["usage_daily"] == pytest.approx(0.0002)
    assert data["limit_remaining"] == pytest.approx(7.9998)


async def read_events(response: aiohttp.ClientResponse, into: list[str]) -> None:
    async for line in response.content:
        if line.startswith(b"data: "):
            into.append(line[len(b"data: ") :].decode().strip())


async def test_streaming_completion(openrouter: FakeOpenRouter) -> None:
    openrouter.add_key("k-s", label="streamer")
    events: list[str] = []
    async with client_session() as http:
        started = time.monotonic()
        async with http.post(
            f"{openrouter.base_url}/chat/completions",
            headers=auth("k-s"),
            json={"model": "m", "stream": True, "x_chunks": 4, "x_interval": 0.02},
        ) as r:
            assert r.status == 200
            assert r.headers["Content-Type"].startswith("text/event-stream")
            assert r.headers["X-Fake-Key-Label"] == "streamer"
            await read_events(r, events)
    assert time.monotonic() - started >= 0.06
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert [c["choices"][0]["delta"]["content"] for c in chunks[:-1]] == ["tok"] * 4
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == 4
    assert chunks[-1]["usage"]["total_tokens"] == 9
    assert openrouter.served_by("k-s") == 1


async def test_reset_midway_cuts_the_stream_after_one_chunk(
    openrouter: FakeOpenRouter,
) -> None:
    openrouter.add_key("k-cut", behaviour="reset_midway")
    events: list[str] = []
    async with client_session() as http:
        async with http.post(
            f"{openrouter.base_url}/chat/completions",
            headers=auth("k-cut"),
            json={"stream": True, "x_chunks": 5},
        ) as r:
            assert r.status == 200
            with pytest.raises(aiohttp.ClientPayloadError):
                await read_events(r, events)
    assert len(events) == 1
    assert json.loads(events[0])["choices"][0]["delta"]["content"] == "tok"
    assert openrouter.served_by("k-cut") == 0
    assert openrouter.calls_for("k-cut")[0].path == CHAT_PATH


async def test_hang_is_cancelled_when_the_client_gives_up(openrouter: FakeOpenRouter) -> None:
    openrouter.add_key("k-hang", behaviour="hang")
    async with client_session() as http:
        with pytest.raises(asyncio.TimeoutError):
            async with http.post(
                f"{openrouter.base_url}/chat/completions",
                headers=auth("k-hang"),
                json={},
                timeout=aiohttp.ClientTimeout(total=0.2),
            ) as r:
                await r.read()
    assert openrouter.hang_started.is_set()
    await asyncio.wait_for(openrouter.hang_cancelled.wait(), 2)
    assert openrouter.hangs_cancelled == 1
    assert openrouter.calls_for("k-hang")[0].status == 0
