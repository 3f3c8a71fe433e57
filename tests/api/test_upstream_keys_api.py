"""`/api/v1/upstream-keys`: the pool of provider keys, through a real gateway in front of a
fake OpenRouter. A key is validated with the provider, sealed, and never shown again."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ferryman.config.settings import Settings
from ferryman.store.tables import upstream_keys as upstream_keys_table
from tests.api.helpers import Client, Reply, Template, assert_error, make_admin, row, rows
from tests.conftest import LogReader
from tests.fakes.openrouter import KEY_PATH, FakeOpenRouter
from tests.support import Running, client_session, serve_app
from tests.upstreams.conftest import pooled_gateway

#: A port nothing listens on: the provider cannot be reached there.
CLOSED = "http://127.0.0.1:9/api/v1"

KEY_FIELDS = {
    "id",
    "upstream",
    "owner_id",
    "shared",
    "name",
    "masked",
    "weight",
    "enabled",
    "state",
    "cooling_until",
    "last_error",
    "last_error_at",
    "last_checked_at",
    "validated_at",
    "last_used_at",
    "usage",
    "master_key_id",
    "created_at",
}
USAGE_FIELDS = {
    "requests",
    "failures",
    "provider_usage",
    "limit",
    "limit_remaining",
    "credits_total",
    "credits_used",
    "synced_at",
}


class Recorder(Client):
    """The API client, remembering every response body for the end-of-test leak check."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.bodies: list[bytes] = []

    async def send(self, method: str, path: str, **kwargs: Any) -> Reply:
        reply = await super().send(method, path, **kwargs)
        self.bodies.append(reply.raw)
        return reply

    async def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        expect: int | None = None,
        **kwargs: Any,
    ) -> tuple[int, Any]:
        reply = await self.send(method, path, token=token, **kwargs)
        if expect is not None:
            assert reply.status == expect, (reply.status, reply.text)
        return reply.status, reply.json


@dataclass
class Env:
    gw: Running
    client: Recorder
    fake: FakeOpenRouter
    secret: Callable[[str], str]
    keys: list[str] = field(default_factory=list)
    """Every provider key of the test: none may show in a response body or a log line."""

    def provider_key(self, behaviour: str = "ok", **options: Any) -> str:
        """A fresh key the fake provider knows."""
        key = self.secret("sk-or-v1-")
        self.fake.add_key(key, behaviour=behaviour, **options)
        self.keys.append(key)
        return key

    def unknown_key(self) -> str:
        """A fresh key the fake provider has never heard of."""
        key = self.secret("sk-or-v1-")
        self.keys.append(key)
        return key

    async def add(self, token: str, key: str, *, name: str = "k", **extra: Any) -> Reply:
        body = {"upstream": "openrouter", "name": name, "key": key, **extra}
        return await self.client.send("POST", "/upstream-keys", token=token, json=body)

    async def added(self, token: str, key: str, *, name: str = "k", **extra: Any) -> Any:
        reply = await self.add(token, key, name=name, **extra)
        assert reply.status == 201, (reply.status, reply.text)
        return reply.json

    async def listed(self, token: str) -> list[Any]:
        reply = await self.client.send("GET", "/upstream-keys", token=token)
        assert reply.status == 200, (reply.status, reply.text)
        body = reply.json
        assert body["total"] == len(body["items"])
        return list(body["items"])


@contextlib.asynccontextmanager
async def gateway(
    settings: Settings,
    fake: FakeOpenRouter,
    secret: Callable[[str], str],
    logs: LogReader,
    base_url: str | None = None,
) -> AsyncIterator[Env]:
    """The gateway with `openrouter` pooled in front of `fake` (or `base_url`); after the
    test, no provider key is in any response body or log line."""
    await Template.seed(settings)
    async with (
        serve_app(settings, pooled_gateway(base_url or fake.base_url)) as gw,
        client_session() as http,
    ):
        env = Env(gw, Recorder(http, gw.url), fake, secret)
        yield env
    bodies = b"\n".join(env.client.bodies).decode("utf-8", "replace")
    text = logs.text()
    for key in env.keys:
        assert_hidden(key, bodies, "a response body")
        assert_hidden(key, text, "the logs")


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenRouter]:
    server = await FakeOpenRouter().start()
    yield server
    await server.stop()


