"""No password, key, token, JWT, cookie or CSRF token the management API handles is
ever written to a log line."""

from __future__ import annotations

from collections.abc import Callable

from tests.api.helpers import Client, assert_error, auth_of
from tests.conftest import USED_SECRETS, LogReader
from tests.support import Running


async def test_no_credential_reaches_the_logs(
    api: tuple[Running, Client], logs: LogReader, secret: Callable[[str], str]
) -> None:
    gw, client = api
    password = secret("")
    wrong_password = secret("")
    user = await client.register("alice", password, email="alice@example.com")
    assert_error(await client.login_reply("alice", wrong_password), 401, "invalid_login")
    assert_error(await client.login_reply("nobody", password), 401, "invalid_login")
    reply = await client.send(
        "POST", "/auth/login", json={"username": "alice", "password": [password]}
    )
    assert_error(reply, 422, "validation_error")
    jwt = await client.login("alice@example.com", password)
    key = (await client.new_key(jwt, "k"))["key"]
    access_pass = await client.new_pass(jwt, 24)
    cookie, csrf, _ = await client.session("alice", password)
    issued = [jwt, key, access_pass["token"], cookie, csrf]
    USED_SECRETS.update(issued)  # the end-of-run check watches them too

    # Use and misuse them: each in the place it belongs, and where it does not.
    await auth_of(gw).api_keys.verify(key)
    await auth_of(gw).passes.verify(access_pass["token"])
    assert (await client.send("GET", "/users/me", token=jwt)).status == 200
    assert_error(await client.send("GET", "/users/me", token=key), 401, "invalid_credential")
    assert_error(await client.send("GET", f"/keys/{key}", token=jwt), 404, "key_not_found")
    assert_error(await client.send("GET", f"/keys/{jwt}", token=jwt), 404, "key_not_found")
    assert (await client.send("GET", f"/keys?key={key}&token={jwt}", token=jwt)).status == 200
    reply = await client.send("POST", "/keys", cookie=cookie, csrf=csrf + "x", json={"name": "k"})
    assert_error(reply, 403, "csrf_failed")
    reply = await client.send("POST", "/auth/logout", cookie=cookie, csrf=csrf)
    assert reply.status == 204
    assert_error(await client.send("GET", "/users/me", cookie=cookie), 401, "revoked_credential")

    text = logs.text()
    # The log is there and describes what happened ...
    events = {record.get("event") for record in logs.events()}
    assert {
        "user_registered",
        "login_failed",
        "api_key_created",
        "access_pass_created",
        "access_pass_activated",
        "session_started",
        "session_ended",
    } <= events
    assert user["id"] in text
    assert "/api/v1/keys" in text
    # ... and holds none of the secrets, whole or in part.
    for value in (password, wrong_password, *issued):
        assert value not in text
    assert key.removeprefix("fm_") not in text
    assert cookie.rpartition(".")[0] not in text
    assert jwt.split(".")[2] not in text
