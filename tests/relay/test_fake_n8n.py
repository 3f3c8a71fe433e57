"""The fake n8n chat webhook answers in each of the shapes the relay must understand."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.fakes.n8n import FakeN8n

MESSAGE: dict[str, Any] = {
    "action": "sendMessage",
    "sessionId": "session-1",
    "chatInput": "Hi there",
    "metadata": {"source": "test"},
}


@pytest.fixture
async def n8n() -> AsyncIterator[FakeN8n]:
    fake = await FakeN8n().start()
    yield fake
    await fake.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def test_json_mode_answers_the_whole_output(
    n8n: FakeN8n, session: aiohttp.ClientSession
) -> None:
    async with session.post(n8n.webhook_url, json=MESSAGE) as response:
        assert response.status == 200
        assert await response.json() == {"output": "Hello, world!"}
    assert len(n8n.finished_at) == 1


async def test_ndjson_mode_streams_begin_items_end_and_records_the_request(
    n8n: FakeN8n, session: aiohttp.ClientSession
) -> None:
    n8n.mode = "ndjson"
    async with session.post(n8n.webhook_url, json=MESSAGE, headers={"X-Test": "yes"}) as response:
        assert response.status == 200
        assert response.content_type == "application/json"
        lines = [json.loads(line) async for line in response.content if line.strip()]
    assert [line["type"] for line in lines] == ["begin", "item", "item", "item", "item", "end"]
    assert [line["content"] for line in lines[1:-1]] == ["Hello", ", ", "world", "!"]
    assert all("metadata" in line for line in lines)
    [recorded] = n8n.requests
    assert recorded.body == MESSAGE
    assert recorded.headers["X-Test"] == "yes"
    assert recorded.received_at <= n8n.finished_at[0]


async def test_ndjson_first_piece_arrives_before_the_workflow_finished(
    n8n: FakeN8n, session: aiohttp.ClientSession
) -> None:
    n8n.mode = "ndjson"
    n8n.interval = 0.05
    async with session.post(n8n.webhook_url, json=MESSAGE) as response:
        await response.content.readline()  # begin
        first = json.loads(await response.content.readline())
        first_at = time.monotonic()
        await response.read()
    assert first == {"type": "item", "content": "Hello", "metadata": first["metadata"]}
    assert first_at < n8n.finished_at[0]


async def test_sse_mode_sends_the_same_objects_as_events(
    n8n: FakeN8n, session: aiohttp.ClientSession
) -> None:
    n8n.mode = "sse"
    async with session.post(n8n.webhook_url, json=MESSAGE) as response:
        assert response.content_type == "text/event-stream"
        text = await response.text()
    events = [block for block in text.split("\n\n") if block]
    assert all(event.startswith("data: ") for event in events)
    objects = [json.loads(event.removeprefix("data: ")) for event in events]
    assert [obj["type"] for obj in objects] == ["begin", "item", "item", "item", "item", "end"]
    assert "".join(obj["content"] for obj in objects[1:-1]) == "Hello, world!"


async def test_status_mode_fails_the_workflow(n8n: FakeN8n, session: aiohttp.ClientSession) -> None:
    n8n.mode = "status"
    async with session.post(n8n.webhook_url, json=MESSAGE) as response:
        assert response.status == 500
        assert await response.json() == {"message": "Workflow could not be started"}


async def test_other_paths_are_not_found(n8n: FakeN8n, session: aiohttp.ClientSession) -> None:
    async with session.post(n8n.url + "/webhook/other", json=MESSAGE) as response:
        assert response.status == 404
    assert n8n.requests == []


async def test_hang_mode_ends_promptly_on_stop(
    n8n: FakeN8n, session: aiohttp.ClientSession
) -> None:
    n8n.mode = "hang"

    async def post() -> int:
        async with session.post(n8n.webhook_url, json=MESSAGE) as response:
            await response.read()
            return response.status

    task = asyncio.create_task(post())
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(task), timeout=0.1)
    assert len(n8n.requests) == 1
    assert not n8n.finished_at

    started = time.monotonic()
    await n8n.stop()
    with contextlib.suppress(aiohttp.ClientError):
        await asyncio.wait_for(task, timeout=0.5)
    assert time.monotonic() - started < 0.5
