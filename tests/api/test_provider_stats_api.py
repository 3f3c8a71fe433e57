"""`/api/v1/stats/provider-keys` and `.../{id}/history` against a fake OpenRouter: each
key's live state, the provider's figures, the metered totals and the per-day history,
for the readers that may see them, in three queries whatever the number of keys."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event

from ferryman.clock import FakeClock
from ferryman.config.settings import Settings
from ferryman.store import usage
from ferryman.store.tables import upstream_key_history
from ferryman.store.usage import UsageRow
from tests.api.helpers import Client, assert_error, database_of, make_admin, rows
from tests.fakes.openrouter import FakeOpenRouter
from tests.support import PASSWORD, Running, client_session, serve_app
from tests.upstreams.conftest import pooled_gateway

DAY1 = datetime(2026, 3, 1, 10, tzinfo=UTC)
CHAT = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
HISTORY_FIELDS = {
    "date", "usage", "usage_first", "spend", "usage_daily", "limit", "limit_remaining",
    "credits_total", "credits_used", "readings", "first_synced_at", "synced_at",
}  # fmt: skip


@contextlib.asynccontextmanager
async def monitor(
    settings: Settings, fake: FakeOpenRouter, clock: FakeClock
) -> AsyncIterator[tuple[Running, Client]]:
    """Seed 003's gateway in front of the fake, registration open, no background reloads."""
    settings = settings.model_copy(
        update={
            "registration_enabled": True,
            "upstream_refresh_interval": 3600.0,
            "upstream_history_days": 2,
        }
    )
    gateway = pooled_gateway(fake.base_url, auth=["api_key"])
    async with serve_app(settings, gateway, clock=clock) as gw, client_session() as http:
        yield gw, Client(http, gw.url)


def record(n: int, user: str, key_id: str, at: datetime, status: int = 200) -> UsageRow:
    return UsageRow(
        id=f"{n:032x}", at=at.timestamp(), route="llm", user_id=user, credential_id="c",
        upstream="openrouter", upstream_key_id=key_id, model="m", status=status,
        duration_ms=1.0, ttfb_ms=1.0, upstream_ms=1.0, bytes_in=1, bytes_out=1,
        prompt_tokens=10, completion_tokens=5, total_tokens=15, cost=0.01,
        correlation_id=f"c{n}",
    )  # fmt: skip


@dataclass
class World:
    gw: Running
    client: Client
    clock: FakeClock
    secrets: list[str]
    ann_id: str
    one: str
    """Ann's first key: synced on day 1 and day 2, metered on both."""
    two: str
    """Ann's second key: left cooling down."""
    bobs: str
    """Bob's key: refused by the provider."""
    pool: str
    """The admin's shared key."""
    refused_on: str
    """Which of Ann's keys the request refused on day 1 counts against."""
    ann_reader: str
    """Ann's client key with stats:read."""
    ann_proxy: str
    bob_reader: str
    admin_reader: str

    async def get(self, path: str, token: str | None, expect: int | None = 200) -> Any:
        status, body = await self.client.call("GET", "/stats/provider-keys" + path, token=token)
        if expect is not None:
            assert status == expect, (status, body)
        return body if expect is not None else (status, body)

    async def admin(self) -> str:
        return await self.client.login("root")


async def add(client: Client, token: str, secret: str, name: str) -> str:
    body = {"upstream": "openrouter", "name": name, "key": secret}
    _, key = await client.call("POST", "/upstream-keys", token=token, json=body, expect=201)
    key_id: str = key["id"]
    return key_id