@pytest.fixture
async def env(
    settings: Settings, fake: FakeOpenRouter, secret: Callable[[str], str], logs: LogReader
) -> AsyncIterator[Env]:
    async with gateway(settings, fake, secret, logs) as running:
        yield running


def assert_hidden(key: str, text: str, where: str) -> None:
    """No part of `key` beyond its masked form is in `text` (and a failure does not show
    the key either)."""
    if key[8:-4] in text:
        pytest.fail(f"the provider key {masked(key)} was in {where}")


def recent(stamp: str | None) -> bool:
    assert stamp is not None
    return abs(datetime.fromisoformat(stamp) - datetime.now(UTC)) < timedelta(minutes=1)


def masked(key: str) -> str:
    return f"{key[:8]}…{key[-4:]}"


# -- adding --------------------------------------------------------------------------


async def test_adding_validates_the_key_with_the_provider(env: Env) -> None:
    _, root = await make_admin(env.gw, env.client)

    # A working key: stored in the shared pool, healthy, with the provider's figures.
    key = env.provider_key(usage=1.5, limit=10.0)
    reply = await env.add(root, key, name="main", weight=3)
    assert reply.status == 201, reply.text
    assert_hidden(key, reply.text, "the response")
    created = reply.json
    assert set(created) == KEY_FIELDS
    assert set(created["usage"]) == USAGE_FIELDS
    assert created["upstream"] == "openrouter"
    assert created["name"] == "main"
    assert created["masked"] == masked(key)
    assert created["masked"].startswith("sk-or-v1")
    assert created["shared"] is True
    assert created["owner_id"] is None
    assert created["weight"] == 3
    assert created["enabled"] is True
    assert created["state"] == "healthy"
    assert created["cooling_until"] is None
    assert created["last_error"] is None
    assert created["last_error_at"] is None
    assert created["last_used_at"] is None
    assert recent(created["validated_at"])
    assert recent(created["last_checked_at"])
    assert recent(created["created_at"])
    assert created["master_key_id"] == "k1"
    assert created["usage"] == {
        "requests": 0,
        "failures": 0,
        "provider_usage": 1.5,
        "limit": 10.0,
        "limit_remaining": 8.5,
        "credits_total": None,
        "credits_used": None,
        "synced_at": created["usage"]["synced_at"],
    }
    assert recent(created["usage"]["synced_at"])
    # Validated once, with that key, at the provider's /key.
    calls = env.fake.calls_for(key)
    assert [(c.method, c.path, c.status) for c in calls] == [("GET", KEY_PATH, 200)]
    assert calls[0].headers["authorization"] == f"Bearer {key}"
    assert len(env.fake.requests) == 1
    # Every later view shows the same, masked.
    one = await env.client.send("GET", f"/upstream-keys/{created['id']}", token=root)
    assert one.status == 200
    assert one.json == created
    assert await env.listed(root) == [created]
    # Stored sealed (the key is in no column), and in the pool.
    stored = await row(env.gw, upstream_keys_table, created["id"])
    assert (stored["prefix"], stored["last4"]) == (key[:8], key[-4:])
    for value in stored.values():
        assert_hidden(key, str(value), "a column")
    assert env.gw.app.keyring is not None
    pooled = env.gw.app.keyring.find(created["id"])
    assert pooled is not None
    assert pooled.secret == key

    # Keys the provider refuses, or has never heard of, are not stored.
    for refused, code in ((env.provider_key("401"), "401"), (env.provider_key("403"), "403")):
        body = assert_error(await env.add(root, refused), 400, "invalid_upstream_key")
        assert "OpenRouter refused the key" in body["message"], body
        assert code in body["message"], body
        assert [c.path for c in env.fake.calls_for(refused)] == [KEY_PATH]
    body = assert_error(await env.add(root, env.unknown_key()), 400, "invalid_upstream_key")
    assert "OpenRouter refused the key" in body["message"], body
    assert await env.listed(root) == [created]
    assert len(await rows(env.gw, upstream_keys_table)) == 1

    # A key whose limit is used up is taken, out of credit.
    spent = env.provider_key("402", usage=5.0)
    reply = await env.add(root, spent, name="spent")
    assert reply.status == 201, reply.text
    assert reply.json["state"] == "out_of_credit"
    assert reply.json["last_error"]
    assert recent(reply.json["last_error_at"])
    assert recent(reply.json["validated_at"])
    assert reply.json["usage"]["limit_remaining"] == 0
    assert reply.json["usage"]["provider_usage"] == 5.0
    listed = {k["name"]: k["state"] for k in await env.listed(root)}
    assert listed == {"main": "healthy", "spent": "out_of_credit"}

    # `validate: false` stores a key without asking the provider.
    before = len(env.fake.requests)
    unchecked = env.unknown_key()
    reply = await env.add(root, unchecked, name="unchecked", validate=False)
    assert reply.status == 201, reply.text
    assert reply.json["state"] == "healthy"
    assert reply.json["masked"] == masked(unchecked)
    assert reply.json["validated_at"] is None
    assert reply.json["last_checked_at"] is None
    assert reply.json["usage"]["synced_at"] is None
    assert reply.json["usage"]["provider_usage"] is None
    assert len(env.fake.requests) == before
    assert len(await env.listed(root)) == 3


