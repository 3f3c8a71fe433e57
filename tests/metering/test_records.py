"""Usage records and daily aggregates of proxied requests, against the fake OpenRouter."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from ferryman.config.settings import Settings
from ferryman.store.tables import usage_daily, usage_records
from tests.fakes.openrouter import FakeOpenRouter
from tests.support import Running, client_session
from tests.upstreams.conftest import pooled

KEY = "sk-or-v1-" + "m" * 64
CHAT = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
async def openrouter() -> AsyncIterator[FakeOpenRouter]:
    fake = await FakeOpenRouter().start()
    fake.add_key(KEY, label="k")
    yield fake
    await fake.stop()


async def rows(gw: Running, table: Any) -> list[dict[str, Any]]:
    assert gw.app.usage is not None and gw.app.database is not None
    await gw.app.usage.flush()
    async with gw.app.database.engine.connect() as conn:
        return [dict(r._mapping) for r in await conn.execute(select(table))]


async def test_json_and_streamed_answers_leave_records_and_aggregates(
    settings_factory: Callable[..., Settings], openrouter: FakeOpenRouter, tmp_path: Path
) -> None:
    prices = tmp_path / "prices.yaml"
    prices.write_text("models: {openai/gpt-4o-mini: {input: 1, output: 2}}\n")
    settings = settings_factory(price_table=prices)
    async with pooled(settings, openrouter, {KEY: None}, route_extra={"meter": "llm"}) as gw:
        async with client_session() as http:
            async with http.post(gw.url + "/v1/chat/completions", json=CHAT) as response:
                json_body = await response.read()
            streamed = b""
            async with http.post(
                gw.url + "/v1/chat/completions", json={**CHAT, "stream": True, "x_chunks": 4}
            ) as response:
                async for chunk in response.content.iter_any():
                    streamed += chunk
        records = sorted(await rows(gw, usage_records), key=lambda r: r["at"])
        daily = await rows(gw, usage_daily)
    assert len(records) == 2
    plain, stream = records
    answer = json.loads(json_body)
    assert plain["model"] == "openai/gpt-4o-mini"
    assert plain["prompt_tokens"] == answer["usage"]["prompt_tokens"]
    assert plain["completion_tokens"] == answer["usage"]["completion_tokens"]
    assert plain["cost"] == answer["usage"]["cost"]  # the provider's cost wins
    assert plain["status"] == 200 and plain["route"] == "llm"
    assert plain["upstream"] == "openrouter" and plain["upstream_key_id"] is not None
    assert plain["bytes_out"] == len(json_body)
    assert stream["completion_tokens"] == 4 and stream["total_tokens"] == 9
    assert stream["bytes_out"] == len(streamed)
    assert stream["ttfb_ms"] is not None and stream["upstream_ms"] >= stream["ttfb_ms"]
    (day,) = daily
    assert day["requests"] == 2 and day["errors"] == 0
    assert day["prompt_tokens"] == plain["prompt_tokens"] + stream["prompt_tokens"]
    assert day["completion_tokens"] == plain["completion_tokens"] + 4
    assert day["cost"] == pytest.approx(plain["cost"] + stream["cost"])


async def test_a_stream_cut_midway_is_recorded_with_what_was_seen(
    settings: Settings, openrouter: FakeOpenRouter
) -> None:
    openrouter.set_behaviour(KEY, "reset_midway")
    async with pooled(settings, openrouter, {KEY: None}, route_extra={"meter": "llm"}) as gw:
        async with client_session() as http:
            async with http.post(
                gw.url + "/v1/chat/completions", json={**CHAT, "stream": True}
            ) as response:
                with contextlib.suppress(aiohttp.ClientError):
                    await response.read()
        await asyncio.sleep(0.05)
        (record,) = await rows(gw, usage_records)
    assert record["model"] == "openai/gpt-4o-mini"
    assert record["prompt_tokens"] is None  # the usage chunk never came
    assert record["bytes_out"] > 0


async def test_http_metering_records_every_proxied_request(
    settings: Settings, openrouter: FakeOpenRouter
) -> None:
    async with pooled(settings, openrouter, {KEY: None}) as gw:  # meter: http (default)
        async with client_session() as http:
            for _ in range(3):
                async with http.get(gw.url + "/v1/models") as response:
                    await response.read()
        records = await rows(gw, usage_records)
        assert len(records) == 3 and all(r["model"] is None for r in records)
        assert (await rows(gw, usage_daily))[0]["requests"] == 3


async def test_a_route_with_meter_none_records_nothing(
    settings: Settings, openrouter: FakeOpenRouter
) -> None:
    async with pooled(settings, openrouter, {KEY: None}, route_extra={"meter": "none"}) as gw:
        async with client_session() as http:
            async with http.post(gw.url + "/v1/chat/completions", json=CHAT) as response:
                await response.read()
        assert await rows(gw, usage_records) == []
        assert gw.app.usage is not None and gw.app.usage.written == 0
