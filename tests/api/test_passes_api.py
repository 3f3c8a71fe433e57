"""`/api/v1/tokens`: access passes, bought for a duration and activated by first use."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from sqlalchemy import update

from ferryman.config.settings import Settings
from ferryman.errors import Unauthorized
from ferryman.store.tables import access_passes as passes_table
from tests.api.helpers import (
    Client,
    assert_error,
    auth_of,
    database_of,
    real_now_clock,
    row,
    running,
)
from tests.support import Running

PASS_FIELDS = {
    "id",
    "token_id",
    "user_id",
    "duration_hours",
    "status",
    "is_active",
    "activated_at",
    "expires_at",
    "revoked_at",
    "created_at",
}
STATUS_FIELDS = {
    "token_id",
    "status",
    "is_active",
    "duration_hours",
    "activated_at",
    "expires_at",
    "time_remaining_seconds",
}
#: Minutes a login lasts in the tests that move the clock by hours.
LONG_JWT = 60 * 24 * 7
TOKEN_SHAPE = re.compile(r"^[A-Za-z0-9_-]{64}$")


def when(text: str | None) -> datetime:
    assert text is not None
    return datetime.fromisoformat(text)


async def refused(gw: Running, raw: str) -> str:
    with pytest.raises(Unauthorized) as caught:
        await auth_of(gw).passes.verify(raw)
    return caught.value.code


async def test_purchase_returns_the_token_once(api: tuple[Running, Client]) -> None:
    gw, client = api
    user, token = await client.user("alice")
    reply = await client.send("POST", "/tokens/purchase", token=token, json={"duration_hours": 24})
    assert reply.status == 201, reply.text
    bought = reply.json
    assert set(bought) == PASS_FIELDS | {"token"}
    raw = bought["token"]
    assert TOKEN_SHAPE.match(raw), raw
    assert bought["token_id"] == bought["id"]
    uuid.UUID(bought["id"])
    assert bought["user_id"] == user["id"]
    assert bought["duration_hours"] == 24
    assert bought["status"] == "not_activated"
    assert bought["is_active"] is True
    assert bought["activated_at"] is None
    assert bought["expires_at"] is None
    assert bought["revoked_at"] is None

    stored = await row(gw, passes_table, bought["id"])
    assert stored["token_hash"] != raw
    assert re.fullmatch(r"[0-9a-f]{64}", stored["token_hash"])
    for value in stored.values():
        assert raw not in str(value)

    listing = await client.send("GET", "/tokens/my-tokens", token=token)
    assert raw not in listing.text
    assert [set(p) for p in listing.json] == [PASS_FIELDS]

    # Every allowed duration can be bought; others cannot.
    for hours in (1, 12, 168, 720):
        assert (await client.new_pass(token, hours))["duration_hours"] == hours
    for hours in (2, 23, 8784):
        reply = await client.send(
            "POST", "/tokens/purchase", token=token, json={"duration_hours": hours}
        )
        body = assert_error(reply, 400, "invalid_duration")
        assert "1, 12, 24, 168, 720" in body["message"]


async def test_purchase_malformed_body_is_422(api: tuple[Running, Client]) -> None:
    _, client = api
    _, token = await client.user("alice")
    for body in (
        {},
        {"duration_hours": "24"},
        {"duration_hours": -24},
        {"duration_hours": 0},
        {"duration_hours": 24.5},
        {"duration_hours": True},
        {"duration_hours": None},
        {"duration_hours": 10**6},
        {"hours": 24},
    ):
        reply = await client.send("POST", "/tokens/purchase", token=token, json=body)
        found = assert_error(reply, 422, "validation_error")
        assert [d["field"] for d in found["details"]] == ["duration_hours"], body
    reply = await client.send(
        "POST",
        "/tokens/purchase",
        token=token,
        data=b"24",
        headers={"Content-Type": "text/plain"},
    )
    assert_error(reply, 422, "validation_error")
    assert (await client.send("GET", "/tokens/my-tokens?active_only=false", token=token)).json == []
    assert_error(
        await client.send("POST", "/tokens/purchase", json={"duration_hours": 24}),
        401,
        "missing_credential",
    )


async def test_my_tokens_hides_revoked_ones_unless_asked(api: tuple[Running, Client]) -> None:
    _, client = api
    _, token = await client.user("alice")
    _, bob = await client.user("bob")
    keep = await client.new_pass(token, 24)
    gone = await client.new_pass(token, 1)
    await client.new_pass(bob, 1)
    reply = await client.send("POST", f"/tokens/{gone['id']}/revoke", token=token)
    assert reply.status == 200

    for query in ("", "?active_only=true"):
        listed = (await client.send("GET", f"/tokens/my-tokens{query}", token=token)).json
        assert [p["id"] for p in listed] == [keep["id"]]
        assert listed[0]["status"] == "not_activated"
    everything = (await client.send("GET", "/tokens/my-tokens?active_only=false", token=token)).json
    assert {p["id"]: p["status"] for p in everything} == {
        keep["id"]: "not_activated",
        gone["id"]: "revoked",
    }
    reply = await client.send("GET", "/tokens/my-tokens?active_only=perhaps", token=token)
    assert_error(reply, 422, "validation_error")


async def test_status_is_read_only(api: tuple[Running, Client]) -> None:
    gw, client = api
    _, token = await client.user("alice")
    bought = await client.new_pass(token, 12)
    for _ in range(10):
        reply = await client.send("GET", f"/tokens/{bought['id']}/status", token=token)
        assert reply.status == 200
        status = reply.json
        assert set(status) == STATUS_FIELDS
        assert status == {
            "token_id": bought["id"],
            "status": "not_activated",
            "is_active": True,
            "duration_hours": 12,
            "activated_at": None,
            "expires_at": None,
            "time_remaining_seconds": None,
        }
    stored = await row(gw, passes_table, bought["id"])
    assert stored["activated_at"] is None
    listed = (await client.send("GET", "/tokens/my-tokens", token=token)).json
    assert listed[0]["activated_at"] is None
    assert bought["token"] not in reply.text
    # The first real use is what activates it.
    await auth_of(gw).passes.verify(bought["token"])
    assert (await row(gw, passes_table, bought["id"]))["activated_at"] is not None


async def test_revoke_a_pass(settings: Settings) -> None:
    clock = real_now_clock()
    async with running(settings, clock) as (gw, client):
        _, token = await client.user("alice")
        bought = await client.new_pass(token, 24)
        await auth_of(gw).passes.verify(bought["token"])  # activated and cached
        reply = await client.send("POST", f"/tokens/{bought['id']}/revoke", token=token)
        assert reply.status == 200
        revoked = reply.json
        assert set(revoked) == PASS_FIELDS
        assert revoked["status"] == "revoked"
        assert revoked["is_active"] is False
        assert when(revoked["revoked_at"]) == clock.now()
        assert bought["token"] not in reply.text
        assert await refused(gw, bought["token"]) == "revoked_credential"

        status = (await client.send("GET", f"/tokens/{bought['id']}/status", token=token)).json
        assert status["status"] == "revoked"
        assert status["is_active"] is False
        assert status["time_remaining_seconds"] is None

        # Revoking again changes nothing, not even the time.
        clock.advance(minutes=5)
        again = (await client.send("POST", f"/tokens/{bought['id']}/revoke", token=token)).json
        assert again["revoked_at"] == revoked["revoked_at"]
        assert again["status"] == "revoked"

        reply = await client.send("POST", f"/tokens/{uuid.uuid4()}/revoke", token=token)
        assert_error(reply, 404, "token_not_found")
        reply = await client.send("GET", f"/tokens/{uuid.uuid4()}/status", token=token)
        assert_error(reply, 404, "token_not_found")


async def test_another_users_pass_is_not_found(api: tuple[Running, Client]) -> None:
    gw, client = api
    _, alice = await client.user("alice")
    _, bob = await client.user("bob")
    bobs = await client.new_pass(bob, 24)
    for method, path in (
        ("GET", f"/tokens/{bobs['id']}/status"),
        ("POST", f"/tokens/{bobs['id']}/revoke"),
    ):
        reply = await client.send(method, path, token=alice)
        assert_error(reply, 404, "token_not_found")
    assert (await client.send("GET", "/tokens/my-tokens?active_only=false", token=alice)).json == []
    status = (await client.send("GET", f"/tokens/{bobs['id']}/status", token=bob)).json
    assert status["status"] == "not_activated"
    assert (await auth_of(gw).passes.verify(bobs["token"])).username == "bob"


async def test_another_users_pass_answers_like_a_missing_one(api: tuple[Running, Client]) -> None:
    _, client = api
    _, alice = await client.user("alice")
    _, bob = await client.user("bob")
    bobs = await client.new_pass(bob, 24)
    for method, action in (("GET", "status"), ("POST", "revoke")):
        missing = await client.send(method, f"/tokens/{uuid.uuid4()}/{action}", token=alice)
        hidden = await client.send(method, f"/tokens/{bobs['id']}/{action}", token=alice)
        missing_body = assert_error(missing, 404, "token_not_found")
        hidden_body = assert_error(hidden, 404, "token_not_found")
        assert hidden_body["message"] == missing_body["message"]


async def test_pass_expiry_is_shown_by_status(settings_factory: Callable[..., Settings]) -> None:
    clock = real_now_clock()
    settings = settings_factory(jwt_expire_minutes=LONG_JWT)
    async with running(settings, clock) as (gw, client):
        _, token = await client.user("alice")
        short = await client.new_pass(token, 1)
        long = await client.new_pass(token, 24)
        clock.advance(minutes=10)  # bought earlier than first used

        identity = await auth_of(gw).passes.verify(short["token"])
        activated = clock.now()
        assert identity.expires_at == activated + timedelta(hours=1)
        status = (await client.send("GET", f"/tokens/{short['id']}/status", token=token)).json
        assert status["status"] == "active"
        assert status["is_active"] is True
        assert when(status["activated_at"]) == activated
        assert when(status["expires_at"]) == activated + timedelta(hours=1)
        assert status["time_remaining_seconds"] == 3600

        clock.advance(minutes=30)
        status = (await client.send("GET", f"/tokens/{short['id']}/status", token=token)).json
        assert status["status"] == "active"
        assert status["time_remaining_seconds"] == 1800

        clock.advance(minutes=30)  # exactly at expiry
        status = (await client.send("GET", f"/tokens/{short['id']}/status", token=token)).json
        assert status["status"] == "expired"
        assert status["is_active"] is False
        assert status["time_remaining_seconds"] is None
        assert when(status["expires_at"]) == activated + timedelta(hours=1)
        assert await refused(gw, short["token"]) == "expired_credential"

        # The other pass, never used, has not started counting.
        status = (await client.send("GET", f"/tokens/{long['id']}/status", token=token)).json
        assert status["status"] == "not_activated"
        listed = (await client.send("GET", "/tokens/my-tokens", token=token)).json
        assert [p["id"] for p in listed] == [long["id"]]
        everything = (
            await client.send("GET", "/tokens/my-tokens?active_only=false", token=token)
        ).json
        assert {p["id"]: p["status"] for p in everything} == {
            short["id"]: "expired",
            long["id"]: "not_activated",
        }

        # Activated long ago (set in the database): expired by now.
        async with database_of(gw).engine.begin() as conn:
            await conn.execute(
                update(passes_table)
                .where(passes_table.c.id == long["id"])
                .values(activated_at=clock.now() - timedelta(hours=25))
            )
        status = (await client.send("GET", f"/tokens/{long['id']}/status", token=token)).json
        assert status["status"] == "expired"
        assert (await client.send("GET", "/tokens/my-tokens", token=token)).json == []


async def test_an_expired_pass_is_not_listed_as_active(
    settings_factory: Callable[..., Settings],
) -> None:
    clock = real_now_clock()
    async with running(settings_factory(jwt_expire_minutes=LONG_JWT), clock) as (gw, client):
        _, token = await client.user("alice")
        bought = await client.new_pass(token, 1)
        await auth_of(gw).passes.verify(bought["token"])
        clock.advance(hours=2)
        status = (await client.send("GET", f"/tokens/{bought['id']}/status", token=token)).json
        assert status["is_active"] is False
        listed = (await client.send("GET", "/tokens/my-tokens?active_only=false", token=token)).json
        assert listed[0]["status"] == "expired"
        assert listed[0]["is_active"] is False