async def test_provider_unreachable_during_validation(
    settings: Settings, fake: FakeOpenRouter, secret: Callable[[str], str], logs: LogReader
) -> None:
    async with gateway(settings, fake, secret, logs, base_url=CLOSED) as env:
        _, root = await make_admin(env.gw, env.client)
        key = env.unknown_key()
        body = assert_error(await env.add(root, key), 502, "validation_unavailable")
        assert "validate: false" in body["message"], body
        assert await env.listed(root) == []
        # Stored unvalidated, it cannot be checked either, and stays as it was.
        created = await env.added(root, key, validate=False)
        reply = await env.client.send("POST", f"/upstream-keys/{created['id']}/check", token=root)
        assert_error(reply, 502, "validation_unavailable")
        shown = (await env.client.send("GET", f"/upstream-keys/{created['id']}", token=root)).json
        assert shown["state"] == "healthy"
        assert shown["last_checked_at"] is None


async def test_bad_requests_and_callers_are_refused(env: Env, logs: LogReader) -> None:
    _, root = await make_admin(env.gw, env.client)
    key = env.provider_key()

    body = assert_error(await env.add(root, key, upstream="nowhere"), 400, "unknown_upstream")
    assert "'nowhere'" in body["message"]
    assert "openrouter" in body["message"]

    reply = await env.client.send(
        "POST",
        "/upstream-keys",
        token=root,
        data=b'{"upstream": "openrouter", "name": "x", "key": ',
        headers={"Content-Type": "application/json"},
    )
    assert_error(reply, 422, "validation_error")
    good = {"upstream": "openrouter", "name": "x", "key": key}
    for bad in (
        {},
        {"upstream": "openrouter", "name": "x"},
        {"upstream": "openrouter", "key": key},
        {"name": "x", "key": key},
        {**good, "name": ""},
        {**good, "name": "x" * 101},
        {**good, "name": 5},
        {**good, "key": 12345678},
        {**good, "key": [key]},
        {**good, "upstream": ["openrouter"]},
        {**good, "shared": "maybe"},
        {**good, "weight": 0},
        {**good, "weight": 1001},
        {**good, "weight": "heavy"},
        {**good, "validate": "perhaps"},
        {**good, "owner_id": str(uuid.uuid4())},
        [good],
    ):
        reply = await env.client.send("POST", "/upstream-keys", token=root, json=bad)
        assert_error(reply, 422, "validation_error")

    for shape in ("sk-or v1-with-a-space-in-it", "short12", " " * 20, "sk-or-v1-\u00e9t\u00e9-key"):
        reply = await env.add(root, shape, validate=False)
        body = assert_error(reply, 400, "invalid_upstream_key")
        if shape.strip():
            assert shape.strip() not in body["message"], body
    body = assert_error(await env.add(root, key + " tail"), 400, "invalid_upstream_key")
    assert "spaces" in body["message"]

    assert env.fake.requests == []  # nothing was worth asking the provider about
    assert await env.listed(root) == []

    # The key put where it does not belong is not echoed back, nor logged.
    await env.client.send("GET", f"/upstream-keys/{key}", token=root)
    await env.client.send("GET", f"/upstream-keys?key={key}", token=root)
    await env.client.send("POST", "/upstream-keys/check", token=root, json={"key": key})
    for body_bytes in env.client.bodies:
        assert_hidden(key, body_bytes.decode(), "a response body")
    assert_hidden(key, logs.text(), "the logs")

    # The shortest key taken, surrounding whitespace removed.
    created = await env.added(root, "  abcdefgh  ", validate=False)
    assert created["masked"] == "abc…"

    # Client API keys are refused here, and so are anonymous callers.
    client_key = (await env.client.new_key(root, "proxy"))["key"]
    assert client_key.startswith("fm_")
    path = f"/upstream-keys/{created['id']}"
    for method, target, sent in (
        ("GET", "/upstream-keys", None),
        ("POST", "/upstream-keys", good),
        ("GET", path, None),
        ("PATCH", path, {"enabled": False}),
        ("POST", path + "/check", None),
        ("DELETE", path, None),
    ):
        reply = await env.client.send(method, target, token=client_key, json=sent)
        assert_error(reply, 401, "invalid_credential")
        reply = await env.client.send(method, target, json=sent)
        assert_error(reply, 401, "missing_credential")
    assert await env.listed(root) == [created]
    assert env.fake.requests == []


