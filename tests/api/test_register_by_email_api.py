"""Seed 003's registration: an email address alone, and a password confirmation that is
checked (`POST /api/v1/auth/register {"email", "password", "password_confirm"}`).

Registration is enabled explicitly in every test here: it is off by default."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import jwt
import pytest

from ferryman.config.settings import Settings
from ferryman.store.tables import users as users_table
from tests.api.helpers import Client, assert_error, make_admin, rows, running
from tests.support import PASSWORD, Running

USER_FIELDS = {
    "id", "username", "email", "full_name", "role", "permissions", "is_active", "created_at",
    "rpm", "tpm", "budget",
}  # fmt: skip


@pytest.fixture
async def open_api(
    settings_factory: Callable[..., Settings],
) -> AsyncIterator[tuple[Running, Client]]:
    async with running(settings_factory(registration_enabled=True)) as (gw, client):
        yield gw, client


async def register(client: Client, **body: Any) -> tuple[int, Any]:
    return await client.call("POST", "/auth/register", json=body)


async def test_an_email_alone_registers_an_account_named_by_it(
    open_api: tuple[Running, Client],
) -> None:
    gw, client = open_api
    status, user = await register(
        client, email="Ann@Example.COM", password=PASSWORD, password_confirm=PASSWORD
    )
    assert status == 201, user
    assert set(user) == USER_FIELDS
    uuid.UUID(user["id"])
    assert user["email"] == user["username"] == "ann@example.com"
    assert user["created_at"] and user["role"] == "user"

    # It logs in with its address, in any case, and the token names it.
    for login in ("ann@example.com", " ANN@example.com "):
        token = await client.login(login)
        claims = jwt.decode(token, options={"verify_signature": False})
        assert (claims["sub"], claims["username"]) == (user["id"], "ann@example.com")
    _, me = await client.call("GET", "/users/me", token=token, expect=200)
    assert me == user
    # Seed 003's login body names the address `email`.
    _, body = await client.call(
        "POST", "/auth/login", json={"email": "ann@example.com", "password": PASSWORD}, expect=200
    )
    assert body["token_type"] == "bearer" and body["access_token"]
    assert_error(
        await client.call("POST", "/auth/login", json={"password": PASSWORD}), 422,
        "validation_error",
    )  # fmt: skip

    # The address is taken, as an email and as a name.
    for body in ({}, {"username": "ann2"}):
        assert_error(
            await register(client, email="ann@EXAMPLE.com", password=PASSWORD, **body),
            409, "user_exists",
        )  # fmt: skip
    # Chosen usernames cannot hold an `@`: a plain "ann" is another account.
    other = await client.register("ann", email="ann@example.org")
    assert other["username"] == "ann"

    # Admins list it like any other account.
    _, admin = await make_admin(gw, client)
    _, listed = await client.call("GET", "/admin/users", token=admin, expect=200)
    names = {u["username"]: u["email"] for u in listed["items"]}
    assert names["ann@example.com"] == "ann@example.com"
    assert names["ann"] == "ann@example.org"
    assert len(await rows(gw, users_table)) == 3


async def test_a_long_address_alone_fits_on_each_database(db_settings: Settings) -> None:
    email = "a" * 64 + "@" + "b" * 60 + ".example.com"
    settings = db_settings.model_copy(update={"registration_enabled": True})
    async with running(settings) as (_, client):
        status, user = await register(client, email=email, password=PASSWORD)
        assert status == 201, user
        assert user["username"] == email
        token = await client.login(email)
        _, me = await client.call("GET", "/users/me", token=token, expect=200)
        assert me["id"] == user["id"]


async def test_a_password_confirmation_that_differs_is_422(
    open_api: tuple[Running, Client], secret: Callable[[str], str]
) -> None:
    gw, client = open_api
    password, typo = secret(""), secret("")
    for body in (
        {"email": "ann@example.com"},
        {"username": "ann"},
        {"username": "ann", "email": "ann@example.com", "full_name": "Ann"},
    ):
        reply = await client.send(
            "POST",
            "/auth/register",
            json={**body, "password": password, "password_confirm": typo},
        )
        found = assert_error(reply, 422, "validation_error")
        assert found["details"] == [
            {"field": "password_confirm", "message": "does not match password"}
        ]
        assert found["message"] == "password_confirm: does not match password"
        assert password not in reply.text and typo not in reply.text
    # Checked before the strength of the password: a mismatch is named first.
    reply = await client.send(
        "POST",
        "/auth/register",
        json={"username": "ann", "password": "short", "password_confirm": "shorter"},
    )
    assert_error(reply, 422, "validation_error")
    assert await rows(gw, users_table) == []
    # Equal, it is accepted; a weak password is still refused for what it is.
    assert_error(
        await register(client, username="ann", password="short", password_confirm="short"),
        400, "weak_password",
    )  # fmt: skip
    user = await client.register("ann", password, password_confirm=password)
    assert user["username"] == "ann"
    await client.login("ann", password)


async def test_neither_a_username_nor_an_email_is_422(open_api: tuple[Running, Client]) -> None:
    gw, client = open_api
    for body in ({}, {"username": None, "email": None}):
        found = assert_error(
            await register(client, password=PASSWORD, **body), 422, "validation_error"
        )
        assert found["details"] == [
            {"field": "username", "message": "a username or an email is required"}
        ]
    # An email of the wrong type is named, and so is the missing name it leaves.
    found = assert_error(
        await register(client, email=5, password=PASSWORD), 422, "validation_error"
    )
    assert [d["field"] for d in found["details"]] == ["email", "username"]
    # A bad address, and one that cannot be a username (non-ASCII), are 400s.
    assert_error(await register(client, email="not-an-address", password=PASSWORD), 400,
                 "invalid_email")  # fmt: skip
    found = assert_error(
        await register(client, email="émile@example.com", password=PASSWORD), 400, "invalid_email"
    )
    assert "choose one too" in found["message"]
    assert await rows(gw, users_table) == []
    # With a username as well, such an address is fine.
    user = await client.register("emile", email="émile@example.com")
    assert (user["username"], user["email"]) == ("emile", "émile@example.com")


async def test_registration_closed_refuses_an_email_alone(
    settings_factory: Callable[..., Settings],
) -> None:
    async with running(settings_factory(registration_enabled=False)) as (gw, client):
        found = assert_error(
            await register(client, email="ann@example.com", password=PASSWORD),
            403, "registration_closed",
        )  # fmt: skip
        assert found["message"]
        assert await rows(gw, users_table) == []
