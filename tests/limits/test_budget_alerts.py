"""Budget alerts through the gateway against the fake OpenRouter (each chat costs
`COST`): the webhook's bodies, the claim rows, the metric, once across instances and
restarts, a failing webhook, and custom thresholds."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import insert, select

from ferryman.config.settings import Settings
from ferryman.store.budgets import Scope
from ferryman.store.tables import budget_alerts, usage_daily
from tests.api.helpers import Client, make_admin
from tests.conftest import LogReader
from tests.fakes.openrouter import COST, FakeOpenRouter
from tests.limits.llm import add_pool_key, chat, llm_gateway
from tests.support import Running, client_session, free_socket, serve_app


class Webhook:
    """A local HTTP server that records the JSON bodies POSTed to it."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.bodies: list[dict[str, Any]] = []
        self.content_types: list[str] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def _receive(self, request: web.Request) -> web.Response:
        self.content_types.append(request.headers.get("Content-Type", ""))
        self.bodies.append(json.loads(await request.read()))
        return web.Response(status=self.status, text="noted")

    async def start(self) -> Webhook:
        app = web.Application()
        app.router.add_post("/hook", self._receive)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        sock = free_socket()
        site = web.SockSite(self._runner, sock)
        await site.start()
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def thresholds(self) -> list[int]:
        return [body["threshold_percent"] for body in self.bodies]


@pytest.fixture
async def webhook() -> AsyncIterator[Webhook]:
    hook = await Webhook().start()
    yield hook
    await hook.stop()


def gateway(fake: FakeOpenRouter, **budgets: Any) -> dict[str, Any]:
    return llm_gateway(fake, budgets=budgets)


async def chats(http: aiohttp.ClientSession, gw: Running, key: str, n: int) -> list[int]:
    return [(await chat(http, gw, key))[0] for _ in range(n)]


async def settle(gw: Running, scope: Scope, subject: str, spent: float) -> None:
    """Wait until this instance has counted `spent` for the budget (the cost is queued
    as the request ends), then until every alert it queued is handled."""
    assert gw.app.budgets is not None and gw.app.alerts is not None
    deadline = time.monotonic() + 5
    while True:
        tally = gw.app.budgets._tallies.get((scope, subject))
        if tally is not None and tally.spent == pytest.approx(spent):
            break
        assert time.monotonic() < deadline, (tally, spent)
        await asyncio.sleep(0.01)
    await gw.app.alerts.drain()


async def claimed(gw: Running) -> list[dict[str, Any]]:
    assert gw.app.database is not None
    async with gw.app.database.engine.connect() as conn:
        result = await conn.execute(select(budget_alerts).order_by(budget_alerts.c.threshold))
        return [dict(row._mapping) for row in result]


async def metrics(http: aiohttp.ClientSession, gw: Running) -> str:
    async with http.get(gw.url + "/metrics") as response:
        return await response.text()


def tomorrow() -> datetime:
    today = datetime.now(UTC).date()
    return datetime.combine(today + timedelta(days=1), datetime.min.time(), tzinfo=UTC)


async def test_a_keys_thresholds_go_out_once_each_as_they_are_crossed(
    settings: Settings, openrouter: FakeOpenRouter, webhook: Webhook
) -> None:
    spec = gateway(openrouter, webhook=webhook.url)
    async with serve_app(settings, spec) as gw, client_session() as http:
        await add_pool_key(gw)
        client = Client(http, gw.url)
        _, admin = await make_admin(gw, client)
        user, token = await client.user("ann")
        key = await client.new_key(token)
        await client.call("PATCH", f"/keys/{key['id']}", token=admin, expect=200,
                          json={"budget": {"amount": COST * 4, "period": "day"}})  # fmt: skip
        assert await chats(http, gw, key["key"], 2) == [200, 200]
        await settle(gw, "credential", key["id"], COST * 2)
        assert webhook.thresholds == [50]
        assert gw.app.alerts is not None and gw.app.alerts.sent == 1
        text = await metrics(http, gw)
        assert 'ferryman_budget_events_total{event="alert_50",scope="credential"} 1.0' in text
        assert 'event="alert_80"' not in text
        assert await chats(http, gw, key["key"], 2) == [200, 200]
        await settle(gw, "credential", key["id"], COST * 4)
        rows = await claimed(gw)
        text = await metrics(http, gw)
        # Spent: the next one is refused, and no alert goes out twice.
        assert await chats(http, gw, key["key"], 1) == [429]
        await gw.app.alerts.drain()
    assert webhook.thresholds == [50, 80, 100]
    assert set(webhook.content_types) == {"application/json"}
    today = datetime.now(UTC).date().isoformat()
    for body, threshold, spent in zip(webhook.bodies, (50, 80, 100), (2, 4, 4), strict=True):
        assert body["event"] == "budget.threshold_crossed"
        assert body["scope"] == "credential"
        assert body["subject_id"] == key["id"] != user["id"]
        assert body["threshold_percent"] == threshold
        assert body["spend"] == pytest.approx(COST * spent)
        assert body["budget"] == pytest.approx(COST * 4)
        assert body["period"] == "day"
        assert body["window_start"] == today
        assert datetime.fromisoformat(body["renews_at"]) == tomorrow()
        assert datetime.fromisoformat(body["at"]).tzinfo is not None
    assert [(r["scope"], r["subject_id"], r["threshold"]) for r in rows] == [
        ("credential", key["id"], 50),
        ("credential", key["id"], 80),
        ("credential", key["id"], 100),
    ]
    assert {r["window_start"].isoformat() for r in rows} == {today}
    assert [r["budget"] for r in rows] == pytest.approx([COST * 4] * 3)
    for event in ("alert_50", "alert_80", "alert_100"):
        assert f'ferryman_budget_events_total{{event="{event}",scope="credential"}} 1.0' in text


