"""`/api/v1/keys`: client API keys, shown once, stored as keyed hashes, owned per user."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from ferryman.config.settings import Settings
from ferryman.errors import Unauthorized
from ferryman.store.tables import api_keys as keys_table
from tests.api.helpers import (
    Client,
    assert_error,
    auth_of,
    database_of,
    make_admin,
    real_now_clock,
    row,
    rows,
    running,
)
from tests.support import Running

KEY_FIELDS = {
    "id",
    "user_id",
    "name",
    "prefix",
    "last4",
    "masked",
    "scopes",
    "is_active",
    "expires_at",
    "revoked_at",
    "created_at",
    "last_used_at",
    "rpm",
    "tpm",
    "budget",
}
KEY_SHAPE = re.compile(r"^fm_[A-Za-z0-9_-]{43}$")


async def refused(gw: Running, raw: str) -> str:
    """The code `api_keys.verify` refuses this key with (fails if it accepts it)."""
    with pytest.raises(Unauthorized) as caught:
        await auth_of(gw).api_keys.verify(raw)
    return caught.value.code


def database_bytes(settings: Settings) -> bytes:
    """The SQLite database and its write-ahead log, as bytes."""
    data = b""
    for path in Path(settings.data_dir).glob("ferryman.db*"):
        data += path.read_bytes()
    return data


async def test_create_key_shows_it_once_and_stores_only_a_hash(
    settings: Settings, api: tuple[Running, Client]
) -> None:
    gw, client = api
    user, token = await client.user("alice")
    reply = await client.send("POST", "/keys", token=token, json={"name": "laptop"})
    assert reply.status == 201, reply.text
    created = reply.json
    assert set(created) == KEY_FIELDS | {"key"}
    key = created["key"]
    assert KEY_SHAPE.match(key), key
    assert len(key) == 46
    assert created["prefix"] == key[:7]
    assert created["last4"] == key[-4:]
    assert created["masked"] == f"{key[:7]}…{key[-4:]}"
    assert created["user_id"] == user["id"]
    assert created["name"] == "laptop"
    assert created["scopes"] == ["proxy"]
    assert created["is_active"] is True
    assert created["expires_at"] is None
    assert created["revoked_at"] is None
    assert created["last_used_at"] is None
    assert reply.headers["Cache-Control"] == "no-store"

    # It works, for its owner.
    identity = await auth_of(gw).api_keys.verify(key)
    assert identity.user_id == user["id"]
    assert identity.credential_id == created["id"]
    assert identity.scopes == frozenset({"proxy"})
    # Its use is recorded (by the periodic job, run here at once).
    await auth_of(gw).touches.flush(database_of(gw))
    used = (await client.send("GET", f"/keys/{created['id']}", token=token)).json
    assert used["last_used_at"] is not None
    assert abs(datetime.fromisoformat(used["last_used_at"]) - datetime.now(UTC)) < timedelta(
        minutes=1
    )
    created["last_used_at"] = used["last_used_at"]

    # A second key is another key.
    other = await client.new_key(token, "desktop")
    assert other["key"] != key
    assert other["id"] != created["id"]

    # The listing and the single view never show the key again.
    listing = await client.send("GET", "/keys", token=token)
    assert listing.status == 200
    assert key not in listing.text
    assert other["key"] not in listing.text
    page = listing.json
    assert page["total"] == 2
    assert {k["id"] for k in page["items"]} == {created["id"], other["id"]}
    for item in page["items"]:
        assert set(item) == KEY_FIELDS
    mine = next(k for k in page["items"] if k["id"] == created["id"])
    assert mine == {k: v for k, v in created.items() if k != "key"}
    one = await client.send("GET", f"/keys/{created['id']}", token=token)
    assert one.status == 200
    assert key not in one.text
    assert set(one.json) == KEY_FIELDS

    # The database keeps a keyed hash, and the key in no column and in no byte of the file.
    stored = await row(gw, keys_table, created["id"])
    assert stored["key_hash"] != key
    assert re.fullmatch(r"[0-9a-f]{64}", stored["key_hash"])
    for value in stored.values():
        assert key not in str(value)
    assert key[7:-4].encode() not in database_bytes(settings)


async def test_create_key_scopes_and_expiry(api: tuple[Running, Client]) -> None:
    gw, client = api
    _, token = await client.user("alice")
    later = datetime.now(UTC) + timedelta(days=3)
    local = later.astimezone(timezone(timedelta(hours=2))).isoformat()
    created = await client.new_key(
        token, "ci", scopes=["stats:read", "proxy", "proxy"], expires_at=local
    )
    assert created["scopes"] == ["stats:read", "proxy"]
    expires = datetime.fromisoformat(created["expires_at"])
    assert abs(expires - later) < timedelta(seconds=1)
    shown = (await client.send("GET", f"/keys/{created['id']}", token=token)).json
    assert abs(datetime.fromisoformat(shown["expires_at"]) - later) < timedelta(seconds=1)
    identity = await auth_of(gw).api_keys.verify(created["key"])
    assert identity.scopes == frozenset({"stats:read", "proxy"})

    reply = await client.send("POST", "/keys", token=token, json={"name": "x", "scopes": ["root"]})
    body = assert_error(reply, 400, "invalid_scope")
    assert "'root'" in body["message"]
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    reply = await client.send("POST", "/keys", token=token, json={"name": "x", "expires_at": past})
    assert_error(reply, 400, "invalid_expiry")

    for body in (
        {"name": "x", "expires_at": "2099-01-01T00:00:00"},  # no zone
        {"name": "x", "expires_at": "tomorrow"},
        {"name": ""},
        {"name": "x" * 101},
        {"name": "x", "scopes": "proxy"},
        {"name": "x", "scopes": ["proxy"] * 11},
        {},
    ):
        reply = await client.send("POST", "/keys", token=token, json=body)
        assert_error(reply, 422, "validation_error")
    assert (await client.send("GET", "/keys", token=token)).json["total"] == 1


async def test_update_key_name_and_active(api: tuple[Running, Client]) -> None:
    gw, client = api
    _, token = await client.user("alice")
    created = await client.new_key(token, "old name")
    key_id, raw = created["id"], created["key"]
    await auth_of(gw).api_keys.verify(raw)  # cached now

    reply = await client.send("PATCH", f"/keys/{key_id}", token=token, json={"name": "new name"})
    assert reply.status == 200
    assert reply.json["name"] == "new name"
    assert reply.json["is_active"] is True
    assert raw not in reply.text

    reply = await client.send("PATCH", f"/keys/{key_id}", token=token, json={"active": False})
    assert reply.status == 200
    assert reply.json["is_active"] is False
    assert reply.json["revoked_at"] is None
    assert reply.json["name"] == "new name"
    assert await refused(gw, raw) == "revoked_credential"
    shown = (await client.send("GET", f"/keys/{key_id}", token=token)).json
    assert shown["is_active"] is False

    reply = await client.send("PATCH", f"/keys/{key_id}", token=token, json={"active": True})
    assert reply.status == 200
    assert reply.json["is_active"] is True
    assert (await auth_of(gw).api_keys.verify(raw)).credential_id == key_id

    reply = await client.send("PATCH", f"/keys/{key_id}", token=token, json={"name": ""})
    assert_error(reply, 422, "validation_error")
    reply = await client.send("PATCH", f"/keys/{key_id}", token=token, json={"active": "maybe"})
    assert_error(reply, 422, "validation_error")
    missing = str(uuid.uuid4())
    reply = await client.send("PATCH", f"/keys/{missing}", token=token, json={"name": "x"})
    assert_error(reply, 404, "key_not_found")


async def test_a_key_s_owner_changes_its_scopes_and_the_change_applies_at_once(
    api: tuple[Running, Client],
) -> None:
    gw, client = api
    _, token = await client.user("alice")
    created = await client.new_key(token, "ci")
    key_id, raw = created["id"], created["key"]
    assert (await auth_of(gw).api_keys.verify(raw)).scopes == frozenset({"proxy"})  # cached

    reply = await client.send(
        "PATCH", f"/keys/{key_id}", token=token, json={"scopes": ["stats:read", "stats:read"]}
    )
    assert reply.status == 200
    assert reply.json["scopes"] == ["stats:read"]
    assert reply.json["name"] == "ci"
    assert (await auth_of(gw).api_keys.verify(raw)).scopes == frozenset({"stats:read"})

    for body, status, code in (
        ({"scopes": ["root"]}, 400, "invalid_scope"),
        ({"scopes": []}, 422, "validation_error"),
        ({"scopes": "proxy"}, 422, "validation_error"),
    ):
        reply = await client.send("PATCH", f"/keys/{key_id}", token=token, json=body)
        assert_error(reply, status, code)
    shown = (await client.send("GET", f"/keys/{key_id}", token=token)).json
    assert shown["scopes"] == ["stats:read"]

    await client.send("DELETE", f"/keys/{key_id}", token=token)
    reply = await client.send("PATCH", f"/keys/{key_id}", token=token, json={"scopes": ["proxy"]})
    assert_error(reply, 409, "key_revoked")


async def test_delete_key_revokes_it_for_good(api: tuple[Running, Client]) -> None:
    gw, client = api
    _, token = await client.user("alice")
    created = await client.new_key(token)
    key_id, raw = created["id"], created["key"]
    await auth_of(gw).api_keys.verify(raw)  # cached now

    reply = await client.send("DELETE", f"/keys/{key_id}", token=token)
    assert reply.status == 204
    assert reply.raw == b""
    assert await refused(gw, raw) == "revoked_credential"

    shown = (await client.send("GET", f"/keys/{key_id}", token=token)).json
    assert shown["is_active"] is False
    assert shown["revoked_at"] is not None
    revoked_at = datetime.fromisoformat(shown["revoked_at"])
    assert abs(revoked_at - datetime.now(UTC)) < timedelta(minutes=1)
    listed = (await client.send("GET", "/keys", token=token)).json["items"]
    assert [(k["id"], k["is_active"]) for k in listed] == [(key_id, False)]

    reply = await client.send("PATCH", f"/keys/{key_id}", token=token, json={"active": True})
    assert_error(reply, 409, "key_revoked")
    assert await refused(gw, raw) == "revoked_credential"
    assert (await row(gw, keys_table, key_id))["is_active"] is False

    reply = await client.send("DELETE", f"/keys/{uuid.uuid4()}", token=token)
    assert_error(reply, 404, "key_not_found")


async def test_deleting_a_key_twice_keeps_the_first_revocation_time(settings: Settings) -> None:
    clock = real_now_clock()
    async with running(settings, clock) as (_, client):
        _, token = await client.user("alice")
        key_id = (await client.new_key(token))["id"]
        assert (await client.send("DELETE", f"/keys/{key_id}", token=token)).status == 204
        first = (await client.send("GET", f"/keys/{key_id}", token=token)).json["revoked_at"]
        clock.advance(minutes=5)
        assert (await client.send("DELETE", f"/keys/{key_id}", token=token)).status == 204
        second = (await client.send("GET", f"/keys/{key_id}", token=token)).json["revoked_at"]
        assert second == first


async def test_another_users_key_is_not_found(api: tuple[Running, Client]) -> None:
    gw, client = api
    _, alice = await client.user("alice")
    _, bob = await client.user("bob")
    bobs = await client.new_key(bob, "bob's")
    path = f"/keys/{bobs['id']}"

    nowhere = await client.send("GET", f"/keys/{uuid.uuid4()}", token=alice)
    nowhere_body = assert_error(nowhere, 404, "key_not_found")
    for method, body in (
        ("GET", None),
        ("PATCH", {"name": "mine now"}),
        ("PATCH", {"active": False}),
        ("DELETE", None),
    ):
        reply = await client.send(method, path, token=alice, json=body)
        found = assert_error(reply, 404, "key_not_found")
        assert found["message"] == nowhere_body["message"]
        assert bobs["id"] not in reply.text
    # Untouched, and not in alice's listing.
    shown = (await client.send("GET", path, token=bob)).json
    assert shown["name"] == "bob's"
    assert shown["is_active"] is True
    assert shown["revoked_at"] is None
    assert (await auth_of(gw).api_keys.verify(bobs["key"])).username == "bob"
    assert (await client.send("GET", "/keys", token=alice)).json == {"items": [], "total": 0}
    assert_error(await client.send("GET", "/keys"), 401, "missing_credential")


async def test_admin_manages_other_users_keys(api: tuple[Running, Client]) -> None:
    gw, client = api
    _, root = await make_admin(gw, client)
    alice_user, alice = await client.user("alice")
    bob_user, bob = await client.user("bob")
    await client.new_key(root, "root's")
    await client.new_key(bob, "bob's")

    made = await client.new_key(root, "for alice", user_id=alice_user["id"])
    assert made["user_id"] == alice_user["id"]
    assert (await auth_of(gw).api_keys.verify(made["key"])).username == "alice"
    alices = (await client.send("GET", "/keys", token=alice)).json
    assert [k["id"] for k in alices["items"]] == [made["id"]]

    listed = (await client.send("GET", f"/keys?user_id={alice_user['id']}", token=root)).json
    assert [k["id"] for k in listed["items"]] == [made["id"]]
    assert listed["total"] == 1
    everything = (await client.send("GET", "/keys?all=true", token=root)).json
    assert everything["total"] == 3
    assert {k["name"] for k in everything["items"]} == {"root's", "bob's", "for alice"}
    assert made["key"] not in str(everything)
    own = (await client.send("GET", "/keys", token=root)).json
    assert [k["name"] for k in own["items"]] == ["root's"]

    # An admin reaches any key by id.
    assert (await client.send("GET", f"/keys/{made['id']}", token=root)).status == 200
    assert (await client.send("DELETE", f"/keys/{made['id']}", token=root)).status == 204
    assert (await client.send("GET", f"/keys/{made['id']}", token=alice)).json["is_active"] is False

    reply = await client.send(
        "POST", "/keys", token=root, json={"name": "x", "user_id": str(uuid.uuid4())}
    )
    assert_error(reply, 404, "user_not_found")

    # A user may name themselves, but nobody else.
    own_key = await client.new_key(alice, "self", user_id=alice_user["id"])
    assert own_key["user_id"] == alice_user["id"]
    reply = await client.send(
        "POST", "/keys", token=alice, json={"name": "x", "user_id": bob_user["id"]}
    )
    assert_error(reply, 403, "admin_required")
    for query in (f"?user_id={bob_user['id']}", "?all=true"):
        reply = await client.send("GET", f"/keys{query}", token=alice)
        assert_error(reply, 403, "admin_required")
    assert (await client.send("GET", "/keys", token=bob)).json["total"] == 1


async def test_key_limit_per_user(settings_factory: Callable[..., Settings]) -> None:
    async with running(settings_factory(max_keys_per_user=2)) as (gw, client):
        _, root = await make_admin(gw, client)
        alice_user, alice = await client.user("alice")
        first = await client.new_key(alice, "one")
        await client.new_key(alice, "two")
        reply = await client.send("POST", "/keys", token=alice, json={"name": "three"})
        body = assert_error(reply, 409, "key_limit_reached")
        assert "2" in body["message"]
        # Admins are held to the same limit on the user's behalf.
        reply = await client.send(
            "POST", "/keys", token=root, json={"name": "three", "user_id": alice_user["id"]}
        )
        assert_error(reply, 409, "key_limit_reached")
        assert len(await rows(gw, keys_table)) == 2
        # A deactivated key still counts; a revoked one frees its place.
        await client.send("PATCH", f"/keys/{first['id']}", token=alice, json={"active": False})
        reply = await client.send("POST", "/keys", token=alice, json={"name": "three"})
        assert_error(reply, 409, "key_limit_reached")
        await client.send("DELETE", f"/keys/{first['id']}", token=alice)
        await client.new_key(alice, "three")
        # The limit is per user.
        await client.new_key(root, "root's")


async def test_key_limit_holds_against_concurrent_creations(
    settings_factory: Callable[..., Settings],
) -> None:
    async with running(settings_factory(max_keys_per_user=2)) as (gw, client):
        _, alice = await client.user("alice")
        replies = await asyncio.gather(
            *(client.send("POST", "/keys", token=alice, json={"name": f"k{i}"}) for i in range(10))
        )
        assert sorted(r.status for r in replies) == [201, 201] + [409] * 8
        assert len(await rows(gw, keys_table)) == 2


async def test_keys_are_searched_sorted_and_paged_on_the_server(
    api: tuple[Running, Client],
) -> None:
    _, client = api
    _, token = await client.user("alice")
    _, bobs = await client.user("bob")
    for name in ("alpha", "beta", "gamma_1", "gamma%2", "delta"):
        await client.new_key(token, name)
    await client.new_key(bobs, "gamma bob")

    async def listed(**params: str) -> tuple[list[str], int]:
        reply = await client.send("GET", "/keys", token=token, params=params)
        assert reply.status == 200, reply.text
        return [k["name"] for k in reply.json["items"]], reply.json["total"]

    assert await listed(q="gamma") == (["gamma%2", "gamma_1"], 2)  # newest first
    assert await listed(q="GAMMA", sort="name", order="asc") == (["gamma%2", "gamma_1"], 2)
    assert await listed(q="%") == (["gamma%2"], 1)  # wildcards are literal
    assert await listed(q="a_1") == (["gamma_1"], 1)
    assert (await listed(q="fm_"))[1] == 5  # the prefix is searched too
    names, total = await listed(sort="name", order="asc", limit="2", offset="1")
    assert (names, total) == (["beta", "delta"], 5)
    assert (await listed(limit="2"))[1] == 5
    assert len((await listed())[0]) == 5  # unpaged, as before
    reply = await client.send("GET", "/keys", token=token, params={"sort": "secret"})
    assert_error(reply, 422, "validation_error")