# -- who may do what -----------------------------------------------------------------


async def test_users_manage_their_own_keys_only(env: Env) -> None:
    root_user, root = await make_admin(env.gw, env.client)
    alice_user, alice = await env.client.user("alice")
    bob_user, bob = await env.client.user("bob")
    shared = await env.added(root, env.provider_key(), name="pool")
    admins_own = await env.added(root, env.provider_key(), name="root's", shared=False)
    assert admins_own["shared"] is False
    assert admins_own["owner_id"] == root_user["id"]

    alices = await env.added(alice, env.provider_key(), name="alice's")
    assert alices["shared"] is False
    assert alices["owner_id"] == alice_user["id"]
    explicit = await env.added(alice, env.provider_key(), name="alice's 2", shared=False)
    assert explicit["owner_id"] == alice_user["id"]
    refused = env.provider_key()
    body = assert_error(await env.add(alice, refused, shared=True), 403, "admin_required")
    assert "admin" in body["message"]
    assert env.fake.calls_for(refused) == []
    bobs = await env.added(bob, env.provider_key(), name="bob's")
    assert bobs["owner_id"] == bob_user["id"]

    # Each user lists only their own; the admin lists every key.
    assert [k["id"] for k in await env.listed(alice)] == [alices["id"], explicit["id"]]
    assert [k["id"] for k in await env.listed(bob)] == [bobs["id"]]
    everything = {k["id"] for k in await env.listed(root)}
    assert everything == {shared["id"], admins_own["id"], alices["id"], explicit["id"], bobs["id"]}

    # Someone else's key, or a shared one, is as unknown to a user as a made-up id.
    nowhere = f"/upstream-keys/{uuid.uuid4()}"
    expected = assert_error(
        await env.client.send("GET", nowhere, token=bob), 404, "upstream_key_not_found"
    )
    alices_path = f"/upstream-keys/{alices['id']}"
    attempts = [
        ("GET", alices_path, None),
        ("PATCH", alices_path, {"name": "mine now", "enabled": False}),
        ("POST", alices_path + "/check", None),
        ("DELETE", alices_path, None),
        ("GET", f"/upstream-keys/{shared['id']}", None),
        ("DELETE", f"/upstream-keys/{shared['id']}", None),
        ("PATCH", f"/upstream-keys/{admins_own['id']}", {"weight": 2}),
        ("POST", nowhere + "/check", None),
    ]
    for method, path, sent in attempts:
        reply = await env.client.send(method, path, token=bob, json=sent)
        found = assert_error(reply, 404, "upstream_key_not_found")
        assert found["message"] == expected["message"]
        assert path.split("/")[2] not in reply.text

    # Untouched.
    shown = await env.client.send("GET", f"/upstream-keys/{alices['id']}", token=alice)
    assert shown.status == 200
    assert (shown.json["name"], shown.json["enabled"]) == ("alice's", True)
    assert len(await rows(env.gw, upstream_keys_table)) == 5

    # The admin reaches a user's key by id.
    reply = await env.client.send("GET", f"/upstream-keys/{alices['id']}", token=root)
    assert reply.status == 200
    assert reply.json["owner_id"] == alice_user["id"]
    reply = await env.client.send(
        "PATCH", f"/upstream-keys/{bobs['id']}", token=root, json={"name": "renamed by root"}
    )
    assert reply.status == 200
    assert reply.json["name"] == "renamed by root"


