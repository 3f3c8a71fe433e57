"""Two instances sharing a database and Redis share their key pool's health and changes."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

from ferryman.config.settings import Settings
from tests.fakes.openrouter import FakeOpenRouter
from tests.support import client_session, serve_app
from tests.upstreams.conftest import pooled_gateway

A = "sk-or-v1-" + "f" * 64
B = "sk-or-v1-" + "e" * 64
CHAT = {"model": "m", "messages": []}


async def test_a_key_failing_on_one_instance_is_dropped_by_the_other_and_new_keys_spread(
    settings_factory: Callable[..., Settings], openrouter: FakeOpenRouter, redis_url: str
) -> None:
    openrouter.add_key(A, label="a", behaviour="401")
    openrouter.add_key(B, label="b")
    settings = settings_factory(
        redis_url=redis_url,
        redis_prefix=f"ferryman-test-{uuid.uuid4().hex[:8]}:",
        upstream_refresh_interval=3600,  # only the broadcast can carry changes in time
    )
    gateway = pooled_gateway(openrouter.base_url)
    async with serve_app(settings, gateway) as one, serve_app(settings, gateway) as two:
        assert one.app.upstream_keys is not None and two.app.keyring is not None
        await one.app.upstream_keys.create(
            upstream="openrouter", name="a", secret=A, owner_id=None, validate=False
        )
        deadline = time.monotonic() + 1
        while not list(two.app.keyring.every_key()):
            assert time.monotonic() < deadline, "the new key did not reach the other instance"
            await asyncio.sleep(0.01)
        async with client_session() as http:
            async with http.post(one.url + "/v1/chat/completions", json=CHAT) as response:
                assert response.status == 503  # its only key is refused: now invalid
            (theirs,) = two.app.keyring.every_key()
            deadline = time.monotonic() + 1
            while theirs.state.value != "invalid":
                assert time.monotonic() < deadline, "the failure did not reach the other instance"
                await asyncio.sleep(0.01)
            calls = len(openrouter.calls_for(A))
            async with http.post(two.url + "/v1/chat/completions", json=CHAT) as response:
                assert response.status == 503
            assert len(openrouter.calls_for(A)) == calls  # not tried again by the other
            await two.app.upstream_keys.create(  # type: ignore[union-attr]
                upstream="openrouter", name="b", secret=B, owner_id=None, validate=False
            )
            await asyncio.sleep(0.2)
            async with http.post(one.url + "/v1/chat/completions", json=CHAT) as response:
                assert response.status == 200
                assert response.headers["X-Fake-Key-Label"] == "b"
