"""Per-route auth in the gateway, through the real app and real upstreams."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from sqlalchemy import event, select

from ferryman.clock import FakeClock
from ferryman.config.settings import Settings
from ferryman.store.tables import access_passes, api_keys
from tests.conftest import LogReader
from tests.fakes.upstream import FakeUpstream
from tests.support import Api, Running, client_session, serve_app


@dataclass
class World:
    gw: Running
    http: aiohttp.ClientSession
    api: Api
    admin: str
    clock: FakeClock

    async def get(self, path: str, **headers: str) -> tuple[int, Any, aiohttp.ClientResponse]:
        async with self.http.get(self.gw.url + path, headers=headers) as r:
            body = await r.read()
            data = None
            if r.headers.get("Content-Type", "").startswith("application/json"):
                data = await r.json()
            return r.status, data if data is not None else body, r


def routes(upstream: FakeUpstream) -> dict[str, Any]:
    return {
        "upstreams": {"up": {"url": upstream.url}},
        "routes": [
            {"name": "open", "path": "/open", "upstream": "up", "upstream_path": "/echo"},
            {
                "name": "keys",
                "path": "/keys-only",
                "upstream": "up",
                "upstream_path": "/echo",
                "strip_prefix": True,
                "auth": ["api_key"],
                "api_key_headers": ["X-Client-API-Key"],
            },
            {
                "name": "stats",
                "path": "/stats-only",
                "upstream": "up",
                "upstream_path": "/echo",
                "strip_prefix": True,
                "auth": ["api_key"],
                "scopes": ["stats:read"],
            },
            {
                "name": "passes",
                "path": "/pass",
                "upstream": "up",
                "upstream_path": "/echo",
                "strip_prefix": True,
                "auth": ["access_pass"],
            },
            {
                "name": "users",
                "path": "/users-api",
                "upstream": "up",
                "upstream_path": "/echo",
                "strip_prefix": True,
                "auth": ["session", "jwt"],
                "permissions": ["read:users"],
                "identity_headers": {"X-User-Id": "user_id", "X-User-Role": "role"},
            },
            {
                "name": "any",
                "path": "/any",
                "upstream": "up",
                "upstream_path": "/echo",
                "strip_prefix": True,
                "auth": ["api_key", "access_pass", "jwt", "session"],
            },
        ],
    }


@asynccontextmanager
async def world(
    settings_factory: Any, upstream: FakeUpstream, **overrides: Any
) -> AsyncIterator[World]:
    settings: Settings = settings_factory(
        admin_username="root", admin_password="root password long", **overrides
    )
    clock = FakeClock()
    async with serve_app(settings, routes(upstream), clock=clock) as gw, client_session() as http:
        api = Api(http, gw.url)
        admin = await api.login("root", "root password long")
        yield World(gw, http, api, admin, clock)


def on_database(db_settings: Settings) -> Any:
    """A settings factory for `world` that keeps `db_settings`' database."""

    def make(**overrides: Any) -> Settings:
        values = {**db_settings.model_dump(), **overrides}
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    return make


def seen(echo: Any, name: str) -> list[str]:
    return [v for k, v in echo["headers"] if k.lower() == name.lower()]


async def test_an_api_key_route_needs_a_key_and_strips_it(
    settings_factory: Any, upstream: FakeUpstream
) -> None:
    async with world(settings_factory, upstream) as w:
        _, token = await w.api.user("alice")
        key = (await w.api.new_key(token))["key"]
        status, body, r = await w.get("/keys-only/x")
        assert status == 401
        assert body["error"] == "missing_credential"
        assert r.headers["WWW-Authenticate"] == 'Bearer realm="ferryman"'
        for headers in (
            {"Authorization": f"Bearer {key}"},
            {"X-API-Key": key},
            {"X-Client-API-Key": key},
        ):
            status, echo, _ = await w.get("/keys-only/x", **headers)
            assert status == 200, headers
            names = {k.lower() for k, _ in echo["headers"]}
            assert names.isdisjoint({"authorization", "x-api-key", "x-client-api-key"})
        status, body, r = await w.get("/keys-only/x", Authorization="Bearer fm_" + "x" * 43)
        assert (status, body["error"]) == (401, "invalid_credential")
        assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]
        # A key never works on an open route as anything but a header to pass along.
        status, echo, _ = await w.get("/open", Authorization=f"Bearer {key}")
        assert status == 200 and seen(echo, "Authorization") == [f"Bearer {key}"]


