"""Tokens a minute on an LLM route: checked before (is anything left?), paid with the
tokens the upstream reports (the fake OpenRouter: 5 prompt + `x_chunks` completion)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from ferryman.config.settings import Settings
from ferryman.limits.algorithms import charge, gcra
from ferryman.limits.rates import Rate
from tests.api.helpers import Client, assert_error, make_admin
from tests.fakes.openrouter import PROMPT_TOKENS, FakeOpenRouter
from tests.limits.llm import add_pool_key, chat, llm_gateway
from tests.support import client_session, serve_app

PER_CHAT = PROMPT_TOKENS + 3  # the fake's default: three completion chunks


def gateway(fake: FakeOpenRouter, **limiter: Any) -> dict[str, Any]:
    spec = llm_gateway(fake, limiter=limiter)
    spec["routes"].append(
        {"name": "plain", "path": "/plain", "upstream": "openrouter", "auth": ["api_key"],
         "strip_prefix": True}
    )  # fmt: skip
    return spec


def test_a_zero_cost_check_admits_until_the_bucket_is_used_up_and_charges_go_into_debt() -> None:
    rate = Rate(60, 60.0, 60)  # 60 tokens a minute
    tat = charge(rate, 0.0, 100.0, 59)
    assert gcra(rate, tat, 100.0, cost=0)[0].allowed  # one token left
    tat = charge(rate, tat, 100.0, 30)  # 89 used: 29 in debt
    refused, _ = gcra(rate, tat, 100.0, cost=0)
    assert not refused.allowed and refused.retry_after == pytest.approx(29.0)
    assert gcra(rate, tat, 129.5, cost=0)[0].allowed


async def test_a_keys_tpm_set_by_an_admin_counts_reported_tokens(
    settings: Settings, openrouter: FakeOpenRouter
) -> None:
    async with serve_app(settings, gateway(openrouter)) as gw, client_session() as http:
        await add_pool_key(gw)
        client = Client(http, gw.url)
        _, admin = await make_admin(gw, client)
        _, token = await client.user("ann")
        key = await client.new_key(token)
        assert_error(
            await client.call("PATCH", f"/keys/{key['id']}", token=token, json={"tpm": 10}),
            403, "admin_required",
        )  # fmt: skip
        status, patched = await client.call(
            "PATCH", f"/keys/{key['id']}", token=admin, json={"tpm": PER_CHAT * 2 + 1}
        )
        assert status == 200 and patched["tpm"] == PER_CHAT * 2 + 1
        # Used before each: 0, 8, 16 (< 17) → admitted; then 24 → refused.
        seen = [await chat(http, gw, key["key"], stream=n % 2 == 1) for n in range(4)]
        assert [s for s, _, _ in seen] == [200, 200, 200, 429]
        _, body, headers = seen[3]
        assert body["error"] == "token_rate_limited"
        assert f"token limit of {PER_CHAT * 2 + 1} per minute" in body["message"]
        # 24 tokens used of 17 a minute: the debt of 7 and one more take ~28 s to pay off.
        assert 20 <= int(headers["Retry-After"]) <= 30
        # Requests tiers' headers are not about tokens.
        assert "RateLimit-Limit" not in headers
        # Tokens a minute concern LLM routes only.
        async with http.get(gw.url + "/plain/models", headers={"X-API-Key": key["key"]}) as r:
            assert r.status == 200


async def test_an_accounts_tpm_and_a_kind_default(
    settings: Settings, openrouter: FakeOpenRouter
) -> None:
    spec = gateway(openrouter, token_defaults={"api_key": PER_CHAT * 10})
    async with serve_app(settings, spec) as gw, client_session() as http:
        await add_pool_key(gw)
        client = Client(http, gw.url)
        _, admin = await make_admin(gw, client)
        user, token = await client.user("bob")
        one = (await client.new_key(token, name="one"))["key"]
        two = (await client.new_key(token, name="two"))["key"]
        await client.call("PATCH", f"/admin/users/{user['id']}", token=admin,
                          json={"tpm": PER_CHAT + 1}, expect=200)  # fmt: skip
        assert (await chat(http, gw, one))[0] == 200
        assert (await chat(http, gw, two))[0] == 200  # 8 < 9 used by the account
        status, body, _ = await chat(http, gw, one)
        assert status == 429 and "(counted by user)" in body["message"]


async def test_the_redis_backend_charges_tokens_in_redis(
    settings_factory: Callable[..., Settings], openrouter: FakeOpenRouter, redis_url: str
) -> None:
    settings = settings_factory(
        redis_url=redis_url, redis_prefix=f"ferryman-test-{uuid.uuid4().hex[:8]}:"
    )
    spec = gateway(openrouter, backend="redis", token_defaults={"api_key": PER_CHAT + 1})
    async with serve_app(settings, spec) as gw, client_session() as http:
        await add_pool_key(gw)
        client = Client(http, gw.url)
        _, token = await client.user("cyd")
        key = (await client.new_key(token))["key"]
        seen = [(await chat(http, gw, key))[0] for _ in range(3)]
        assert gw.app.limits.fallbacks == 0
        assert gw.app.limits.memory.gcra == {}
    assert seen == [200, 200, 429]
