"""Session logins: the signed HttpOnly cookie, CSRF on unsafe requests, logout, expiry."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from ferryman.config.settings import Settings
from ferryman.store.tables import sessions as sessions_table
from tests.api.helpers import (
    Client,
    assert_error,
    auth_of,
    cookie_attributes,
    database_of,
    real_now_clock,
    rows,
    running,
    session_cookie,
)
from tests.support import PASSWORD, Running


def tampered(cookie: str) -> str:
    """The cookie with one character of its signature changed."""
    value, _, signature = cookie.rpartition(".")
    i = len(signature) // 2
    swapped = "A" if signature[i] != "A" else "B"
    return f"{value}.{signature[:i]}{swapped}{signature[i + 1 :]}"


async def test_session_sets_a_safe_cookie(api: tuple[Running, Client]) -> None:
    gw, client = api
    user = await client.register("alice")
    reply = await client.send(
        "POST",
        "/auth/session",
        json={"username": "alice", "password": PASSWORD},
        headers={"User-Agent": "test-browser/1.0"},
    )
    assert reply.status == 200, reply.text
    body = reply.json
    assert set(body) == {"user", "csrf_token", "expires_at"}
    assert body["user"] == user
    assert len(body["csrf_token"]) >= 32
    expires = datetime.fromisoformat(body["expires_at"])
    assert abs(expires - (datetime.now(UTC) + timedelta(days=1))) < timedelta(minutes=1)

    lines = [c for c in reply.cookies if c.startswith("session_token=")]
    assert len(lines) == 1
    attributes = cookie_attributes(lines[0])
    assert "httponly" in attributes
    assert "secure" in attributes
    assert attributes["samesite"].lower() == "lax"
    assert attributes["path"] == "/"
    assert attributes["max-age"] == "86400"
    assert "domain" not in attributes
    cookie = session_cookie(reply)
    assert cookie is not None
    assert cookie not in reply.text
    assert body["csrf_token"] not in cookie

    # The server keeps a keyed hash of the cookie's token, not the token.
    (stored,) = await rows(gw, sessions_table)
    token = cookie.rpartition(".")[0]
    for value in stored.values():
        assert token not in str(value)
    assert stored["user_id"] == user["id"]
    assert stored["user_agent"] == "test-browser/1.0"
    assert stored["client_ip"] == "127.0.0.1"
    assert stored["revoked_at"] is None

    wrong = await client.send(
        "POST", "/auth/session", json={"username": "alice", "password": "not the password"}
    )
    assert_error(wrong, 401, "invalid_login")
    assert session_cookie(wrong) is None
    assert len(await rows(gw, sessions_table)) == 1


async def test_session_cookie_without_secure_when_configured(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(session_cookie_secure=False, session_max_age=600)
    async with running(settings) as (_, client):
        await client.register("alice")
        _, _, reply = await client.session("alice")
        (line,) = [c for c in reply.cookies if c.startswith("session_token=")]
        attributes = cookie_attributes(line)
        assert "secure" not in attributes
        assert "httponly" in attributes
        assert attributes["samesite"].lower() == "lax"
        assert attributes["max-age"] == "600"


async def test_the_cookie_alone_authenticates_and_unsafe_requests_need_csrf(
    api: tuple[Running, Client],
) -> None:
    _, client = api
    user = await client.register("alice")
    await client.register("bob")
    cookie, csrf, _ = await client.session("alice")
    _, bobs_csrf, _ = await client.session("bob")

    me = await client.send("GET", "/users/me", cookie=cookie)
    assert me.status == 200
    assert me.json == user
    assert (await client.send("GET", "/keys", cookie=cookie)).status == 200

    for sent in (None, "", "wrong", bobs_csrf, csrf + "x"):
        reply = await client.send("POST", "/keys", cookie=cookie, csrf=sent, json={"name": "k"})
        body = assert_error(reply, 403, "csrf_failed")
        assert "X-CSRF-Token" in body["message"]
    assert (await client.send("GET", "/keys", cookie=cookie)).json["total"] == 0

    reply = await client.send("POST", "/keys", cookie=cookie, csrf=csrf, json={"name": "k"})
    assert reply.status == 201
    key_id = reply.json["id"]
    assert reply.json["user_id"] == user["id"]

    for method, body in (("PATCH", {"name": "stolen"}), ("DELETE", None)):
        reply = await client.send(method, f"/keys/{key_id}", cookie=cookie, json=body)
        assert_error(reply, 403, "csrf_failed")
    shown = (await client.send("GET", f"/keys/{key_id}", cookie=cookie)).json
    assert shown["name"] == "k"
    assert shown["is_active"] is True
    reply = await client.send("DELETE", f"/keys/{key_id}", cookie=cookie, csrf=csrf)
    assert reply.status == 204

    # A JWT needs no CSRF token; a bearer header wins over the cookie.
    token = await client.login("bob")
    reply = await client.send("POST", "/keys", token=token, cookie=cookie, json={"name": "b"})
    assert reply.status == 201
    assert reply.json["user_id"] != user["id"]


async def test_logout_ends_the_session(api: tuple[Running, Client]) -> None:
    gw, client = api
    await client.register("alice")
    cookie, csrf, _ = await client.session("alice")
    other, _, _ = await client.session("alice")
    assert (await client.send("GET", "/users/me", cookie=cookie)).status == 200

    # Logging out is a state change: it needs the CSRF token too.
    assert_error(await client.send("POST", "/auth/logout", cookie=cookie), 403, "csrf_failed")
    assert (await client.send("GET", "/users/me", cookie=cookie)).status == 200

    reply = await client.send("POST", "/auth/logout", cookie=cookie, csrf=csrf)
    assert reply.status == 204
    assert reply.raw == b""
    (line,) = [c for c in reply.cookies if c.startswith("session_token=")]
    assert session_cookie(reply) == ""
    attributes = cookie_attributes(line)
    assert attributes["max-age"] == "0"
    assert attributes["path"] == "/"

    after = await client.send("GET", "/users/me", cookie=cookie)
    assert_error(after, 401, "revoked_credential")
    assert "WWW-Authenticate" in after.headers
    reply = await client.send("POST", "/keys", cookie=cookie, csrf=csrf, json={"name": "k"})
    assert_error(reply, 401, "revoked_credential")
    stored = {s["id"]: s for s in await rows(gw, sessions_table)}
    assert sorted(s["revoked_at"] is None for s in stored.values()) == [False, True]
    # The other session of the same user lives on.
    assert (await client.send("GET", "/users/me", cookie=other)).status == 200
    # Logging out without a credential is refused.
    assert_error(await client.send("POST", "/auth/logout"), 401, "missing_credential")


async def test_a_tampered_or_made_up_cookie_is_refused(api: tuple[Running, Client]) -> None:
    _, client = api
    await client.register("alice")
    cookie, _, _ = await client.session("alice")
    value = cookie.rpartition(".")[0]
    for bad in (
        tampered(cookie),
        value,
        value + ".",
        "." + cookie.rpartition(".")[2],
        cookie[:-1],
        "made-up-token.made-up-signature",
    ):
        reply = await client.send("GET", "/users/me", cookie=bad)
        body = assert_error(reply, 401, "invalid_credential")
        assert "session" in body["message"]
    assert (await client.send("GET", "/users/me", cookie=cookie)).status == 200


async def test_sessions_end_after_inactivity_and_at_their_maximum_age(
    settings_factory: Callable[..., Settings],
) -> None:
    clock = real_now_clock()
    settings = settings_factory(session_max_age=3600, session_idle_timeout=1800)
    async with running(settings, clock) as (gw, client):
        await client.register("alice")
        idle, _, _ = await client.session("alice")
        busy, _, _ = await client.session("alice")
        assert (await client.send("GET", "/users/me", cookie=idle)).status == 200

        for _ in range(2):
            clock.advance(minutes=20)
            assert (await client.send("GET", "/users/me", cookie=busy)).status == 200
            # What the gateway's periodic job does: write last use to the database.
            await auth_of(gw).touches.flush(database_of(gw))

        reply = await client.send("GET", "/users/me", cookie=idle)
        body = assert_error(reply, 401, "expired_credential")
        assert "inactivity" in body["message"]

        clock.advance(minutes=21)  # 61 minutes after login, 21 after last use
        reply = await client.send("GET", "/users/me", cookie=busy)
        body = assert_error(reply, 401, "expired_credential")
        assert "inactivity" not in body["message"]

        # The last use was recorded for the admins' view.
        records = await rows(gw, sessions_table)
        seen = sorted(r["last_seen_at"] for r in records)
        assert seen[-1] - seen[0] == timedelta(minutes=40)


async def test_a_password_change_ends_the_other_sessions_and_checks_both_passwords(
    api: tuple[Running, Client],
) -> None:
    _, client = api
    await client.register("alice")
    cookie, csrf, _ = await client.session("alice")
    other, _, _ = await client.session("alice")
    new = "a whole new passphrase"
    path = "/users/me/password"

    reply = await client.send(
        "POST", path, cookie=cookie, json={"current_password": PASSWORD, "new_password": new}
    )
    assert_error(reply, 403, "csrf_failed")  # a state change: CSRF as any other
    wrong = {"current_password": "not it at all", "new_password": new}
    assert_error(await client.send("POST", path, cookie=cookie, csrf=csrf, json=wrong),
                 403, "wrong_password")  # fmt: skip
    weak = {"current_password": PASSWORD, "new_password": "short"}
    assert_error(await client.send("POST", path, cookie=cookie, csrf=csrf, json=weak),
                 400, "weak_password")  # fmt: skip
    assert (await client.send("GET", "/users/me", cookie=other)).status == 200

    good = {"current_password": PASSWORD, "new_password": new}
    reply = await client.send("POST", path, cookie=cookie, csrf=csrf, json=good)
    assert reply.status == 204, reply.text
    assert (await client.send("GET", "/users/me", cookie=cookie)).status == 200  # this one stays
    assert_error(await client.send("GET", "/users/me", cookie=other), 401, "revoked_credential")
    old_login = await client.send(
        "POST", "/auth/login", json={"username": "alice", "password": PASSWORD}
    )
    assert_error(old_login, 401, "invalid_login")
    new_login = await client.send(
        "POST", "/auth/login", json={"username": "alice", "password": new}
    )
    assert new_login.status == 200
