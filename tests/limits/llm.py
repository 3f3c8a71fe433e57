"""An LLM route for the limits tests: `/v1` to the fake OpenRouter, client keys, metered
(`meter: llm`), one key in the pool; and a chat through it."""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from tests.fakes.openrouter import FakeOpenRouter
from tests.support import Running
from tests.upstreams.conftest import pooled_gateway

POOL_KEY = "sk-or-v1-" + "l" * 64
CHAT = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def llm_gateway(fake: FakeOpenRouter, **sections: dict[str, Any]) -> dict[str, Any]:
    """The gateway file; `sections` (budgets, limiter) go to its top level. The shared
    pool is lent to every caller: these tests are about limits, not grants."""
    spec = pooled_gateway(
        fake.base_url, auth=["api_key"], route_extra={"meter": "llm"}, shared_access="everyone"
    )
    spec.update(sections)
    return spec


async def add_pool_key(gw: Running) -> None:
    assert gw.app.upstream_keys is not None
    await gw.app.upstream_keys.create(
        upstream="openrouter", name="k", secret=POOL_KEY, owner_id=None, validate=False
    )


async def chat(
    http: aiohttp.ClientSession, gw: Running, key: str, **extra: Any
) -> tuple[int, dict[str, Any], Any]:
    """Status, JSON body (empty for a stream that was served) and headers."""
    async with http.post(
        gw.url + "/v1/chat/completions", json={**CHAT, **extra}, headers={"X-API-Key": key}
    ) as response:
        raw = await response.read()
        body = json.loads(raw) if not extra.get("stream") or response.status != 200 else {}
        return response.status, body, response.headers
