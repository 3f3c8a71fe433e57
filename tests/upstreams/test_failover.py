"""Failover between pool keys, through the gateway, against the fake OpenRouter."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ferryman.config.settings import Settings
from ferryman.upstreams.pool import PoolKey
from tests.fakes.openrouter import CHAT_PATH, FakeOpenRouter
from tests.support import client_session
from tests.upstreams.conftest import pooled

GOOD = "sk-or-v1-" + "g" * 64
INVALID = "sk-or-v1-" + "i" * 64
LIMITED = "sk-or-v1-" + "l" * 64
BROKE = "sk-or-v1-" + "b" * 64

CHAT = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def chat_calls(fake: FakeOpenRouter, key: str) -> list[Any]:
    return [c for c in fake.calls_for(key) if c.path == CHAT_PATH]


async def test_two_failed_keys_of_three_cost_no_client_request_and_are_never_used_again(
    settings: Settings, openrouter: FakeOpenRouter
) -> None:
    openrouter.add_key(GOOD, label="good")
    openrouter.add_key(INVALID, label="invalid", behaviour="401")
    openrouter.add_key(LIMITED, label="limited", behaviour="429", retry_after="3600")
    keys = {INVALID: None, LIMITED: None, GOOD: None}
    async with pooled(settings, openrouter, keys) as gw, client_session() as http:
        assert gw.app.keyring is not None
        pool = gw.app.keyring.pools["openrouter"]
        choose = pool.choose
        chosen_in_state: list[tuple[str, str]] = []

        def watched(
            user: str | None, tried: Sequence[PoolKey] = (), shared: bool = True
        ) -> PoolKey | None:
            key = choose(user, tried, shared)
            if key is not None:
                chosen_in_state.append((key.name, key.state.value))
            return key

        pool.choose = watched  # type: ignore[method-assign]

        async def ask() -> tuple[int, str]:
            async with http.post(gw.url + "/v1/chat/completions", json=CHAT) as response:
                await response.read()
                return response.status, response.headers.get("X-Fake-Key-Label", "")

        results = await asyncio.gather(*(ask() for _ in range(200)))

    assert [status for status, _ in results] == [200] * 200
    assert {label for _, label in results} == {"good"}
    assert openrouter.served_by(GOOD) == 200
    # Requests already on their way when a key failed may have chosen it; once the
    # failure is known, no request chooses it again.
    assert {state for _, state in chosen_in_state} == {"healthy"}
    for key in (INVALID, LIMITED):
        assert chat_calls(openrouter, key), f"{key[:12]} was never tried"
    failed = [name for name, _ in chosen_in_state if name != "key-2"]
    assert len(failed) == len(chat_calls(openrouter, INVALID) + chat_calls(openrouter, LIMITED))


async def test_a_failed_key_is_not_chosen_again_by_later_requests(
    settings: Settings, openrouter: FakeOpenRouter
) -> None:
    openrouter.add_key(GOOD, label="good")
    openrouter.add_key(INVALID, label="invalid", behaviour="401")
    openrouter.add_key(LIMITED, label="limited", behaviour="429", retry_after="3600")
    keys = {INVALID: None, LIMITED: None, GOOD: None}
    async with pooled(settings, openrouter, keys) as gw, client_session() as http:
        for _ in range(30):  # one by one: every failure is known before the next request
            async with http.post(gw.url + "/v1/chat/completions", json=CHAT) as response:
                assert response.status == 200
        assert gw.app.keyring is not None
        states = {k.name: k.state.value for k in gw.app.keyring.every_key()}
    assert len(chat_calls(openrouter, INVALID)) == 1
    assert len(chat_calls(openrouter, LIMITED)) == 1
    assert states == {"key-0": "invalid", "key-1": "cooling_down", "key-2": "healthy"}


async def test_the_client_credential_never_reaches_the_provider_the_pool_key_does(
    settings: Settings, openrouter: FakeOpenRouter
) -> None:
    openrouter.add_key(GOOD, label="good")
    async with pooled(settings, openrouter, {GOOD: None}) as gw, client_session() as http:
        headers = {"Authorization": "Bearer client-secret-value-123"}
        async with http.post(
            gw.url + "/v1/chat/completions", json=CHAT, headers=headers
        ) as response:
            assert response.status == 200
    (call,) = chat_calls(openrouter, GOOD)
    assert call.headers["authorization"] == f"Bearer {GOOD}"


async def test_a_stream_that_breaks_after_its_first_byte_is_not_retried(
    settings: Settings, openrouter: FakeOpenRouter
) -> None:
    openrouter.add_key(BROKE, label="broke", behaviour="reset_midway")
    openrouter.add_key(GOOD, label="good")
    async with pooled(settings, openrouter, {BROKE: None, GOOD: None}) as gw:
        async with client_session() as http:
            received = b""
            async with http.post(
                gw.url + "/v1/chat/completions", json={**CHAT, "stream": True}
            ) as response:
                assert response.status == 200
                assert response.headers["X-Fake-Key-Label"] == "broke"
                try:
                    async for chunk in response.content.iter_any():
                        received += chunk
                except Exception:  # the gateway closes the connection without an end
                    pass
        assert received.startswith(b"data: ")
        assert b"[DONE]" not in received
        await asyncio.sleep(0.05)
        assert chat_calls(openrouter, GOOD) == []  # never replayed on another key
        assert gw.app.keyring is not None
        failed = {key.name: key.failed for key in gw.app.keyring.every_key()}
        assert failed == {"key-0": 1, "key-1": 0}  # the breakage counts against its key


async def test_with_every_key_down_the_client_gets_a_503_that_says_so(
    settings: Settings, openrouter: FakeOpenRouter
) -> None:
    openrouter.add_key(INVALID, behaviour="401")
    openrouter.add_key(LIMITED, behaviour="429", retry_after="120")
    openrouter.add_key(BROKE, behaviour="402")
    keys = {INVALID: None, LIMITED: None, BROKE: None}
    async with pooled(settings, openrouter, keys) as gw, client_session() as http:
        async with http.post(gw.url + "/v1/chat/completions", json=CHAT) as first:
            body = json.loads(await first.read())
            assert first.status == 503, body
        assert body["error"] == "no_upstream_key"
        assert "tried 3" in body["message"]
        assert set(body) == {"error", "message", "correlation_id", "timestamp"}
        # Now known to be down: refused without asking the provider again.
        calls = len(openrouter.requests)
        async with http.post(gw.url + "/v1/chat/completions", json=CHAT) as second:
            again = json.loads(await second.read())
            assert second.status == 503
            retry_after = int(second.headers["Retry-After"])
        assert len(openrouter.requests) == calls
        assert "no healthy upstream key is left" in again["message"]
        assert "1 cooling down" in again["message"] and "1 invalid" in again["message"]
        assert 1 <= retry_after <= 120
    for key in (INVALID, LIMITED, BROKE):
        assert key not in json.dumps(body) + json.dumps(again)


async def test_no_keys_at_all_is_a_503_naming_the_upstream(
    settings: Settings, openrouter: FakeOpenRouter
) -> None:
    async with pooled(settings, openrouter) as gw, client_session() as http:
        async with http.post(gw.url + "/v1/chat/completions", json=CHAT) as response:
            body = json.loads(await response.read())
    assert response.status == 503
    assert body["message"] == "no upstream key is configured for 'openrouter'"
    assert openrouter.requests == []


async def test_a_403_for_the_request_leaves_a_valid_key_in_the_pool(
    settings_factory: Callable[..., Settings], openrouter: FakeOpenRouter, tmp_path: Path
) -> None:
    settings = settings_factory(data_dir=tmp_path / "one")
    # OpenRouter answers flagged input with 403: a client must not be able to knock the
    # operator's keys out of the pool by sending such requests.
    openrouter.add_key(GOOD, label="good", behaviour="moderation")
    openrouter.add_key(LIMITED, label="other", behaviour="moderation")
    async with pooled(settings, openrouter, {GOOD: None, LIMITED: None}) as gw:
        async with client_session() as http:
            for _ in range(4):
                async with http.post(gw.url + "/v1/chat/completions", json=CHAT) as response:
                    body = json.loads(await response.read())
                    assert response.status == 403  # the provider's own answer
                    assert "moderation" in body["error"]["message"]
        assert gw.app.keyring is not None
        assert {k.state.value for k in gw.app.keyring.every_key()} == {"healthy"}
    assert len(chat_calls(openrouter, GOOD)) + len(chat_calls(openrouter, LIMITED)) == 4
    # ...while a key the provider no longer knows is taken out after its 403.
    openrouter.set_behaviour(GOOD, "403")
    other = settings_factory(data_dir=tmp_path / "two")
    async with pooled(other, openrouter, {GOOD: None}) as gw, client_session() as http:
        async with http.post(gw.url + "/v1/chat/completions", json=CHAT) as response:
            assert response.status == 503
        assert gw.app.keyring is not None
        assert [k.state.value for k in gw.app.keyring.every_key()] == ["invalid"]
