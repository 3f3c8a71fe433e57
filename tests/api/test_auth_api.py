"""`/api/v1/auth` and `/api/v1/users/me`: registration, login, throttling, JWTs."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from sqlalchemy import select

from ferryman.clock import FakeClock
from ferryman.config.settings import Settings
from ferryman.store.tables import users as users_table
from tests.api.helpers import (
    Client,
    assert_error,
    auth_of,
    database_of,
    real_now_clock,
    row,
    rows,
    running,
)
from tests.support import PASSWORD, Running

USER_FIELDS = {
    "id",
    "username",
    "email",
    "full_name",
    "role",
    "permissions",
    "is_active",
    "created_at",
    "rpm",
    "tpm",
    "budget",
}


def secret_key(gw: Running) -> str:
    """The key the gateway signs its JWTs with (from the test settings)."""
    key = gw.app.settings.secret_key
    assert key is not None
    return key.get_secret_value()


def claims_for(user_id: str, **changes: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": user_id,
        "username": "someone",
        "role": "user",
        "aud": "ferryman",
        "iat": int(now.timestamp()) - 10,
        "exp": int((now + timedelta(minutes=30)).timestamp()),
    }
    claims.update(changes)
    return claims


# --- register -------------------------------------------------------------------------


async def test_register_returns_the_user_and_never_the_password(
    api: tuple[Running, Client], secret: Callable[[str], str]
) -> None:
    gw, client = api
    password = secret("")
    reply = await client.send(
        "POST",
        "/auth/register",
        json={
            "username": "Alice",
            "password": password,
            "email": "Alice@Example.COM",
            "full_name": "Alice Liddell",
        },
    )
    assert reply.status == 201, reply.text
    user = reply.json
    assert set(user) == USER_FIELDS
    assert user["username"] == "alice"
    assert user["email"] == "alice@example.com"
    assert user["full_name"] == "Alice Liddell"
    assert user["role"] == "user"
    assert user["permissions"] == []
    assert user["is_active"] is True
    uuid.UUID(user["id"])
    assert password not in reply.text
    assert "argon2" not in reply.text
    assert "hash" not in reply.text

    stored = await row(gw, users_table, user["id"])
    assert stored["password_hash"].startswith("$argon2id$")
    assert password not in stored["password_hash"]


async def test_register_an_existing_username_or_email_is_409(api: tuple[Running, Client]) -> None:
    gw, client = api
    await client.register("alice", email="alice@example.com")
    for body in (
        {"username": "alice"},
        {"username": "ALICE"},
        {"username": " alice "},
        {"username": "alice2", "email": "ALICE@example.com"},
    ):
        reply = await client.send("POST", "/auth/register", json={"password": PASSWORD, **body})
        assert_error(reply, 409, "user_exists")
    assert len(await rows(gw, users_table)) == 1
    # Racing registrations of one name: one account, the others 409 (not 500).
    replies = await asyncio.gather(
        *(
            client.send("POST", "/auth/register", json={"username": "bob", "password": PASSWORD})
            for _ in range(8)
        )
    )
    assert sorted(r.status for r in replies) == [201] + [409] * 7
    for reply in replies:
        if reply.status == 409:
            assert_error(reply, 409, "user_exists")
    assert len(await rows(gw, users_table)) == 2


async def test_register_password_length_policy(api: tuple[Running, Client]) -> None:
    gw, client = api
    short = await client.send(
        "POST", "/auth/register", json={"username": "alice", "password": "x" * 11}
    )
    body = assert_error(short, 400, "weak_password")
    assert "at least 12 characters" in body["message"]
    long = await client.send(
        "POST", "/auth/register", json={"username": "alice", "password": "x" * 129}
    )
    body = assert_error(long, 400, "weak_password")
    assert "at most 128 characters" in body["message"]
    assert await rows(gw, users_table) == []
    # Exactly the minimum is enough; no character classes are required by default.
    await client.register("alice", "y" * 12)


CLASSES = {"an uppercase letter", "a lowercase letter", "a digit", "one of !@#$%^&*"}


async def test_register_with_required_classes_names_what_is_missing(
    settings_factory: Callable[..., Settings],
) -> None:
    cases = [
        ("alllowercase1!", {"an uppercase letter"}),
        ("ALLUPPERCASE1!", {"a lowercase letter"}),
        ("NoDigitsHere!!", {"a digit"}),
        ("NoSpecials1234", {"one of !@#$%^&*"}),
        ("Only-Dash-Special-9", {"one of !@#$%^&*"}),
        ("onlylowercaseletters", {"an uppercase letter", "a digit", "one of !@#$%^&*"}),
    ]
    async with running(settings_factory(password_require_classes=True)) as (gw, client):
        for password, missing in cases:
            reply = await client.send(
                "POST", "/auth/register", json={"username": "alice", "password": password}
            )
            body = assert_error(reply, 400, "weak_password")
            for label in missing:
                assert f"must contain {label}" in body["message"], (password, body)
            for label in CLASSES - missing:
                assert label not in body["message"], (password, body)
        short = await client.send(
            "POST", "/auth/register", json={"username": "alice", "password": "Ab1!"}
        )
        body = assert_error(short, 400, "weak_password")
        assert "at least 12" in body["message"]
        assert await rows(gw, users_table) == []
        await client.register("alice", "Complete1!Password")


async def test_register_a_malformed_body_is_422_with_details(
    api: tuple[Running, Client],
) -> None:
    gw, client = api
    cases: list[tuple[dict[str, Any], str]] = [
        ({"json": {"password": PASSWORD}}, "username"),
        ({"json": {"username": "alice"}}, "password"),
        ({"json": {"username": 12345, "password": PASSWORD}}, "username"),
        ({"json": {"username": "alice", "password": ["a", "list"]}}, "password"),
        ({"json": {"username": "ab", "password": PASSWORD}}, "username"),
        ({"json": {"username": "alice", "password": ""}}, "password"),
        ({"json": {"username": "alice", "password": PASSWORD, "email": 5}}, "email"),
        ({"json": ["username", "password"]}, "(body)"),
        ({"data": b"username=alice", "headers": {"Content-Type": "application/json"}}, ""),
        ({}, "(body)"),
    ]
    for kwargs, field in cases:
        reply = await client.send("POST", "/auth/register", **kwargs)
        body = assert_error(reply, 422, "validation_error")
        details = body["details"]
        assert isinstance(details, list) and details, kwargs
        for detail in details:
            assert set(detail) == {"field", "message"}
            assert detail["message"]
        fields = [d["field"] for d in details]
        assert any(f.startswith(field) for f in fields), (kwargs, details)
        assert body["message"] == f"{details[0]['field']}: {details[0]['message']}"
    assert await rows(gw, users_table) == []


async def test_register_invalid_json_names_the_body(api: tuple[Running, Client]) -> None:
    _, client = api
    reply = await client.send(
        "POST",
        "/auth/register",
        data=b'{"username": "alice", ',
        headers={"Content-Type": "application/json"},
    )
    body = assert_error(reply, 422, "validation_error")
    assert [d["field"] for d in body["details"]] == ["(body)"]


async def test_register_an_invalid_username_or_email_is_400(api: tuple[Running, Client]) -> None:
    gw, client = api
    for username in ("bad name", "-leading-dash", "_under", "émile", "a/b/c", "x@y.com"):
        reply = await client.send(
            "POST", "/auth/register", json={"username": username, "password": PASSWORD}
        )
        body = assert_error(reply, 400, "invalid_username")
        assert "3 to 64" in body["message"]
    for email in ("not-an-address", "a@b", "two@@example.com", "sp ace@example.com"):
        reply = await client.send(
            "POST",
            "/auth/register",
            json={"username": "alice", "password": PASSWORD, "email": email},
        )
        assert_error(reply, 400, "invalid_email")
    assert await rows(gw, users_table) == []
    # The longest name allowed, in mixed case, is kept lower-cased.
    user = await client.register("A" + "b" * 63)
    assert user["username"] == "a" + "b" * 63


async def test_register_when_registration_is_closed_is_403(
    settings_factory: Callable[..., Settings],
) -> None:
    async with running(settings_factory(registration_enabled=False)) as (gw, client):
        reply = await client.send(
            "POST", "/auth/register", json={"username": "alice", "password": PASSWORD}
        )
        assert_error(reply, 403, "registration_closed")
        assert await rows(gw, users_table) == []


# --- login ----------------------------------------------------------------------------


async def test_login_returns_a_bearer_jwt_for_the_user(api: tuple[Running, Client]) -> None:
    gw, client = api
    user = await client.register("alice")
    reply = await client.login_reply("alice")
    assert reply.status == 200, reply.text
    body = reply.json
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 3600
    token = body["access_token"]
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["sub"] == user["id"]
    assert claims["aud"] == "ferryman"
    assert claims["username"] == "alice"
    assert claims["exp"] - claims["iat"] == 3600
    assert abs(claims["iat"] - time.time()) < 60
    # And it is signed with the server's secret key.
    jwt.decode(token, secret_key(gw), algorithms=["HS256"], audience="ferryman")
    # A token in a body must not be cached on the way.
    assert reply.headers["Cache-Control"] == "no-store"
    assert reply.headers["X-Content-Type-Options"] == "nosniff"

    # It is the caller's identity on the management API (the scheme in any case).
    for authorization in (f"Bearer {token}", f"bearer {token}"):
        me = await client.send("GET", "/users/me", headers={"Authorization": authorization})
        assert me.status == 200
        assert me.json == user


async def test_login_wrong_password_and_unknown_user_answer_alike(
    api: tuple[Running, Client],
) -> None:
    _, client = api
    await client.register("alice")
    wrong = await client.login_reply("alice", "not the password at all")
    unknown = await client.login_reply("nobody", PASSWORD)
    wrong_body = assert_error(wrong, 401, "invalid_login")
    unknown_body = assert_error(unknown, 401, "invalid_login")
    assert wrong_body["message"] == unknown_body["message"]
    assert wrong.headers.get("WWW-Authenticate") == unknown.headers.get("WWW-Authenticate")
    assert "access_token" not in wrong.text
    reply = await client.send("POST", "/auth/login", json={"username": "alice"})
    body = assert_error(reply, 422, "validation_error")
    assert [d["field"] for d in body["details"]] == ["password"]


async def test_login_by_email_and_any_case(api: tuple[Running, Client]) -> None:
    _, client = api
    user = await client.register("alice", email="alice@example.com")
    for login in ("alice@example.com", "ALICE@Example.com", "ALICE", " alice "):
        reply = await client.login_reply(login)
        assert reply.status == 200, (login, reply.text)
        claims = jwt.decode(reply.json["access_token"], options={"verify_signature": False})
        assert claims["sub"] == user["id"]
    assert_error(await client.login_reply("alice@example.org"), 401, "invalid_login")


def from_ip(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


async def test_login_throttled_after_five_failures_even_with_the_right_password(
    settings_factory: Callable[..., Settings],
) -> None:
    clock = real_now_clock()
    settings = settings_factory(trusted_proxies=["127.0.0.0/8"])
    async with running(settings, clock) as (_, client):
        await client.register("alice")
        here = from_ip("198.51.100.1")
        # Four failures are not enough.
        for _ in range(4):
            reply = await client.login_reply("alice", "wrong password!", here)
            assert_error(reply, 401, "invalid_login")
        assert (await client.login_reply("alice", PASSWORD, here)).status == 200
        clock.advance(seconds=61)  # the address's failures age out too
        for _ in range(5):
            reply = await client.login_reply("alice", "wrong password!", here)
            assert_error(reply, 401, "invalid_login")
        reply = await client.login_reply("alice", PASSWORD, here)
        body = assert_error(reply, 429, "login_throttled")
        assert "access_token" not in reply.text
        assert "try again later" in body["message"]
        assert 1 <= int(reply.headers["Retry-After"]) <= 60
        # Still refused within the window, and the wait shrinks as time passes.
        clock.advance(seconds=30)
        again = await client.login_reply("alice", PASSWORD, here)
        assert_error(again, 429, "login_throttled")
        assert 1 <= int(again.headers["Retry-After"]) <= 30
        # Once the window has passed, the right password works again.
        clock.advance(seconds=31)
        assert (await client.login_reply("alice", PASSWORD, here)).status == 200


async def test_login_throttle_is_per_account_across_addresses(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(trusted_proxies=["127.0.0.0/8"])
    async with running(settings) as (_, client):
        await client.register("alice")
        await client.register("bob")
        # A success clears the account's failures ...
        for i in range(4):
            reply = await client.login_reply("alice", "wrong password!", from_ip(f"198.51.100.{i}"))
            assert_error(reply, 401, "invalid_login")
        assert (await client.login_reply("alice", PASSWORD, from_ip("198.51.100.50"))).status == 200
        # ... then five failures, each from another address, lock the account.
        for i in range(5):
            reply = await client.login_reply(
                "alice", "wrong password!", from_ip(f"198.51.100.{10 + i}")
            )
            assert_error(reply, 401, "invalid_login")
        reply = await client.login_reply("ALICE", PASSWORD, from_ip("198.51.100.99"))
        assert_error(reply, 429, "login_throttled")
        assert int(reply.headers["Retry-After"]) >= 1
        # Another account, from a fresh address, is not affected.
        assert (await client.login_reply("bob", PASSWORD, from_ip("198.51.100.98"))).status == 200


async def test_login_throttle_is_per_address_across_accounts(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(trusted_proxies=["127.0.0.0/8"])
    async with running(settings) as (_, client):
        await client.register("bob")
        attacker = from_ip("203.0.113.7")
        for i in range(3):
            reply = await client.login_reply(f"guess{i}", "wrong password!", attacker)
            assert_error(reply, 401, "invalid_login")
        for i in range(3, 5):  # session logins draw on the same budget
            reply = await client.send(
                "POST",
                "/auth/session",
                json={"username": f"guess{i}", "password": "wrong password!"},
                headers=attacker,
            )
            assert_error(reply, 401, "invalid_login")
        reply = await client.login_reply("bob", PASSWORD, attacker)
        assert_error(reply, 429, "login_throttled")
        assert "Retry-After" in reply.headers
        reply = await client.send(
            "POST",
            "/auth/session",
            json={"username": "bob", "password": PASSWORD},
            headers=attacker,
        )
        assert_error(reply, 429, "login_throttled")
        assert not reply.cookies
        # bob himself, from his own address, still gets in.
        assert (await client.login_reply("bob", PASSWORD, from_ip("192.0.2.1"))).status == 200


async def test_login_throttle_counts_username_and_email_as_one_account(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(trusted_proxies=["127.0.0.0/8"])
    async with running(settings) as (_, client):
        await client.register("alice", email="alice@example.com")
        for i in range(5):
            reply = await client.login_reply("alice", "wrong password!", from_ip(f"198.51.100.{i}"))
            assert_error(reply, 401, "invalid_login")
        # The same account, named by its email, from a fresh address: still throttled.
        reply = await client.login_reply("alice@example.com", PASSWORD, from_ip("198.51.100.77"))
        assert_error(reply, 429, "login_throttled")


async def test_login_throttle_holds_against_concurrent_attempts(
    api: tuple[Running, Client],
) -> None:
    _, client = api
    await client.register("alice")
    replies = await asyncio.gather(
        *(client.login_reply("alice", f"guess number {i}!") for i in range(20))
    )
    statuses = Counter(r.status for r in replies)
    assert set(statuses) <= {401, 429}
    assert statuses[401] <= 5, statuses


async def test_login_unknown_user_costs_as_much_as_a_known_one(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(
        password_hash_time_cost=3,
        password_hash_memory_kib=65536,
        password_hash_parallelism=4,
        login_max_failures=100,
    )
    async with running(settings) as (_, client):
        await client.register("alice")

        async def timed(username: str) -> float:
            start = time.perf_counter()
            reply = await client.login_reply(username, "wrong password, surely")
            elapsed = time.perf_counter() - start
            assert_error(reply, 401, "invalid_login")
            return elapsed

        await timed("nobody-warmup")  # the first unknown name also makes the dummy hash
        known: list[float] = []
        unknown: list[float] = []
        for i in range(3):
            known.append(await timed("alice"))
            unknown.append(await timed(f"nobody{i}"))
        known_median, unknown_median = statistics.median(known), statistics.median(unknown)
        assert known_median > 0.02, known  # the real argon2 cost is in play
        assert unknown_median >= 0.5 * known_median, (known, unknown)


# --- who am I: JWTs on the management API ---------------------------------------------


async def test_me_refuses_missing_and_garbage_credentials(api: tuple[Running, Client]) -> None:
    gw, client = api
    _, token = await client.user("alice")
    reply = await client.send("GET", "/users/me")
    assert_error(reply, 401, "missing_credential")
    assert reply.headers["WWW-Authenticate"].startswith("Bearer")
    assert reply.headers["X-Request-ID"] == reply.json["correlation_id"]

    header, payload, signature = token.split(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    for authorization in (
        "Bearer garbage",
        "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl",
        f"Bearer {header}.{payload}.{flipped}",
        f"Bearer {token}x",
        f"Basic {token}",
        "Bearer ",
        "Bearer",
        "Token abc",
    ):
        reply = await client.send("GET", "/users/me", headers={"Authorization": authorization})
        assert_error(reply, 401, "invalid_credential")
        assert reply.headers["WWW-Authenticate"].startswith("Bearer"), authorization

    # A client API key is valid (for the proxy) but refused here, on reads and writes.
    key = (await client.new_key(token))["key"]
    assert (await auth_of(gw).api_keys.verify(key)).username == "alice"
    for method, path in (("GET", "/users/me"), ("GET", "/keys"), ("POST", "/tokens/purchase")):
        reply = await client.send(method, path, token=key, json={"duration_hours": 1})
        body = assert_error(reply, 401, "invalid_credential")
        assert "API key" in body["message"]


@pytest.mark.parametrize(
    ("overrides", "minutes"),
    [({}, 60), ({"credential_cache_ttl": 7200.0, "jwt_expire_minutes": 5}, 5)],
    ids=["default-reloaded", "short-cached"],
)
async def test_me_with_an_expired_jwt_is_401_expired(
    settings_factory: Callable[..., Settings], overrides: dict[str, Any], minutes: int
) -> None:
    """Expiry is checked when the token is decoded and again while it sits in the cache
    (the second case keeps it cached past its expiry)."""
    clock = real_now_clock()
    async with running(settings_factory(**overrides), clock) as (_, client):
        await client.register("alice")
        body = (await client.login_reply("alice")).json
        assert body["expires_in"] == minutes * 60
        token = body["access_token"]
        claims = jwt.decode(token, options={"verify_signature": False})
        assert claims["exp"] - claims["iat"] == minutes * 60
        assert (await client.send("GET", "/users/me", token=token)).status == 200
        clock.advance(minutes=minutes - 1)
        assert (await client.send("GET", "/users/me", token=token)).status == 200
        clock.advance(minutes=2)
        reply = await client.send("GET", "/users/me", token=token)
        body = assert_error(reply, 401, "expired_credential")
        assert "expired" in body["message"]
        assert "WWW-Authenticate" in reply.headers


async def test_a_token_issued_by_a_clock_running_ahead_is_accepted(settings: Settings) -> None:
    clock = FakeClock(datetime.now(UTC) + timedelta(seconds=30))
    async with running(settings, clock) as (_, client):
        _, token = await client.user("alice")
        claims = jwt.decode(token, options={"verify_signature": False})
        assert claims["iat"] == int(clock.now().timestamp())
        assert (await client.send("GET", "/users/me", token=token)).status == 200


async def test_self_signed_tokens(api: tuple[Running, Client]) -> None:
    gw, client = api
    user, _ = await client.user("alice")
    key = secret_key(gw)

    def sign(claims: dict[str, Any], with_key: str = key) -> str:
        return jwt.encode(claims, with_key, algorithm="HS256")

    # Signed with the server's key: accepted (so the other cases fail for their own reason).
    good = sign(claims_for(user["id"]))
    assert (await client.send("GET", "/users/me", token=good)).status == 200

    past = datetime.now(UTC) - timedelta(hours=2)
    expired = sign(
        claims_for(
            user["id"],
            iat=int(past.timestamp()),
            exp=int((past + timedelta(hours=1)).timestamp()),
        )
    )
    assert_error(await client.send("GET", "/users/me", token=expired), 401, "expired_credential")

    for bad in (
        sign(claims_for(user["id"]), with_key="another-secret-key-" + "y" * 32),
        sign(claims_for(user["id"], aud="someone-else")),
        sign({k: v for k, v in claims_for(user["id"]).items() if k != "exp"}),
        sign(claims_for(user["id"], sub=12345)),
        sign(claims_for(str(uuid.uuid4()))),  # a user that does not exist
        jwt.encode(claims_for(user["id"]), key="", algorithm="none"),
    ):
        reply = await client.send("GET", "/users/me", token=bad)
        assert_error(reply, 401, "invalid_credential")

    # The role comes from the account, not from the token's claims.
    forged = sign(claims_for(user["id"], role="admin", username="root"))
    assert_error(await client.send("GET", "/admin/users", token=forged), 403, "admin_required")
    me = (await client.send("GET", "/users/me", token=forged)).json
    assert me["role"] == "user"
    assert me["username"] == "alice"


async def test_unknown_paths_and_methods_answer_in_the_json_format(
    api: tuple[Running, Client],
) -> None:
    _, client = api
    _, token = await client.user("alice")
    for method, path, allow in (
        ("PUT", "/keys", "GET, POST"),
        ("DELETE", "/users/me", "GET"),
        ("GET", "/auth/login", "POST"),
    ):
        reply = await client.send(method, path, token=token)
        assert_error(reply, 405, "method_not_allowed")
        assert reply.headers["Allow"] == allow
    for path in ("/users/nobody", "/keys/a/b", "/tokens"):
        reply = await client.send("GET", path, token=token)
        assert_error(reply, 404, "not_found")
        assert reply.headers["X-Request-ID"] == reply.json["correlation_id"]
    # The interactive docs are off unless enabled.
    async with client.http.get(client.base.removesuffix("/api/v1") + "/docs") as r:
        assert r.status == 404
        assert (await r.json())["error"] == "not_found"


# --- the first admin, from the settings -----------------------------------------------


async def test_first_admin_from_the_settings(
    settings_factory: Callable[..., Settings], secret: Callable[[str], str]
) -> None:
    password = secret("")
    settings = settings_factory(admin_username="Root", admin_password=password)
    async with running(settings) as (gw, client):
        token = await client.login("root", password)
        me = (await client.send("GET", "/users/me", token=token)).json
        assert me["username"] == "root"
        assert me["role"] == "admin"
        assert me["is_active"] is True
        page = await client.send("GET", "/admin/users", token=token)
        assert page.status == 200
        assert page.json["total"] == 1
        first_id = me["id"]
    # A second start finds the admin and does not add another.
    async with running(settings) as (gw, client):
        token = await client.login("root", password)
        page = (await client.send("GET", "/admin/users", token=token)).json
        assert page["total"] == 1
        assert [u["id"] for u in page["items"]] == [first_id]
        async with database_of(gw).engine.connect() as conn:
            names = (await conn.execute(select(users_table.c.username))).scalars().all()
        assert list(names) == ["root"]


async def test_first_admin_promotes_an_existing_account_and_keeps_its_password(
    settings_factory: Callable[..., Settings], secret: Callable[[str], str]
) -> None:
    async with running(settings_factory()) as (_, client):
        await client.register("root")
    other_password = secret("")
    settings = settings_factory(admin_username="root", admin_password=other_password)
    async with running(settings) as (_, client):
        assert_error(await client.login_reply("root", other_password), 401, "invalid_login")
        token = await client.login("root")
        me = (await client.send("GET", "/users/me", token=token)).json
        assert me["role"] == "admin"
        assert (await client.send("GET", "/admin/users", token=token)).status == 200