async def build(gw: Running, client: Client, clock: FakeClock, fake: FakeOpenRouter,
                secret: Callable[[str], str]) -> World:  # fmt: skip
    """Day 1, 10:00: Ann (registered by email), Bob and an admin add keys; Ann's two keys
    get rate limited; 12:00, Ann's first key synced again, Bob's refused. Day 2, 12:00:
    Ann's first key synced again. Metered traffic on both days."""
    _, admin = await make_admin(gw, client)
    _, ann = await client.call(
        "POST", "/auth/register",
        json={"email": "ann@example.com", "password": PASSWORD, "password_confirm": PASSWORD},
        expect=201,
    )  # fmt: skip
    ann_token = await client.login("ann@example.com")
    bob, bob_token = await client.user("bob")
    k1, k2, kb, kp = (secret("sk-or-v1-") for _ in range(4))
    fake.add_key(k1, usage=1.0, limit=10.0)
    fake.keys[k1].usage_daily = 0.25
    fake.add_key(k2, usage=5.0)
    fake.add_key(kb, usage=0.5)
    fake.add_key(kp, usage=7.0)
    one = await add(client, ann_token, k1, "first")
    two = await add(client, ann_token, k2, "second")
    bobs = await add(client, bob_token, kb, "bob's")
    pool = await add(client, admin, kp, "pool")
    ann_reader = (await client.new_key(ann_token, "dash", scopes=["stats:read"]))["key"]
    ann_proxy = (await client.new_key(ann_token, "app"))["key"]
    bob_reader = (await client.new_key(bob_token, "dash", scopes=["stats:read"]))["key"]
    admin_reader = (await client.new_key(admin, "dash", scopes=["stats:read"]))["key"]

    # Both of Ann's keys answer 429: one request tries both, and both cool down.
    for key in (k1, k2):
        fake.set_behaviour(key, "429", retry_after="120")
    async with client.http.post(
        f"{gw.url}/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {ann_proxy}"}
    ) as r:
        assert r.status == 503 and (await r.json())["error"] == "no_upstream_key"
    # Its usage record (an error, on the key tried last: either, by the pool's draw; dated
    # by the real clock, not the fake one) is written now, not when the writer's timer
    # says: counted or not, it was a race with the reads below.
    assert gw.app.usage is not None
    await gw.app.usage.flush()
    _, per_key = await client.call("GET", "/stats/upstream-keys", token=admin, expect=200)
    (refused_on,) = [k["id"] for k in per_key if k["errors"] == 1]
    assert refused_on in (one, two)
    for key in (k1, k2):
        fake.set_behaviour(key, "ok")

    clock.advance(hours=2)
    fake.keys[k1].usage, fake.keys[k1].usage_daily = 1.4, 0.65
    ann_token = await client.login("ann@example.com")
    _, checked = await client.call("POST", f"/upstream-keys/{one}/check", token=ann_token)
    assert checked["result"] == "healthy"
    fake.set_behaviour(kb, "401")
    bob_token = await client.login("bob")
    _, checked = await client.call("POST", f"/upstream-keys/{bobs}/check", token=bob_token)
    assert checked["result"] == "invalid"

    clock.advance(days=1)
    fake.keys[k1].usage, fake.keys[k1].usage_daily = 2.0, 0.6
    ann_token = await client.login("ann@example.com")
    await client.call("POST", f"/upstream-keys/{one}/check", token=ann_token, expect=200)

    day2 = DAY1 + timedelta(days=1)
    await usage.write(
        database_of(gw),
        [record(n, ann["id"], one, DAY1, 500 if n == 1 else 200) for n in range(1, 4)]
        + [record(n, ann["id"], one, day2) for n in range(4, 6)]
        + [record(6, ann["id"], two, day2)]
        + [record(n, bob["id"], bobs, DAY1) for n in range(7, 11)]
        + [record(n, "admin", pool, DAY1) for n in range(11, 16)],
    )
    return World(
        gw, client, clock, [k1, k2, kb, kp], ann["id"], one, two, bobs, pool, refused_on,
        ann_reader, ann_proxy, bob_reader, admin_reader,
    )  # fmt: skip


def by_id(listing: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["id"]: item for item in listing["items"]}


