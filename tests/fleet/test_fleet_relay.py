"""The chat relay in a fleet: a session made on one instance works on the other, and
its limits are counted across both (PostgreSQL and Redis, nothing else shared)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from tests.fakes.n8n import FakeN8n
from tests.fleet.conftest import Start
from tests.relay.support import create_session, relay_env, relay_gateway, send_message
from tests.support import client_session


@pytest.fixture
async def n8n() -> AsyncIterator[FakeN8n]:
    fake = await FakeN8n().start()
    yield fake
    await fake.stop()


async def test_a_session_and_its_limits_span_the_fleet(fleet: Start, n8n: FakeN8n) -> None:
    n8n.mode = "ndjson"
    gateway = relay_gateway(limits={"session": ["3/minute"], "ip": ["100/minute"]})
    one, two = await fleet(2, gateway, **relay_env(n8n))
    async with client_session() as http:
        session_id, token, _ = await create_session(http, one.url)
        statuses = [
            (await send_message(http, gw.url, token, f"m{i}")).status
            for i, gw in enumerate((two, one, two, one))
        ]
        assert statuses == [200, 200, 200, 429]  # counted per instance, the 4th would pass
        mine = {"Origin": "https://shop.example", "Cookie": f"chat_session_id={token}"}
        # Written by both instances; each reads what the other has flushed (every 0.5 s).
        deadline = time.monotonic() + 3
        while True:
            async with http.get(f"{two.url}/api/v1/chat/history/{session_id}", headers=mine) as r:
                messages = (await r.json())["messages"]
            users = sorted(m["content"] for m in messages if m["role"] == "user")
            if users == ["m0", "m1", "m2"] or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
    assert users == ["m0", "m1", "m2"] and len(messages) == 6
    assert [r.body["sessionId"] for r in n8n.requests] == [session_id] * 3