async def test_user_key_limit(
    settings_factory: Callable[..., Settings],
    fake: FakeOpenRouter,
    secret: Callable[[str], str],
    logs: LogReader,
) -> None:
    settings = settings_factory(max_upstream_keys_per_user=2)
    async with gateway(settings, fake, secret, logs) as env:
        root_user, root = await make_admin(env.gw, env.client)
        alice_user, alice = await env.client.user("alice")

        # Six adds at once: exactly two are taken.
        keys = [env.unknown_key() for _ in range(6)]
        replies = await asyncio.gather(
            *(env.add(alice, key, name=f"k{n}", validate=False) for n, key in enumerate(keys))
        )
        assert sorted(r.status for r in replies) == [201, 201, 409, 409, 409, 409]
        for reply in replies:
            if reply.status == 409:
                body = assert_error(reply, 409, "upstream_key_limit_reached")
                assert "2" in body["message"]
        stored = await rows(env.gw, upstream_keys_table)
        assert [r["owner_id"] for r in stored] == [alice_user["id"]] * 2
        mine = await env.listed(alice)
        assert len(mine) == 2

        # And one more, validated or not, is refused.
        third = env.provider_key()
        assert_error(await env.add(alice, third), 409, "upstream_key_limit_reached")
        reply = await env.add(alice, env.unknown_key(), validate=False)
        assert_error(reply, 409, "upstream_key_limit_reached")
        assert await env.listed(alice) == mine

        # The limit is per user, and the shared pool is not held to it.
        own = await env.added(root, env.provider_key(), shared=False, validate=False)
        assert own["owner_id"] == root_user["id"]
        for number in range(3):
            await env.added(root, env.provider_key(), name=f"pool {number}", validate=False)

        # A deleted key frees its place.
        reply = await env.client.send("DELETE", f"/upstream-keys/{mine[0]['id']}", token=alice)
        assert reply.status == 204
        await env.added(alice, third, name="third")
        assert [k["name"] for k in await env.listed(alice)] == [mine[1]["name"], "third"]


# -- editing, deleting, checking -----------------------------------------------------


