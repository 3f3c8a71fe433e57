"""Metered answers as they stream: the first event reaches the client while the
upstream is still writing; a JSON answer too large to read whole first still yields its
usage; `stream_usage` asks the upstream for the usage chunk."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from ferryman.config.loading import parse_gateway
from ferryman.config.settings import Settings
from ferryman.errors import ConfigError
from ferryman.store.tables import usage_records
from tests.fakes.openrouter import PROMPT_TOKENS, FakeOpenRouter
from tests.metering.test_records import rows
from tests.support import client_session
from tests.upstreams.conftest import pooled, pooled_gateway

KEY = "sk-or-v1-" + "s" * 64
CHAT = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
URL = "/v1/chat/completions"


@pytest.fixture
async def openrouter() -> AsyncIterator[FakeOpenRouter]:
    fake = await FakeOpenRouter().start()
    fake.add_key(KEY, label="k")
    yield fake
    await fake.stop()


async def test_the_first_event_reaches_the_client_before_the_upstream_has_finished(
    settings: Settings, openrouter: FakeOpenRouter
) -> None:
    chunks, interval = 4, 0.5
    async with pooled(settings, openrouter, {KEY: None}, route_extra={"meter": "llm"}) as gw:
        async with client_session() as http:
            started = time.monotonic()
            body = {**CHAT, "stream": True, "x_chunks": chunks, "x_interval": interval}
            async with http.post(gw.url + URL, json=body) as response:
                first = await response.content.readany()
                first_at = time.monotonic() - started
                rest = await response.read()
                ended_at = time.monotonic() - started
        records = await rows(gw, usage_records)
    # The upstream spends (chunks - 1) * interval between its first and last event.
    assert first.startswith(b"data: ") and b'"content": "tok"' in first
    assert first_at < interval, "the first event waited for more of the stream"
    assert ended_at - first_at >= (chunks - 1) * interval * 0.8
    assert (first + rest).count(b"data: ") == chunks + 2  # the usage chunk and [DONE]
    (record,) = records
    assert record["completion_tokens"] == chunks and record["bytes_out"] == len(first + rest)


async def test_a_large_json_answer_streams_through_and_still_yields_its_usage(
    settings: Settings, openrouter: FakeOpenRouter
) -> None:
    chunks = 30_000  # ~120 KB of content: over what is read whole before it is sent
    async with pooled(settings, openrouter, {KEY: None}, route_extra={"meter": "llm"}) as gw:
        async with client_session() as http:
            async with http.post(gw.url + URL, json={**CHAT, "x_chunks": chunks}) as response:
                assert response.status == 200
                raw = await response.read()
        records = await rows(gw, usage_records)
    answer = json.loads(raw)
    assert len(raw) > 64 * 1024 and answer["usage"]["completion_tokens"] == chunks
    (record,) = records
    assert record["prompt_tokens"] == PROMPT_TOKENS
    assert record["completion_tokens"] == chunks
    assert record["cost"] == answer["usage"]["cost"] and record["bytes_out"] == len(raw)


async def stream(gw: Any, body: dict[str, Any]) -> bytes:
    async with client_session() as http, http.post(gw.url + URL, json=body) as response:
        assert response.status == 200
        return await response.read()


async def test_stream_usage_asks_the_upstream_for_the_usage_chunk(
    settings: Settings, openrouter: FakeOpenRouter
) -> None:
    extra = {"meter": "llm", "stream_usage": True}
    async with pooled(settings, openrouter, {KEY: None}, route_extra=extra) as gw:
        asked = {**CHAT, "stream": True, "x_usage_only_if_asked": True, "temperature": 0.5}
        streamed = await stream(gw, asked)
        # A client that says it wants no usage is left alone; so is a plain completion.
        declined = {**asked, "stream_options": {"include_usage": False}}
        await stream(gw, declined)
        await stream(gw, CHAT)
        records = sorted(await rows(gw, usage_records), key=lambda r: r["at"])
    sent = [json.loads(call.body) for call in openrouter.requests if call.body]
    assert sent[0] == {**asked, "stream_options": {"include_usage": True}}
    assert sent[1] == declined and sent[2] == CHAT
    assert b'"usage"' in streamed
    assert records[0]["completion_tokens"] == 3 and records[0]["cost"] is not None
    assert records[1]["completion_tokens"] is None  # no usage chunk: tokens unknown


async def test_without_stream_usage_the_request_is_sent_as_it_came(
    settings: Settings, openrouter: FakeOpenRouter
) -> None:
    async with pooled(settings, openrouter, {KEY: None}, route_extra={"meter": "llm"}) as gw:
        body = {**CHAT, "stream": True, "x_usage_only_if_asked": True}
        streamed = await stream(gw, body)
    (call,) = [c for c in openrouter.requests if c.body]
    assert json.loads(call.body) == body and b'"usage"' not in streamed


def test_stream_usage_needs_an_llm_meter() -> None:
    spec = pooled_gateway("http://127.0.0.1:9", route_extra={"stream_usage": True})
    with pytest.raises(ConfigError, match="stream_usage needs meter: llm"):
        parse_gateway(spec, source="test")
