"""`/api/v1/admin`: accounts and everyone's credentials, for admins only."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from ferryman.errors import Unauthorized
from ferryman.store.tables import users as users_table
from tests.api.helpers import Client, assert_error, auth_of, make_admin, row
from tests.support import PASSWORD, Running

CREDENTIAL_SECTIONS = {"user", "api_keys", "access_tokens", "sessions"}


async def code_of(check: Any) -> str:
    with pytest.raises(Unauthorized) as caught:
        await check
    return caught.value.code


async def test_list_users_pages_for_admins_only(api: tuple[Running, Client]) -> None:
    gw, client = api
    root_user, root = await make_admin(gw, client)
    names = ["alice", "bob", "carol", "dave"]
    for name in names:
        await client.register(name)
    _, alice = await client.user("erin")

    reply = await client.send("GET", "/admin/users", token=root)
    assert reply.status == 200
    page = reply.json
    assert page["total"] == 6
    assert [u["username"] for u in page["items"]] == ["root", *names, "erin"]
    assert page["items"][0] == {**root_user, "role": "admin"}
    assert "password" not in reply.text
    assert "argon2" not in reply.text

    window = (await client.send("GET", "/admin/users?offset=1&limit=2", token=root)).json
    assert window["total"] == 6
    assert [u["username"] for u in window["items"]] == ["alice", "bob"]
    tail = (await client.send("GET", "/admin/users?offset=5&limit=100", token=root)).json
    assert [u["username"] for u in tail["items"]] == ["erin"]
    beyond = (await client.send("GET", "/admin/users?offset=50", token=root)).json
    assert beyond == {"items": [], "total": 6}
    for query in ("limit=0", "limit=501", "offset=-1", "limit=ten"):
        reply = await client.send("GET", f"/admin/users?{query}", token=root)
        assert_error(reply, 422, "validation_error")

    body = assert_error(
        await client.send("GET", "/admin/users", token=alice), 403, "admin_required"
    )
    assert "admin" in body["message"]
    assert_error(await client.send("GET", "/admin/users"), 401, "missing_credential")


async def test_disabling_a_user_stops_every_credential_at_once(
    api: tuple[Running, Client],
) -> None:
    gw, client = api
    auth = auth_of(gw)
    _, root = await make_admin(gw, client)
    alice_user, alice = await client.user("alice")
    key = (await client.new_key(alice))["key"]
    access_pass = (await client.new_pass(alice, 24))["token"]
    cookie, _, _ = await client.session("alice")
    # Every credential is verified (and cached) before the change.
    assert (await client.send("GET", "/users/me", token=alice)).status == 200
    assert (await client.send("GET", "/users/me", cookie=cookie)).status == 200
    await auth.api_keys.verify(key)
    await auth.passes.verify(access_pass)

    path = f"/admin/users/{alice_user['id']}"
    reply = await client.send("PATCH", path, token=root, json={"is_active": False})
    assert reply.status == 200
    assert reply.json["is_active"] is False
    assert reply.json["id"] == alice_user["id"]
    assert (await row(gw, users_table, alice_user["id"]))["is_active"] is False

    assert_error(await client.send("GET", "/users/me", token=alice), 401, "account_disabled")
    assert_error(await client.send("GET", "/users/me", cookie=cookie), 401, "account_disabled")
    assert await code_of(auth.api_keys.verify(key)) == "account_disabled"
    assert await code_of(auth.passes.verify(access_pass)) == "account_disabled"
    # The right password does not let the account back in.
    assert_error(await client.login_reply("alice"), 401, "account_disabled")
    assert_error(
        await client.send(
            "POST", "/auth/session", json={"username": "alice", "password": PASSWORD}
        ),
        401,
        "account_disabled",
    )
    # Listing shows it.
    users = (await client.send("GET", "/admin/users", token=root)).json["items"]
    assert {u["username"]: u["is_active"] for u in users} == {"root": True, "alice": False}

    reply = await client.send("PATCH", path, token=root, json={"is_active": True})
    assert reply.status == 200
    assert reply.json["is_active"] is True
    assert (await client.send("GET", "/users/me", token=alice)).status == 200
    assert (await client.send("GET", "/users/me", cookie=cookie)).status == 200
    assert (await auth.api_keys.verify(key)).username == "alice"
    assert (await auth.passes.verify(access_pass)).username == "alice"
    assert (await client.login_reply("alice")).status == 200


async def test_an_admin_cannot_lock_themselves_out(api: tuple[Running, Client]) -> None:
    gw, client = api
    root_user, root = await make_admin(gw, client)
    path = f"/admin/users/{root_user['id']}"
    for body in ({"is_active": False}, {"role": "user"}, {"is_active": False, "role": "admin"}):
        reply = await client.send("PATCH", path, token=root, json=body)
        assert_error(reply, 400, "self_lockout")
    me = (await client.send("GET", "/users/me", token=root)).json
    assert me["role"] == "admin"
    assert me["is_active"] is True
    # Harmless changes to oneself are fine.
    reply = await client.send(
        "PATCH", path, token=root, json={"is_active": True, "permissions": ["stats:read"]}
    )
    assert reply.status == 200
    assert reply.json["permissions"] == ["stats:read"]
    assert reply.json["role"] == "admin"


async def test_role_changes_take_effect_on_existing_tokens(api: tuple[Running, Client]) -> None:
    gw, client = api
    _, root = await make_admin(gw, client)
    alice_user, alice = await client.user("alice")
    bob_user, bob = await client.user("bob")
    path = f"/admin/users/{alice_user['id']}"
    assert_error(await client.send("GET", "/admin/users", token=alice), 403, "admin_required")

    reply = await client.send("PATCH", path, token=root, json={"role": "admin"})
    assert reply.status == 200
    assert reply.json["role"] == "admin"
    # The same JWT, issued while alice was a user, now reaches admin endpoints.
    assert (await client.send("GET", "/admin/users", token=alice)).status == 200
    reply = await client.send(
        "PATCH", f"/admin/users/{bob_user['id']}", token=alice, json={"permissions": ["a", "b"]}
    )
    assert reply.status == 200
    assert reply.json["permissions"] == ["a", "b"]
    assert reply.json["role"] == "user"
    assert (await client.send("GET", "/users/me", token=bob)).json["permissions"] == ["a", "b"]

    # And demotion takes it away again.
    reply = await client.send("PATCH", path, token=root, json={"role": "user"})
    assert reply.json["role"] == "user"
    assert_error(await client.send("GET", "/admin/users", token=alice), 403, "admin_required")

    # A user cannot change anyone, themselves included.
    for target in (alice_user["id"], bob_user["id"]):
        reply = await client.send(
            "PATCH", f"/admin/users/{target}", token=alice, json={"role": "admin"}
        )
        assert_error(reply, 403, "admin_required")
    assert (await client.send("GET", "/users/me", token=alice)).json["role"] == "user"

    for body in ({"role": "root"}, {"is_active": "maybe"}, {"permissions": "all"}):
        reply = await client.send("PATCH", path, token=root, json=body)
        assert_error(reply, 422, "validation_error")
    reply = await client.send(
        "PATCH", f"/admin/users/{uuid.uuid4()}", token=root, json={"is_active": False}
    )
    assert_error(reply, 404, "user_not_found")


async def test_credentials_view_shows_no_secrets(api: tuple[Running, Client]) -> None:
    gw, client = api
    _, root = await make_admin(gw, client)
    alice_user, alice = await client.user("alice")
    _, bob = await client.user("bob")
    keys = [await client.new_key(alice, "one"), await client.new_key(alice, "two")]
    access_pass = await client.new_pass(alice, 24)
    await client.new_key(bob, "bob's")
    cookie, csrf, _ = await client.session("alice")

    reply = await client.send("GET", f"/admin/users/{alice_user['id']}/credentials", token=root)
    assert reply.status == 200
    view = reply.json
    assert set(view) == CREDENTIAL_SECTIONS
    assert view["user"] == alice_user
    assert {k["id"]: k["masked"] for k in view["api_keys"]} == {k["id"]: k["masked"] for k in keys}
    for shown in view["api_keys"]:
        assert "key" not in shown
        assert "key_hash" not in shown
    assert [p["id"] for p in view["access_tokens"]] == [access_pass["id"]]
    assert view["access_tokens"][0]["status"] == "not_activated"
    assert "token" not in view["access_tokens"][0]
    assert "token_hash" not in view["access_tokens"][0]
    (session,) = view["sessions"]
    assert set(session) == {
        "id",
        "user_id",
        "created_at",
        "expires_at",
        "last_seen_at",
        "revoked_at",
        "user_agent",
        "client_ip",
    }
    assert session["user_id"] == alice_user["id"]
    assert session["revoked_at"] is None
    for secret in (*(k["key"] for k in keys), access_pass["token"], cookie, csrf, alice):
        assert secret not in reply.text
    assert cookie.rpartition(".")[0] not in reply.text

    reply = await client.send("GET", f"/admin/users/{uuid.uuid4()}/credentials", token=root)
    assert_error(reply, 404, "user_not_found")
    for token in (alice, bob):
        reply = await client.send(
            "GET", f"/admin/users/{alice_user['id']}/credentials", token=token
        )
        assert_error(reply, 403, "admin_required")


async def test_users_are_searched_and_a_password_is_reset_once(
    api: tuple[Running, Client],
) -> None:
    gw, client = api
    _, root = await make_admin(gw, client)
    for name in ("alice", "alina", "bob"):
        await client.register(name)
    _, alice_token = await client.user("ali_ce")
    found = (await client.send("GET", "/admin/users?q=ali", token=root)).json
    assert [u["username"] for u in found["items"]] == ["alice", "alina", "ali_ce"]
    assert (await client.send("GET", "/admin/users?q=i_c", token=root)).json["total"] == 1

    alice_id = found["items"][0]["id"]
    cookie, _, _ = await client.session("alice")
    reply = await client.send("POST", f"/admin/users/{alice_id}/reset-password", token=root)
    assert reply.status == 200, reply.text
    fresh = reply.json["password"]
    assert len(fresh) >= 16 and reply.json["user"]["id"] == alice_id
    assert_error(await client.send("GET", "/users/me", cookie=cookie), 401, "revoked_credential")
    assert (
        await client.send("POST", "/auth/login", json={"username": "alice", "password": fresh})
    ).status == 200
    old = await client.send("POST", "/auth/login", json={"username": "alice", "password": PASSWORD})
    assert_error(old, 401, "invalid_login")

    reply = await client.send("POST", f"/admin/users/{alice_id}/reset-password", token=alice_token)
    assert_error(reply, 403, "admin_required")
    reply = await client.send("POST", f"/admin/users/{uuid.uuid4()}/reset-password", token=root)
    assert_error(reply, 404, "user_not_found")
