"""Budgets on an LLM route, through the gateway against the fake OpenRouter (each chat
costs `COST`, as its `usage.cost` says): per key, per account, per-kind defaults, spend
already in the database, the overshoot under concurrency, and a second instance."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from sqlalchemy import insert

from ferryman.config.settings import Settings
from ferryman.store.tables import usage_daily
from tests.api.helpers import Client, assert_error, make_admin
from tests.fakes.openrouter import COST, FakeOpenRouter
from tests.limits.llm import add_pool_key, chat, llm_gateway
from tests.support import Running, client_session, serve_app


def gateway(fake: FakeOpenRouter, **budgets: Any) -> dict[str, Any]:
    return llm_gateway(fake, budgets=budgets)


async def statuses(http: aiohttp.ClientSession, gw: Running, key: str, n: int) -> list[int]:
    return [(await chat(http, gw, key))[0] for _ in range(n)]


async def test_a_keys_budget_refuses_once_spent_and_null_lifts_it(
    settings: Settings, openrouter: FakeOpenRouter
) -> None:
    async with serve_app(settings, gateway(openrouter)) as gw, client_session() as http:
        await add_pool_key(gw)
        client = Client(http, gw.url)
        _, admin = await make_admin(gw, client)
        _, token = await client.user("ann")
        first = await client.new_key(token, name="one")
        second = await client.new_key(token, name="two")
        budget = {"amount": COST * 3.5, "period": "day"}
        # Only admins set budgets.
        assert_error(
            await client.call("PATCH", f"/keys/{first['id']}", token=token,
                              json={"budget": budget}),
            403, "admin_required",
        )  # fmt: skip
        status, patched = await client.call(
            "PATCH", f"/keys/{first['id']}", token=admin, json={"budget": budget}
        )
        assert status == 200 and patched["budget"] == budget
        # 0, 1, 2, 3 costs spent before each: admitted; then 4 > 3.5.
        assert await statuses(http, gw, first["key"], 5) == [200, 200, 200, 200, 429]
        status, body, headers = await chat(http, gw, first["key"])
        assert status == 429 and body["error"] == "budget_exceeded"
        assert "budget of 0.00035 per day is spent" in body["message"]
        assert "renews at" in body["message"]
        tomorrow = datetime.combine(
            datetime.now(UTC).date() + timedelta(days=1), datetime.min.time(), tzinfo=UTC
        )
        retry = int(headers["Retry-After"])
        assert 0 < retry <= (tomorrow - datetime.now(UTC)).total_seconds() + 2
        # The other key of the same user has no budget.
        assert await statuses(http, gw, second["key"], 2) == [200, 200]
        # Lifting the budget applies at once.
        await client.call("PATCH", f"/keys/{first['id']}", token=admin,
                          json={"budget": None}, expect=200)  # fmt: skip
        assert await statuses(http, gw, first["key"], 1) == [200]
        metrics = await (await http.get(gw.url + "/metrics")).text()
    assert 'ferryman_budget_events_total{event="refused",scope="credential"} 2.0' in metrics


async def test_an_accounts_budget_counts_all_its_keys_and_streams(
    settings: Settings, openrouter: FakeOpenRouter
) -> None:
    async with serve_app(settings, gateway(openrouter)) as gw, client_session() as http:
        await add_pool_key(gw)
        client = Client(http, gw.url)
        _, admin = await make_admin(gw, client)
        user, token = await client.user("bob")
        first = await client.new_key(token, name="one")
        second = await client.new_key(token, name="two")
        status, changed = await client.call(
            "PATCH", f"/admin/users/{user['id']}", token=admin,
            json={"budget": {"amount": COST * 2.5, "period": "month"}},
        )  # fmt: skip
        assert status == 200 and changed["budget"]["period"] == "month"
        assert (await chat(http, gw, first["key"], stream=True))[0] == 200
        assert (await chat(http, gw, second["key"], stream=True))[0] == 200
        assert (await chat(http, gw, first["key"]))[0] == 200
        status, body, _ = await chat(http, gw, second["key"])
    assert status == 429 and body["error"] == "budget_exceeded"
    assert body["message"].startswith("the account's budget of")


async def test_a_default_per_kind_and_spend_already_in_the_database(
    settings: Settings, openrouter: FakeOpenRouter
) -> None:
    spec = gateway(openrouter, defaults={"api_key": {"amount": COST * 10, "period": "7 days"}})
    async with serve_app(settings, spec) as gw, client_session() as http:
        await add_pool_key(gw)
        client = Client(http, gw.url)
        user, token = await client.user("cyd")
        key = await client.new_key(token)
        today = datetime.now(UTC).date()
        assert gw.app.database is not None
        old = {
            "user_id": user["id"], "credential_id": key["id"], "upstream_key_id": "",
            "model": "m", "requests": 1, "errors": 0, "prompt_tokens": 0,
            "completion_tokens": 0, "cost_unknown": 0,
        }  # fmt: skip
        async with gw.app.database.engine.begin() as conn:
            await conn.execute(
                insert(usage_daily),
                [
                    # Inside the rolling window: counted.
                    {**old, "day": today - timedelta(days=6), "cost": COST * 8},
                    # A day too old: not counted.
                    {**old, "day": today - timedelta(days=7), "cost": COST * 100},
                ],
            )
        assert await statuses(http, gw, key["key"], 3) == [200, 200, 429]


async def test_concurrent_requests_overshoot_by_at_most_those_in_flight(
    settings: Settings, openrouter: FakeOpenRouter
) -> None:
    """Ten requests start together under a budget of 2.5 requests: all are admitted,
    since none has finished (and so cost anything) when they are checked. The spend
    ends at 10 costs: the budget plus what was in flight, and nothing after."""
    spec = gateway(openrouter, defaults={"api_key": {"amount": COST * 2.5, "period": "day"}})
    async with serve_app(settings, spec) as gw, client_session() as http:
        await add_pool_key(gw)
        client = Client(http, gw.url)
        _, token = await client.user("dee")
        key = (await client.new_key(token))["key"]
        results = await asyncio.gather(
            *(chat(http, gw, key, stream=True, x_chunks=3, x_interval=0.1) for _ in range(10))
        )
        admitted = [r for r in results if r[0] == 200]
        assert len(admitted) == 10
        assert await statuses(http, gw, key, 3) == [429] * 3
        assert gw.app.usage is not None and gw.app.budgets is not None
        await gw.app.usage.flush()
        await gw.app.budgets.refresh()
        (tally,) = gw.app.budgets._tallies.values()
    assert tally.spent == pytest.approx(COST * 10)
    assert tally.spent <= COST * 2.5 + COST * len(admitted)


async def test_a_second_instance_learns_the_spend_through_the_database(
    settings: Settings, openrouter: FakeOpenRouter
) -> None:
    spec = gateway(
        openrouter, defaults={"api_key": {"amount": COST * 3, "period": "day"}}, refresh=0.5
    )
    async with serve_app(settings, spec) as one, client_session() as http:
        await add_pool_key(one)
        client = Client(http, one.url)
        _, token = await client.user("eve")
        key = (await client.new_key(token))["key"]
        async with serve_app(settings, spec) as two:
            assert await statuses(http, two, key, 1) == [200]  # two's tally: seeded at 0
            assert await statuses(http, one, key, 2) == [200, 200]
            assert one.app.usage is not None and two.app.usage is not None
            await one.app.usage.flush()
            await two.app.usage.flush()
            await asyncio.sleep(1.2)  # more than two refresh intervals, no request to two
            status, body, _ = await chat(http, two, key)
    assert status == 429 and body["error"] == "budget_exceeded"