async def test_revoked_and_disabled_keys_are_refused_at_once(
    db_settings: Settings, upstream: FakeUpstream
) -> None:
    async with world(on_database(db_settings), upstream) as w:
        _, token = await w.api.user("bob")
        created = await w.api.new_key(token)
        key = {"X-API-Key": created["key"]}
        assert (await w.get("/keys-only/x", **key))[0] == 200  # now cached
        await w.api.call("PATCH", f"/keys/{created['id']}", token=token, json={"active": False})
        status, body, _ = await w.get("/keys-only/x", **key)
        assert (status, body["error"]) == (401, "revoked_credential")
        await w.api.call("PATCH", f"/keys/{created['id']}", token=token, json={"active": True})
        assert (await w.get("/keys-only/x", **key))[0] == 200
        await w.api.call("DELETE", f"/keys/{created['id']}", token=token, expect=204)
        status, body, _ = await w.get("/keys-only/x", **key)
        assert (status, body["error"]) == (401, "revoked_credential")


async def test_a_disabled_account_loses_every_credential_at_once(
    settings_factory: Any, upstream: FakeUpstream
) -> None:
    async with world(settings_factory, upstream) as w:
        user, token = await w.api.user("carol")
        key = {"X-API-Key": (await w.api.new_key(token))["key"]}
        access = {"X-Access-Token": (await w.api.new_pass(token))["token"]}
        assert (await w.get("/keys-only/x", **key))[0] == 200
        assert (await w.get("/pass/x", **access))[0] == 200
        await w.api.call(
            "PATCH", f"/admin/users/{user['id']}", token=w.admin, json={"is_active": False}
        )
        for headers in (key, access, {"Authorization": f"Bearer {token}"}):
            status, body, _ = await w.get("/any/x", **headers)
            assert (status, body["error"]) == (401, "account_disabled"), headers
        await w.api.call(
            "PATCH", f"/admin/users/{user['id']}", token=w.admin, json={"is_active": True}
        )
        assert (await w.get("/keys-only/x", **key))[0] == 200


async def test_expired_keys_and_scopes(settings_factory: Any, upstream: FakeUpstream) -> None:
    async with world(settings_factory, upstream) as w:
        _, token = await w.api.user("dave")
        soon = (w.clock.now().replace(microsecond=0)).isoformat().replace("+00:00", "Z")
        expiring = await w.api.new_key(token, expires_at=soon.replace("2026-01-01", "2026-01-02"))
        stats_only = await w.api.new_key(token, scopes=["stats:read"])
        assert (await w.get("/keys-only/x", **{"X-API-Key": expiring["key"]}))[0] == 200
        w.clock.advance(days=1, seconds=1)
        status, body, _ = await w.get("/keys-only/x", **{"X-API-Key": expiring["key"]})
        assert (status, body["error"]) == (401, "expired_credential")
        status, body, _ = await w.get("/keys-only/x", **{"X-API-Key": stats_only["key"]})
        assert (status, body["error"]) == (403, "insufficient_scope")
        assert (await w.get("/stats-only/x", **{"X-API-Key": stats_only["key"]}))[0] == 200


async def test_access_passes_activate_on_first_use_and_forward_identity(
    settings_factory: Any, upstream: FakeUpstream
) -> None:
    async with world(settings_factory, upstream) as w:
        user, token = await w.api.user("erin")
        record = await w.api.new_pass(token, hours=1)
        _, status_before = await w.api.call("GET", f"/tokens/{record['id']}/status", token=token)
        assert status_before["status"] == "not_activated"
        status, echo, _ = await w.get(
            "/pass/x",
            **{"X-Access-Token": record["token"], "X-User-Id": "spoofed", "X-Token-Id": "spoofed"},
        )
        assert status == 200
        assert seen(echo, "X-User-Id") == [user["id"]]
        assert seen(echo, "X-Token-Id") == [record["id"]]
        assert seen(echo, "X-Access-Token") == []
        _, after = await w.api.call("GET", f"/tokens/{record['id']}/status", token=token)
        assert after["status"] == "active"
        assert after["activated_at"].startswith("2026-01-01T00:00:00")
        assert after["expires_at"].startswith("2026-01-01T01:00:00")
        w.clock.advance(minutes=59)
        assert (await w.get("/pass/x", **{"X-Access-Token": record["token"]}))[0] == 200
        w.clock.advance(minutes=1)
        status, body, _ = await w.get("/pass/x", **{"X-Access-Token": record["token"]})
        assert (status, body["error"]) == (401, "expired_credential")