async def test_an_accounts_thresholds_are_announced_for_the_user(
    settings: Settings, openrouter: FakeOpenRouter, webhook: Webhook
) -> None:
    spec = gateway(openrouter, webhook=webhook.url)
    async with serve_app(settings, spec) as gw, client_session() as http:
        await add_pool_key(gw)
        client = Client(http, gw.url)
        _, admin = await make_admin(gw, client)
        user, token = await client.user("bob")
        first = await client.new_key(token, name="one")
        second = await client.new_key(token, name="two")
        await client.call("PATCH", f"/admin/users/{user['id']}", token=admin, expect=200,
                          json={"budget": {"amount": COST * 2, "period": "month"}})  # fmt: skip
        assert await chats(http, gw, first["key"], 1) == [200]
        assert await chats(http, gw, second["key"], 1) == [200]
        await settle(gw, "user", user["id"], COST * 2)
        text = await metrics(http, gw)
    assert webhook.thresholds == [50, 80, 100]
    assert {b["scope"] for b in webhook.bodies} == {"user"}
    assert {b["subject_id"] for b in webhook.bodies} == {user["id"]}
    assert {b["period"] for b in webhook.bodies} == {"month"}
    assert webhook.bodies[0]["window_start"] == datetime.now(UTC).date().replace(day=1).isoformat()
    assert 'ferryman_budget_events_total{event="alert_100",scope="user"} 1.0' in text


async def test_alerts_go_out_once_across_instances_and_restarts(
    settings: Settings, openrouter: FakeOpenRouter, webhook: Webhook
) -> None:
    spec = gateway(
        openrouter,
        webhook=webhook.url,
        alerts=[50, 80],
        defaults={"api_key": {"amount": COST * 5, "period": "day"}},
    )
    async with serve_app(settings, spec) as one, client_session() as http:
        await add_pool_key(one)
        client = Client(http, one.url)
        _, token = await client.user("cyd")
        key = await client.new_key(token)
        assert await chats(http, one, key["key"], 4) == [200] * 4
        await settle(one, "credential", key["id"], COST * 4)
        assert webhook.thresholds == [50, 80]
        assert one.app.alerts is not None and one.app.alerts.sent == 2
        assert one.app.usage is not None
        await one.app.usage.flush()
        # A second instance alongside: its first check reads 80% spent from the
        # database and sees both thresholds crossed; both are claimed already.
        async with serve_app(settings, spec) as two:
            assert await chats(http, two, key["key"], 1) == [200]
            await settle(two, "credential", key["id"], COST * 5)
            assert two.app.alerts is not None and two.app.alerts.sent == 0
            # It did see them crossed (and asked): they were claimed by the first.
            assert two.app.budgets is not None
            assert two.app.budgets._tallies[("credential", key["id"])].announced == 80
            text = await metrics(http, two)
            assert 'event="alert_' not in text
    # And after a restart of both: spent, refused, still nothing announced again.
    async with serve_app(settings, spec) as three, client_session() as http:
        assert await chats(http, three, key["key"], 1) == [429]
        assert three.app.alerts is not None
        await three.app.alerts.drain()
        assert three.app.budgets is not None
        (tally,) = three.app.budgets._tallies.values()
        assert tally.spent == pytest.approx(COST * 5)
        assert tally.announced == 80 and three.app.alerts.sent == 0
        rows = await claimed(three)
    assert webhook.thresholds == [50, 80]
    assert [r["threshold"] for r in rows] == [50, 80]