async def test_one_call_gives_state_figures_totals_and_history(
    db_settings: Settings, openrouter: FakeOpenRouter, secret: Callable[[str], str]
) -> None:
    clock = FakeClock(DAY1)
    async with monitor(db_settings, openrouter, clock) as (gw, client):
        world = await build(gw, client, clock, openrouter, secret)
        on_one = int(world.refused_on == world.one)
        listing = await world.get("", world.ann_reader)
        assert listing["total"] == 2
        mine = by_id(listing)
        assert set(mine) == {world.one, world.two}  # never Bob's, never the pool's
        one, two = mine[world.one], mine[world.two]
        k1 = world.secrets[0]
        assert one["masked"] == f"{k1[:8]}…{k1[-4:]}"
        assert (one["name"], one["upstream"], one["shared"]) == ("first", "openrouter", False)
        assert one["is_active"] is one["enabled"] is True
        assert (one["state"], one["cooling_until"]) == ("healthy", None)
        assert one["provider"] == {
            "usage": 2.0, "limit": 10.0, "limit_remaining": 8.0, "credits_total": 100.0,
            "credits_used": 0.0, "synced_at": "2026-03-02T12:00:00Z",
        }  # fmt: skip
        assert one["stats"] == {
            "total_requests": 5 + on_one, "total_errors": 1 + on_one, "total_tokens_input": 50,
            "total_tokens_output": 25, "total_cost": pytest.approx(0.05),
        }  # fmt: skip
        day1, day2 = one["history"]
        assert set(day1) == HISTORY_FIELDS
        assert day1 == {
            "date": "2026-03-01", "usage": 1.4, "usage_first": 1.0, "spend": 0.4,
            "usage_daily": 0.65, "limit": 10.0, "limit_remaining": 8.6, "credits_total": 100.0,
            "credits_used": 0.0, "readings": 2, "first_synced_at": "2026-03-01T10:00:00Z",
            "synced_at": "2026-03-01T12:00:00Z",
        }  # fmt: skip
        assert (day2["date"], day2["usage_first"], day2["spend"]) == ("2026-03-02", 2.0, 0.6)
        assert (day2["usage_daily"], day2["readings"]) == (0.6, 1)

        # The second key is still cooling down from the 429 (its Retry-After: 120 s).
        assert two["state"] == "cooling_down"
        assert two["cooling_until"] == "2026-03-01T10:02:00Z"
        assert "429" in two["last_error"] or "Rate limit" in two["last_error"]
        assert two["stats"]["total_requests"] == 2 - on_one
        assert [(d["date"], d["usage"], d["spend"]) for d in two["history"]] == [
            ("2026-03-01", 5.0, 0.0)
        ]

        # Dates narrow the totals and the history; day 2's spend still counts from day 1.
        ranged = by_id(await world.get("?start_date=2026-03-02&end_date=2026-03-02",
                                       world.ann_reader))  # fmt: skip
        assert ranged[world.one]["stats"]["total_requests"] == 2
        assert [(d["date"], d["spend"]) for d in ranged[world.one]["history"]] == [
            ("2026-03-02", 0.6)
        ]
        assert ranged[world.two]["history"] == []
        first_day = by_id(await world.get("?end_date=2026-03-01", world.ann_reader))
        assert first_day[world.one]["stats"]["total_requests"] == 3  # it was today, really
        assert [d["date"] for d in first_day[world.one]["history"]] == ["2026-03-01"]

        # Bob's client key: his key only, refused by the provider.
        (bobs,) = (await world.get("", world.bob_reader))["items"]
        assert (bobs["id"], bobs["state"]) == (world.bobs, "invalid")
        assert bobs["last_error"] and bobs["stats"]["total_requests"] == 4

        # An admin with a JWT: every key, shared pool included, or one user's.
        admin = await world.admin()
        every = by_id(await world.get("", admin))
        assert set(every) == {world.one, world.two, world.bobs, world.pool}
        assert every[world.pool]["shared"] is True
        assert every[world.pool]["stats"]["total_requests"] == 5
        just_ann = await world.get(f"?user_id={world.ann_id}", admin)
        assert set(by_id(just_ann)) == {world.one, world.two}
        pages = [await world.get(f"?limit=3&page={n}", admin) for n in (1, 2, 3)]
        assert [len(p["items"]) for p in pages] == [3, 1, 0]
        assert {p["total"] for p in pages} == {4}
        assert set().union(*(by_id(p) for p in pages)) == set(every)
        # An admin's client key reads only the admin's own keys: never the pool.
        assert await world.get("", world.admin_reader) == {"items": [], "total": 0}

        # One key's history.
        history = await world.get(f"/{world.one}/history", world.ann_reader)
        assert (history["id"], history["name"], history["total"]) == (world.one, "first", 2)
        assert history["items"] == one["history"]
        later = await world.get(f"/{world.one}/history?start_date=2026-03-02", world.ann_reader)
        assert [(d["date"], d["spend"]) for d in later["items"]] == [("2026-03-02", 0.6)]
        assert (await world.get(f"/{world.bobs}/history", admin))["total"] == 1

        # Retention (2 days here): on day 3 the daily job drops day 1.
        clock.advance(days=1)
        job = next(t for t in gw.app.tasks if t.name == "upstream_key_history_retention")
        assert await job.run_once()
        history = await world.get(f"/{world.one}/history", world.ann_reader)
        assert [d["date"] for d in history["items"]] == ["2026-03-02"]
        kept = [(r["upstream_key_id"], r["day"].day) for r in await rows(gw, upstream_key_history)]
        assert kept == [(world.one, 2)]
        # Deleting a key deletes its history.
        ann = await client.login("ann@example.com")
        await client.call("DELETE", f"/upstream-keys/{world.one}", token=ann, expect=204)
        assert await rows(gw, upstream_key_history) == []
        assert_error(
            await world.get(f"/{world.one}/history", world.ann_reader, expect=None),
            404, "upstream_key_not_found",
        )  # fmt: skip