async def test_a_pass_is_activated_exactly_once_under_50_concurrent_first_uses(
    db_settings: Settings, upstream: FakeUpstream, logs: LogReader
) -> None:
    async with world(on_database(db_settings), upstream) as w:
        _, token = await w.api.user("frank")
        record = await w.api.new_pass(token, hours=24)
        results = await asyncio.gather(
            *(w.get("/pass/x", **{"X-Access-Token": record["token"]}) for _ in range(50))
        )
        assert [status for status, _, _ in results] == [200] * 50
        async with w.gw.app.database.engine.connect() as conn:  # type: ignore[union-attr]
            row = (
                await conn.execute(
                    select(access_passes.c.activated_at).where(access_passes.c.id == record["id"])
                )
            ).one()
        assert row.activated_at is not None
    activations = [e for e in logs.events("access_pass_activated") if e["pass_id"] == record["id"]]
    assert len(activations) == 1


async def test_two_processes_activate_a_pass_once(
    settings_factory: Any, upstream: FakeUpstream, logs: LogReader
) -> None:
    """Two gateways on one database race the first use: one UPDATE wins."""
    settings = settings_factory()
    async with (
        serve_app(settings, routes(upstream)) as one,
        serve_app(settings, routes(upstream)) as two,
        client_session() as http,
    ):
        api = Api(http, one.url)
        _, token = await api.user("grace")
        record = await api.new_pass(token)

        async def use(base: str) -> int:
            async with http.get(base + "/pass/x", headers={"X-Access-Token": record["token"]}) as r:
                return r.status

        statuses = await asyncio.gather(*(use(gw.url) for gw in (one, two) for _ in range(10)))
        assert statuses == [200] * 20
    activations = [e for e in logs.events("access_pass_activated") if e["pass_id"] == record["id"]]
    assert len(activations) == 1


async def test_revoked_passes_are_refused(settings_factory: Any, upstream: FakeUpstream) -> None:
    async with world(settings_factory, upstream) as w:
        _, token = await w.api.user("heidi")
        record = await w.api.new_pass(token)
        assert (await w.get("/pass/x", **{"X-Access-Token": record["token"]}))[0] == 200
        await w.api.call("POST", f"/tokens/{record['id']}/revoke", token=token, expect=200)
        status, body, _ = await w.get("/pass/x", **{"X-Access-Token": record["token"]})
        assert (status, body["error"]) == (401, "revoked_credential")


async def test_permissions_sessions_and_jwts(settings_factory: Any, upstream: FakeUpstream) -> None:
    async with world(settings_factory, upstream, session_cookie_secure=False) as w:
        user, token = await w.api.user("ivan")
        bearer = {"Authorization": f"Bearer {token}"}
        status, body, _ = await w.get("/users-api/x", **bearer)
        assert (status, body["error"]) == (403, "insufficient_permissions")
        assert "read:users" in body["message"]
        await w.api.call(
            "PATCH",
            f"/admin/users/{user['id']}",
            token=w.admin,
            json={"permissions": ["read:users"]},
        )
        status, echo, _ = await w.get("/users-api/x", **bearer)
        assert status == 200
        assert seen(echo, "X-User-Id") == [user["id"]]
        assert seen(echo, "X-User-Role") == ["user"]
        assert seen(echo, "Authorization") == []
        # Admins hold every permission.
        status, echo, _ = await w.get("/users-api/x", Authorization=f"Bearer {w.admin}")
        assert status == 200 and seen(echo, "X-User-Role") == ["admin"]

        async with w.http.post(
            w.gw.url + "/api/v1/auth/session",
            json={"username": "ivan", "password": "correct horse battery staple"},
        ) as r:
            assert r.status == 200
            cookie = r.cookies["session_token"].value
            csrf = (await r.json())["csrf_token"]
        jar = {"Cookie": f"theme=dark; session_token={cookie}; lang=en"}
        status, echo, _ = await w.get("/users-api/x", **jar)
        assert status == 200
        assert seen(echo, "Cookie") == ["theme=dark; lang=en"]
        await w.api.call(
            "POST",
            "/auth/logout",
            headers={"Cookie": f"session_token={cookie}", "X-CSRF-Token": csrf},
            expect=204,
        )
        status, body, _ = await w.get("/users-api/x", **jar)
        assert (status, body["error"]) == (401, "revoked_credential")


