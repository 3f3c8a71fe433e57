"""The pool at work in the gateway: whose keys, transport failures, probes, sync, metrics,
and a fleet sharing key health over Redis."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from ferryman.config.settings import Settings
from tests.fakes.openrouter import CHAT_PATH, KEY_PATH, FakeOpenRouter
from tests.support import Api, client_session
from tests.upstreams.conftest import pooled

A = "sk-or-v1-" + "a" * 64
B = "sk-or-v1-" + "b" * 64
C = "sk-or-v1-" + "c" * 64
CHAT = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


async def chat(url: str, **kwargs: Any) -> tuple[int, dict[str, Any], str]:
    async with client_session() as http:
        async with http.post(url + "/v1/chat/completions", **kwargs) as response:
            body = await response.read()
            label = response.headers.get("X-Fake-Key-Label", "")
            return response.status, json.loads(body) if body else {}, label


async def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_a_users_own_key_is_never_used_for_another_users_traffic(
    settings: Settings, openrouter: FakeOpenRouter
) -> None:
    openrouter.add_key(A, label="alice-own")
    openrouter.add_key(B, label="shared")
    async with pooled(settings, openrouter, {B: None}, auth=["api_key"]) as gw:
        async with client_session() as http:
            api = Api(http, gw.url)
            alice_user, alice_token = await api.user("alice")
            bob_user, bob_token = await api.user("bob")
            alice, bob = alice_user["id"], bob_user["id"]
            alice_key = (await api.new_key(alice_token))["key"]
            bob_key = (await api.new_key(bob_token))["key"]
            service = gw.app.upstream_keys
            assert service is not None
            own = await service.create(
                upstream="openrouter", name="mine", secret=A, owner_id=alice, validate=False
            )
            # Bob brings no key: an admin lends him the shared pool.
            assert gw.app.auth is not None
            await gw.app.auth.users.set_access(bob, role=None, permissions=("pool:openrouter",))
        labels: dict[str, set[str]] = {"alice": set(), "bob": set()}
        for _ in range(10):
            for who, key in (("alice", alice_key), ("bob", bob_key)):
                status, _, label = await chat(gw.url, json=CHAT, headers={"X-API-Key": key})
                assert status == 200
                labels[who].add(label)
        assert labels == {"alice": {"alice-own"}, "bob": {"shared"}}
        assert all(c.headers["authorization"] == f"Bearer {B}" for c in openrouter.calls_for(B))
        # Alice's key fails: her traffic does not spill into the operator's pool.
        openrouter.set_behaviour(A, "402")
        status, body, _ = await chat(gw.url, json=CHAT, headers={"X-API-Key": alice_key})
        assert status == 503 and body["error"] == "no_upstream_key"
        status, body, _ = await chat(gw.url, json=CHAT, headers={"X-API-Key": alice_key})
        assert "your upstream keys" in body["message"]
        status, _, label = await chat(gw.url, json=CHAT, headers={"X-API-Key": bob_key})
        assert (status, label) == (200, "shared")
        assert own.owner_id == alice and bob != alice


async def test_a_hanging_or_resetting_key_fails_over_and_opens_its_breaker(
    settings: Settings, openrouter: FakeOpenRouter
) -> None:
    openrouter.add_key(A, label="hangs", behaviour="hang")
    openrouter.add_key(B, label="resets", behaviour="reset")
    openrouter.add_key(C, label="works")
    async with pooled(
        settings,
        openrouter,
        {A: None, B: None, C: None},
        failure_threshold=1,
        timeout_read=0.3,
    ) as gw:
        started = time.monotonic()
        status, _, label = await chat(gw.url, json=CHAT)
        assert (status, label) == (200, "works")
        assert time.monotonic() - started < 2
        assert gw.app.keyring is not None
        states = {k.name: k.state.value for k in gw.app.keyring.every_key()}
        assert states == {"key-0": "cooling_down", "key-1": "cooling_down", "key-2": "healthy"}
        calls = len(openrouter.requests)
        for _ in range(5):
            assert (await chat(gw.url, json=CHAT))[2] == "works"
        assert len(openrouter.requests) == calls + 5  # no more attempts on the failed keys


async def test_server_errors_fail_over_and_the_last_one_is_passed_through(
    settings: Settings, openrouter: FakeOpenRouter
) -> None:
    openrouter.add_key(A, label="500", behaviour="500")
    openrouter.add_key(B, label="works")
    async with pooled(settings, openrouter, {A: None, B: None}) as gw:
        assert (await chat(gw.url, json=CHAT))[::2] == (200, "works")
        openrouter.set_behaviour(B, "503")
        status, body, _ = await chat(gw.url, json=CHAT)
    # Both keys answered with their upstream's own error: that answer is the client's.
    assert status in (500, 503)
    assert "error" in body and body["error"]["code"] == status


async def test_a_body_too_large_to_replay_is_sent_once_and_a_key_failure_says_why(
    settings: Settings, openrouter: FakeOpenRouter
) -> None:
    openrouter.add_key(A, behaviour="429")
    openrouter.add_key(B, label="works")
    # The route buffers 32 bytes, the pool replays 64: a larger body streams on.
    streams = {"request_body": {"buffer": 32}}
    async with pooled(
        settings, openrouter, {A: None, B: None}, replay_limit=64, route_extra=streams
    ) as gw:

        async def pieces() -> Any:
            for _ in range(4):
                yield b" " * 40
                await asyncio.sleep(0.05)  # arrives in pieces: not whole in memory
            yield json.dumps(CHAT).encode()

        status, body, _ = await chat(
            gw.url, data=pieces(), headers={"Content-Type": "application/json"}
        )
        assert status == 503
        assert "cannot be replayed" in body["message"]
        # A small body fails over as usual.
        assert (await chat(gw.url, json=CHAT))[::2] == (200, "works")


async def test_a_buffered_body_is_replayed_whatever_its_size(
    settings: Settings, openrouter: FakeOpenRouter
) -> None:
    openrouter.add_key(A, behaviour="429")
    openrouter.add_key(B, label="works")
    # Read whole before any upstream is asked (request_body.buffer, 1 MiB), the body is
    # in memory: the replay limit does not apply to it.
    async with pooled(settings, openrouter, {A: None, B: None}, replay_limit=64) as gw:
        padded = json.dumps(CHAT).encode() + b" " * 4000
        status, _, label = await chat(
            gw.url, data=padded, headers={"Content-Type": "application/json"}
        )
    assert (status, label) == (200, "works")


async def test_the_probe_restores_a_key_and_the_sync_stores_its_usage(
    settings_factory: Callable[..., Settings], openrouter: FakeOpenRouter
) -> None:
    openrouter.add_key(A, label="a", usage=1.5, limit=10.0, behaviour="429")
    openrouter.credits = (25.0, 4.0)
    settings = settings_factory(upstream_sync_interval=0.2)
    async with pooled(settings, openrouter, {A: None}, probe_interval=0.2) as gw:
        status, _, _ = await chat(gw.url, json=CHAT)
        assert status == 503  # rate-limited, no other key
        keyring = gw.app.keyring
        assert keyring is not None
        (key,) = keyring.every_key()
        assert key.state.value == "cooling_down"
        await wait_for(lambda: key.state.value == "healthy")  # /key answers 200: restored
        assert any(c.path == KEY_PATH for c in openrouter.requests)
        openrouter.set_behaviour(A, "ok")
        assert (await chat(gw.url, json=CHAT))[0] == 200
        service = gw.app.upstream_keys
        assert service is not None

        async def synced() -> bool:
            (view,) = await service.listing(owner_id=None, everyone=True)
            return view.row.credits_total == 25.0

        deadline = time.monotonic() + 5
        while not await synced():
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        (view,) = await service.listing(owner_id=None, everyone=True)
        row = view.row
        assert (row.usage, row.credit_limit, row.credits_used) == (1.5, 10.0, 4.0)
        assert row.limit_remaining == 8.5
        assert row.request_count == 2 and row.failure_count == 1
        async with client_session() as http:
            async with http.get(gw.url + "/health/ready") as response:
                ready = await response.json()
            async with http.get(gw.url + "/metrics") as response:
                metrics = await response.text()
        jobs = ready["checks"]["jobs"]["jobs"]
        assert jobs["upstream_key_sync"]["last_success"] is not None
        assert jobs["upstream_probe:openrouter"]["last_success"] is not None
        assert 'ferryman_job_last_success_timestamp_seconds{job="upstream_key_sync"}' in metrics
        label = f'key_id="{key.id}",key_name="key-0"'
        up = 'upstream="openrouter"'
        assert f"ferryman_upstream_key_requests_total{{{label},{up}}} 2.0" in metrics
        assert f'failures_total{{{label},reason="rate_limited",{up}}} 1.0' in metrics
        assert f'key_state{{{label},state="healthy",{up}}} 1.0' in metrics
        assert f'key_state{{{label},state="cooling_down",{up}}} 0.0' in metrics
        assert A not in metrics and A[-12:] not in metrics


async def test_a_failing_probe_round_is_logged_and_the_job_keeps_running(
    settings: Settings, openrouter: FakeOpenRouter
) -> None:
    openrouter.add_key(A, behaviour="hang")
    async with pooled(settings, openrouter, {A: None}, probe_interval=0.1, timeout_read=0.1) as gw:
        job = next(t for t in gw.app.tasks if t.name == "upstream_probe:openrouter")
        await wait_for(lambda: job.failures >= 2)
        assert job.last_error is not None and "could not be asked about" in job.last_error
        openrouter.set_behaviour(A, "ok")
        await wait_for(lambda: job.last_success is not None)
        async with client_session() as http:
            async with http.get(gw.url + "/health/ready") as response:
                assert response.status == 200  # a provider outage is not unreadiness


async def test_chat_calls_carry_only_the_pool_key(
    settings: Settings, openrouter: FakeOpenRouter
) -> None:
    openrouter.add_key(A, label="a")
    async with pooled(settings, openrouter, {A: None}) as gw:
        await chat(gw.url, json=CHAT, headers={"Authorization": "Bearer sk-client-own-0000"})
    (call,) = [c for c in openrouter.requests if c.path == CHAT_PATH]
    assert call.headers["authorization"] == f"Bearer {A}"