async def test_refusals_are_precise_and_leak_nothing(
    settings_factory: Callable[..., Settings],
    openrouter: FakeOpenRouter,
    secret: Callable[[str], str],
) -> None:
    clock = FakeClock(DAY1)
    async with monitor(settings_factory(), openrouter, clock) as (gw, client):
        world = await build(gw, client, clock, openrouter, secret)
        bob = await client.login("bob")
        replies = []

        async def refused(path: str, token: str | None, status: int, code: str) -> Any:
            reply = await world.get(path, token, expect=None)
            replies.append(reply)
            return assert_error(reply, status, code)

        # Someone else's key, the shared pool and an unknown id answer alike.
        missing = "upstream_key_not_found"
        for key in (world.bobs, world.pool, str(uuid.uuid4()), "not-an-id"):
            found = await refused(f"/{key}/history", world.ann_reader, 404, missing)
            assert found["message"] == "no such upstream key"
        await refused(f"/{world.pool}/history", world.admin_reader, 404, missing)
        await refused(f"/{world.one}/history", bob, 404, missing)

        for path in ("", f"/{world.one}/history"):
            found = await refused(
                f"{path}?start_date=2026-03-02&end_date=2026-03-01",
                world.ann_reader, 400, "invalid_date_range",
            )  # fmt: skip
            assert found["message"] == "start_date is after end_date"
            found = await refused(f"{path}?start_date=yesterday", world.ann_reader, 422,
                                  "validation_error")  # fmt: skip
            assert [d["field"] for d in found["details"]] == ["query.start_date"]
            found = await refused(f"{path}?end_date=2026-02-30", world.ann_reader, 422,
                                  "validation_error")  # fmt: skip
            assert [d["field"] for d in found["details"]] == ["query.end_date"]
        for query, field in (("limit=0", "limit"), ("limit=501", "limit"), ("page=x", "page")):
            found = await refused(f"?{query}", world.ann_reader, 422, "validation_error")
            assert [d["field"] for d in found["details"]] == ["query." + field]

        await refused(f"?user_id={world.ann_id}", bob, 403, "admin_required")
        await refused("", world.ann_proxy, 403, "insufficient_scope")
        await refused("", None, 401, "missing_credential")
        await refused(f"/{world.one}/history", world.ann_proxy, 403, "insufficient_scope")

        # Nothing answered here or in the successful reads shows a key's secret.
        for token in (world.ann_reader, world.bob_reader, await world.admin()):
            replies.append(await world.get("", token, expect=None))
        text = repr(replies)
        for value in world.secrets:
            assert value not in text and value[8:-4] not in text


async def test_a_listing_costs_three_queries_whatever_the_number_of_keys(
    settings_factory: Callable[..., Settings],
    openrouter: FakeOpenRouter,
    secret: Callable[[str], str],
) -> None:
    clock = FakeClock(DAY1)
    async with monitor(settings_factory(), openrouter, clock) as (gw, client):
        world = await build(gw, client, clock, openrouter, secret)
        admin = await world.admin()
        tables = ("upstream_keys", "usage_daily", "upstream_key_history")
        seen: list[str] = []

        def count(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
            if statement.lstrip().upper().startswith("SELECT"):
                seen.append(statement)

        engine = database_of(gw).engine.sync_engine
        for token, keys in ((world.bob_reader, 1), (world.ann_reader, 2), (admin, 4)):
            await world.get("", token)  # the credential is verified (and cached) first
            seen.clear()
            event.listen(engine, "before_cursor_execute", count)
            try:
                listing = await world.get("", token)
            finally:
                event.remove(engine, "before_cursor_execute", count)
            assert len(listing["items"]) == keys
            reads = [s for s in seen if any(f"FROM {t}" in s for t in tables)]
            assert len(reads) == 3, seen
            assert len(seen) == 3, seen
