"""Who may spend the operator's shared keys: admins, accounts granted `pool:<upstream>`,
and everyone only when the operator opts in. A caller's own keys are always theirs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from ferryman.config.settings import Settings
from tests.fakes.openrouter import CHAT_PATH, FakeOpenRouter
from tests.support import PASSWORD, Api, Running, client_session, serve_app
from tests.upstreams.conftest import pooled, pooled_gateway
from tests.upstreams.test_pool_gateway import CHAT, chat

SHARED = "sk-or-v1-" + "s" * 64
OWN = "sk-or-v1-" + "o" * 64


async def user_with_key(gw: Running, name: str) -> tuple[str, str, str]:
    """A registered account, its JWT and a client key of its own."""
    async with client_session() as http:
        api = Api(http, gw.url)
        user, token = await api.user(name)
        key = (await api.new_key(token))["key"]
    return user["id"], token, key


async def grant(gw: Running, user_id: str, *permissions: str) -> None:
    """What an admin does with `PATCH /api/v1/admin/users/{id}` (tested through the API in
    the end-to-end test)."""
    assert gw.app.auth is not None
    await gw.app.auth.users.set_access(user_id, role=None, permissions=permissions)


def shared_calls(fake: FakeOpenRouter) -> int:
    return len([c for c in fake.calls_for(SHARED) if c.path == CHAT_PATH])


async def test_a_new_account_spends_nothing_of_the_shared_pool_until_granted(
    settings: Settings, openrouter: FakeOpenRouter
) -> None:
    openrouter.add_key(SHARED, label="shared")
    async with pooled(settings, openrouter, {SHARED: None}, auth=["api_key"]) as gw:
        user_id, _, key = await user_with_key(gw, "stranger")
        status, body, _ = await chat(gw.url, json=CHAT, headers={"X-API-Key": key})
        assert status == 403
        assert body["error"] == "shared_pool_not_granted"
        assert "pool:openrouter" in body["message"]
        assert "POST /api/v1/upstream-keys" in body["message"]
        assert shared_calls(openrouter) == 0

        await grant(gw, user_id, "pool:openrouter")
        status, _, label = await chat(gw.url, json=CHAT, headers={"X-API-Key": key})
        assert (status, label) == (200, "shared")

        await grant(gw, user_id, "read:users")  # the grant taken away: refused at once
        status, body, _ = await chat(gw.url, json=CHAT, headers={"X-API-Key": key})
        assert (status, body["error"]) == (403, "shared_pool_not_granted")

        await grant(gw, user_id, "pool:*")  # every pool
        status, _, _ = await chat(gw.url, json=CHAT, headers={"X-API-Key": key})
        assert status == 200
    assert shared_calls(openrouter) == 2


async def test_admins_hold_every_pool(
    settings_factory: Callable[..., Settings], openrouter: FakeOpenRouter
) -> None:
    openrouter.add_key(SHARED, label="shared")
    settings = settings_factory(admin_username="root", admin_password=PASSWORD)
    async with pooled(settings, openrouter, {SHARED: None}, auth=["jwt"]) as gw:
        async with client_session() as http:
            token = await Api(http, gw.url).login("root")
        status, _, label = await chat(
            gw.url, json=CHAT, headers={"Authorization": f"Bearer {token}"}
        )
        assert (status, label) == (200, "shared")


@pytest.mark.parametrize("mode", ["exclusive", "prefer"])
async def test_own_keys_need_no_grant_and_never_spill_into_the_pool(
    settings: Settings, openrouter: FakeOpenRouter, mode: str
) -> None:
    openrouter.add_key(SHARED, label="shared")
    openrouter.add_key(OWN, label="own")
    async with pooled(settings, openrouter, {SHARED: None}, auth=["api_key"], user_keys=mode) as gw:
        user_id, _, key = await user_with_key(gw, "owner")
        assert gw.app.upstream_keys is not None
        await gw.app.upstream_keys.create(
            upstream="openrouter", name="mine", secret=OWN, owner_id=user_id, validate=False
        )
        status, _, label = await chat(gw.url, json=CHAT, headers={"X-API-Key": key})
        assert (status, label) == (200, "own")
        # Their key runs out of credit: with `prefer` a granted account would fall back on
        # the shared pool; this one is not granted, so it is told about its own keys.
        openrouter.set_behaviour(OWN, "402")
        status, body, _ = await chat(gw.url, json=CHAT, headers={"X-API-Key": key})
        assert (status, body["error"]) == (503, "no_upstream_key")
        assert "your upstream keys" in body["message"]
        if mode == "prefer":
            await grant(gw, user_id, "pool:openrouter")
            status, _, label = await chat(gw.url, json=CHAT, headers={"X-API-Key": key})
            assert (status, label) == (200, "shared")
    assert shared_calls(openrouter) == (1 if mode == "prefer" else 0)


async def test_an_upstream_can_lend_its_pool_to_everyone(
    settings: Settings, openrouter: FakeOpenRouter
) -> None:
    openrouter.add_key(SHARED, label="shared")
    async with pooled(
        settings, openrouter, {SHARED: None}, auth=["api_key"], shared_access="everyone"
    ) as gw:
        _, _, key = await user_with_key(gw, "anyone")
        status, _, label = await chat(gw.url, json=CHAT, headers={"X-API-Key": key})
        assert (status, label) == (200, "shared")


async def test_new_accounts_start_with_the_permissions_the_file_lists(
    settings_factory: Callable[..., Settings], openrouter: FakeOpenRouter
) -> None:
    openrouter.add_key(SHARED, label="shared")
    spec: dict[str, Any] = pooled_gateway(openrouter.base_url, auth=["api_key"])
    spec["accounts"] = {"registration": "open", "permissions": ["pool:openrouter"]}
    async with serve_app(settings_factory(registration_enabled=None), spec) as gw:
        assert gw.app.upstream_keys is not None
        await gw.app.upstream_keys.create(
            upstream="openrouter", name="k", secret=SHARED, owner_id=None, validate=False
        )
        _, _, key = await user_with_key(gw, "newcomer")
        async with client_session() as http:
            api = Api(http, gw.url)
            token = await api.login("newcomer")
            _, me = await api.call("GET", "/users/me", token=token, expect=200)
        assert me["permissions"] == ["pool:openrouter"]
        status, _, label = await chat(gw.url, json=CHAT, headers={"X-API-Key": key})
        assert (status, label) == (200, "shared")


async def test_anonymous_callers_are_refused_unless_the_pool_is_lent_to_everyone(
    settings: Settings, openrouter: FakeOpenRouter
) -> None:
    openrouter.add_key(SHARED, label="shared")
    async with pooled(
        settings, openrouter, {SHARED: None}, auth=["none"], shared_access="granted"
    ) as gw:
        status, body, _ = await chat(gw.url, json=CHAT)
        assert (status, body["error"]) == (403, "shared_pool_not_granted")
        assert body["message"].startswith("anonymous requests may not spend")
    assert shared_calls(openrouter) == 0