async def test_a_failing_webhook_is_retried_once_and_logged_without_failing_requests(
    settings: Settings, openrouter: FakeOpenRouter, logs: LogReader
) -> None:
    hook = await Webhook(status=500).start()
    spec = gateway(
        openrouter, webhook=hook.url, defaults={"api_key": {"amount": COST * 4, "period": "week"}}
    )
    try:
        async with serve_app(settings, spec) as gw, client_session() as http:
            await add_pool_key(gw)
            client = Client(http, gw.url)
            _, token = await client.user("dee")
            key = await client.new_key(token)
            assert await chats(http, gw, key["key"], 2) == [200, 200]
            await settle(gw, "credential", key["id"], COST * 2)
            assert gw.app.alerts is not None and gw.app.alerts.sent == 1
            assert len(await claimed(gw)) == 1
            # The alert task lives on: the next threshold goes out (and fails) too.
            assert await chats(http, gw, key["key"], 2) == [200, 200]
            await settle(gw, "credential", key["id"], COST * 4)
            text = await metrics(http, gw)
    finally:
        await hook.stop()
    # Each alert: the first try and one retry, never more.
    assert hook.thresholds == [50, 50, 80, 80, 100, 100]
    assert hook.bodies[0] == hook.bodies[1]
    failures = logs.events("budget_webhook_failed")
    assert [(f["threshold"], f["error"]) for f in failures] == [
        (50, "HTTP 500"),
        (80, "HTTP 500"),
        (100, "HTTP 500"),
    ]
    assert {f["subject_id"] for f in failures} == {key["id"]}
    assert [e["threshold_percent"] for e in logs.events("budget_alert")] == [50, 80, 100]
    assert 'ferryman_budget_events_total{event="alert_100",scope="credential"} 1.0' in text


async def test_custom_thresholds_over_100_percent_are_claimed_when_seeded(
    settings: Settings, openrouter: FakeOpenRouter, webhook: Webhook
) -> None:
    spec = gateway(
        openrouter,
        webhook=webhook.url,
        alerts=[150, 25, 25],
        defaults={"api_key": {"amount": COST * 2, "period": "7 days"}},
    )
    async with serve_app(settings, spec) as gw, client_session() as http:
        await add_pool_key(gw)
        client = Client(http, gw.url)
        user, token = await client.user("eve")
        over = await client.new_key(token, name="over")
        under = await client.new_key(token, name="under")
        today = datetime.now(UTC).date()
        common = {
            "user_id": user["id"], "upstream_key_id": "", "model": "m", "requests": 1,
            "errors": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost_unknown": 0,
        }  # fmt: skip
        assert gw.app.database is not None
        async with gw.app.database.engine.begin() as conn:
            await conn.execute(
                insert(usage_daily),
                [
                    # 160% of the budget, over two days of the window.
                    {**common, "credential_id": over["id"], "day": today, "cost": COST},
                    {**common, "credential_id": over["id"],
                     "day": today - timedelta(days=6), "cost": COST * 2.2},
                    # 120%: past 25, short of 150.
                    {**common, "credential_id": under["id"], "day": today, "cost": COST * 2.4},
                ],
            )  # fmt: skip
        assert await chats(http, gw, over["key"], 1) == [429]
        assert await chats(http, gw, under["key"], 1) == [429]
        assert gw.app.alerts is not None
        await gw.app.alerts.drain()
        rows = await claimed(gw)
    got = sorted((b["subject_id"], b["threshold_percent"]) for b in webhook.bodies)
    assert got == sorted([(over["id"], 25), (over["id"], 150), (under["id"], 25)])
    spends = {(b["subject_id"], b["threshold_percent"]): b["spend"] for b in webhook.bodies}
    assert spends[(over["id"], 150)] == pytest.approx(COST * 3.2)
    assert spends[(under["id"], 25)] == pytest.approx(COST * 2.4)
    windows = {b["window_start"] for b in webhook.bodies}
    assert windows == {(today - timedelta(days=6)).isoformat()}
    assert sorted((r["subject_id"], r["threshold"]) for r in rows) == got