async def test_edit_check_and_delete(env: Env) -> None:
    _, root = await make_admin(env.gw, env.client)
    key = env.provider_key(usage=2.0, limit=20.0)
    created = await env.added(root, key, name="old")
    path = f"/upstream-keys/{created['id']}"
    assert env.gw.app.keyring is not None

    # PATCH: name, weight, enabled; strict types.
    reply = await env.client.send("PATCH", path, token=root, json={"name": "new", "weight": 7})
    assert reply.status == 200, reply.text
    assert (reply.json["name"], reply.json["weight"]) == ("new", 7)
    assert (reply.json["enabled"], reply.json["state"]) == (True, "healthy")

    reply = await env.client.send("PATCH", path, token=root, json={"enabled": False})
    assert reply.status == 200
    assert (reply.json["enabled"], reply.json["state"], reply.json["name"]) == (
        False,
        "disabled",
        "new",
    )
    assert [(k["enabled"], k["state"]) for k in await env.listed(root)] == [(False, "disabled")]
    pooled = env.gw.app.keyring.find(created["id"])
    assert pooled is not None
    assert pooled.enabled is False
    reply = await env.client.send("PATCH", path, token=root, json={"enabled": True})
    assert (reply.json["enabled"], reply.json["state"]) == (True, "healthy")

    for bad in (
        {"enabled": "yes"},
        {"enabled": 1},
        {"weight": "5"},
        {"weight": 0},
        {"weight": 1001},
        {"weight": 2.5},
        {"name": ""},
        {"name": "x" * 101},
        {"reset_health": "true"},
        {"key": "sk-or-v1-replaced"},
        {"shared": True},
    ):
        reply = await env.client.send("PATCH", path, token=root, json=bad)
        assert_error(reply, 422, "validation_error")
    reply = await env.client.send("PATCH", path, token=root, json={})
    assert reply.status == 200
    assert (reply.json["name"], reply.json["weight"], reply.json["enabled"]) == ("new", 7, True)

    # Check: the provider now refuses the key, so it becomes invalid.
    env.fake.set_behaviour(key, "401")
    reply = await env.client.send("POST", path + "/check", token=root)
    assert reply.status == 200, reply.text
    checked = reply.json
    assert set(checked) == {"key", "result", "message"}
    assert checked["result"] == "invalid"
    assert "OpenRouter refused the key" in checked["message"]
    assert checked["key"]["state"] == "invalid"
    assert checked["key"]["last_error"]
    assert checked["key"]["masked"] == masked(key)
    assert (await env.client.send("GET", path, token=root)).json["state"] == "invalid"
    assert (await row(env.gw, upstream_keys_table, created["id"]))["state"] == "invalid"
    assert env.fake.calls_for(key)[-1].path == KEY_PATH

    # It takes the key again: a check restores it, and syncs its usage.
    env.fake.set_behaviour(key, "ok")
    env.fake.keys[key].usage = 4.0
    env.fake.credits = (50.0, 12.5)
    reply = await env.client.send("POST", path + "/check", token=root)
    assert reply.status == 200, reply.text
    checked = reply.json
    assert checked["result"] == "healthy"
    assert checked["key"]["state"] == "healthy"
    usage = checked["key"]["usage"]
    assert (usage["provider_usage"], usage["limit"], usage["limit_remaining"]) == (4.0, 20.0, 16.0)
    assert (usage["credits_total"], usage["credits_used"]) == (50.0, 12.5)
    assert recent(checked["key"]["last_checked_at"])
    assert (await env.client.send("GET", path, token=root)).json["state"] == "healthy"
    assert (await row(env.gw, upstream_keys_table, created["id"]))["state"] == "healthy"

    # reset_health restores a key to healthy too.
    spent = await env.added(root, env.provider_key("402"), name="spent")
    assert spent["state"] == "out_of_credit"
    spent_path = f"/upstream-keys/{spent['id']}"
    reply = await env.client.send("PATCH", spent_path, token=root, json={"reset_health": True})
    assert reply.status == 200
    assert reply.json["state"] == "healthy"
    assert (await env.client.send("GET", spent_path, token=root)).json["state"] == "healthy"
    assert (await row(env.gw, upstream_keys_table, spent["id"]))["state"] == "healthy"

    # DELETE: gone from the API and the pool; a second DELETE finds nothing.
    reply = await env.client.send("DELETE", path, token=root)
    assert reply.status == 204
    assert reply.raw == b""
    assert_error(await env.client.send("GET", path, token=root), 404, "upstream_key_not_found")
    assert_error(await env.client.send("DELETE", path, token=root), 404, "upstream_key_not_found")
    reply = await env.client.send("PATCH", path, token=root, json={"name": "x"})
    assert_error(reply, 404, "upstream_key_not_found")
    reply = await env.client.send("POST", path + "/check", token=root)
    assert_error(reply, 404, "upstream_key_not_found")
    assert [k["id"] for k in await env.listed(root)] == [spent["id"]]
    assert env.gw.app.keyring.find(created["id"]) is None
    assert env.gw.app.keyring.find(spent["id"]) is not None

    # A user edits, checks and deletes their own key.
    _, alice = await env.client.user("alice")
    own = await env.added(alice, env.provider_key("402"), name="mine", validate=False)
    assert own["state"] == "healthy"
    own_path = f"/upstream-keys/{own['id']}"
    reply = await env.client.send("PATCH", own_path, token=alice, json={"weight": 2})
    assert (reply.status, reply.json["weight"]) == (200, 2)
    reply = await env.client.send("POST", own_path + "/check", token=alice)
    assert reply.status == 200
    assert (reply.json["result"], reply.json["key"]["state"]) == ("out_of_credit", "out_of_credit")
    assert (await env.client.send("DELETE", own_path, token=alice)).status == 204
    assert await env.listed(alice) == []