async def test_idle_and_expired_sessions_and_jwts(
    settings_factory: Any, upstream: FakeUpstream
) -> None:
    async with world(settings_factory, upstream, session_idle_timeout=600) as w:
        _, token = await w.api.user("judy")
        async with w.http.post(
            w.gw.url + "/api/v1/auth/session",
            json={"username": "judy", "password": "correct horse battery staple"},
        ) as r:
            cookie = {"Cookie": f"session_token={r.cookies['session_token'].value}"}
        assert (await w.get("/any/x", **cookie))[0] == 200
        w.clock.advance(seconds=500)
        # Past the cache's 60 s, so this reload must see the activity not yet written.
        assert (await w.get("/any/x", **cookie))[0] == 200
        w.clock.advance(seconds=599)
        assert (await w.get("/any/x", **cookie))[0] == 200
        w.clock.advance(seconds=601)
        status, body, _ = await w.get("/any/x", **cookie)
        assert (status, body["error"]) == (401, "expired_credential")
        assert (await w.get("/any/x", Authorization=f"Bearer {token}"))[0] == 200
        w.clock.advance(minutes=32)  # past the JWT's 60 minutes
        status, body, _ = await w.get("/any/x", Authorization=f"Bearer {token}")
        assert (status, body["error"]) == (401, "expired_credential")


async def test_a_warm_credential_costs_no_database_read(
    settings_factory: Any, upstream: FakeUpstream
) -> None:
    async with world(settings_factory, upstream) as w:
        _, token = await w.api.user("ken")
        key = {"X-API-Key": (await w.api.new_key(token))["key"]}
        access = {"X-Access-Token": (await w.api.new_pass(token))["token"]}
        bogus = {"X-API-Key": "fm_" + "z" * 43}
        for headers in (key, access, bogus, {"Authorization": f"Bearer {token}"}):
            await w.get("/any/x", **headers)  # warm (and activate the pass)
        statements: list[str] = []
        engine = w.gw.app.database.engine.sync_engine  # type: ignore[union-attr]

        def count(*args: Any) -> None:
            statements.append(str(args[2]))

        event.listen(engine, "before_cursor_execute", count)
        try:
            for _ in range(20):
                for headers in (key, access, bogus, {"Authorization": f"Bearer {token}"}):
                    await w.get("/any/x", **headers)
        finally:
            event.remove(engine, "before_cursor_execute", count)
        assert statements == []


async def test_last_used_is_written_in_batches_not_per_request(
    settings_factory: Any, upstream: FakeUpstream
) -> None:
    async with world(settings_factory, upstream) as w:
        _, token = await w.api.user("leo")
        created = await w.api.new_key(token)
        for _ in range(5):
            assert (await w.get("/keys-only/x", **{"X-API-Key": created["key"]}))[0] == 200
        database = w.gw.app.database
        assert database is not None

        async def last_used() -> Any:
            async with database.engine.connect() as conn:
                query = select(api_keys.c.last_used_at).where(api_keys.c.id == created["id"])
                return (await conn.execute(query)).scalar_one()

        assert await last_used() is None
        flushed = await w.gw.app.tasks[0].run_once()
        assert flushed is True
        assert await last_used() == w.clock.now()


async def test_the_default_openrouter_routes_take_the_seed_header(
    settings_factory: Any, upstream: FakeUpstream
) -> None:
    from ferryman.config.defaults import default_gateway

    gateway = default_gateway(upstream.url + "/echo").model_dump(mode="json")
    gateway["upstreams"]["openrouter"]["credential"] = "none"  # no pool until issue 4
    gateway["routes"][0]["api_key_headers"] = ["X-Client-API-Key"]
    async with serve_app(settings_factory(), gateway) as gw, client_session() as http:
        api = Api(http, gw.url)
        _, token = await api.user("mallory")
        key = (await api.new_key(token))["key"]
        async with http.post(
            gw.url + "/v1/chat/completions", json={"model": "m"}, headers={"X-Client-API-Key": key}
        ) as r:
            assert r.status == 200
            echo = await r.json()
    assert echo["raw_path"] == "/echo/chat/completions"
    assert key not in str(echo)


@pytest.mark.parametrize("kind", ["api_key", "access_pass", "jwt", "session"])
async def test_every_kind_is_refused_without_its_credential(
    settings_factory: Any, upstream: FakeUpstream, kind: str
) -> None:
    config = {
        "upstreams": {"up": {"url": upstream.url}},
        "routes": [{"path": "/", "upstream": "up", "auth": [kind]}],
    }
    async with serve_app(settings_factory(), config) as gw, client_session() as http:
        async with http.get(gw.url + "/echo", headers={"X-API-Key": "", "Cookie": "a=b"}) as r:
            assert r.status == 401
            assert (await r.json())["error"] == "missing_credential"
    assert upstream.seen.requests == []
