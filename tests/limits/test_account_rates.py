"""A caller's own rates across routes: per-kind defaults, a key's `rpm`, an account's
`rpm`, set through the management API and applied at once."""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from ferryman.config.settings import Settings
from tests.api.helpers import assert_error, make_admin
from tests.fakes.upstream import FakeUpstream
from tests.support import Api, client_session, serve_app


def two_routes(upstream: str, **limiter: Any) -> dict[str, Any]:
    return {
        "upstreams": {"up": {"url": upstream}},
        "routes": [
            {"name": "a", "path": "/a", "upstream": "up", "strip_prefix": True,
             "auth": ["api_key"]},
            {"name": "b", "path": "/b", "upstream": "up", "strip_prefix": True,
             "auth": ["api_key"], "limits": ["100/minute"]},
        ],
        "limiter": limiter,
    }  # fmt: skip


async def statuses(http: aiohttp.ClientSession, url: str, key: str, paths: list[str]) -> list[int]:
    out = []
    for path in paths:
        async with http.get(url + path, headers={"X-API-Key": key}) as response:
            await response.read()
            out.append(response.status)
    return out


async def test_a_default_per_kind_spans_every_route(
    settings: Settings, upstream: FakeUpstream
) -> None:
    gateway = two_routes(upstream.url, defaults={"api_key": "3/minute"})
    async with serve_app(settings, gateway) as gw, client_session() as http:
        api = Api(http, gw.url)
        _, token = await api.user("ann")
        key = (await api.new_key(token))["key"]
        got = await statuses(http, gw.url, key, ["/a/echo/", "/b/echo/", "/a/echo/", "/b/echo/"])
        async with http.get(gw.url + "/b/echo/", headers={"X-API-Key": key}) as response:
            assert response.status == 429
            assert response.headers["RateLimit-Policy"] == "100;w=60, 3;w=60"
            body = json.loads(await response.read())
    assert got == [200, 200, 200, 429]
    assert "(counted by credential)" in body["message"]


async def test_a_keys_and_an_accounts_rpm_set_by_an_admin_apply_at_once(
    settings: Settings, upstream: FakeUpstream
) -> None:
    gateway = two_routes(upstream.url, defaults={"api_key": "100/minute"})
    async with serve_app(settings, gateway) as gw, client_session() as http:
        from tests.api.helpers import Client

        client = Client(http, gw.url)
        _, admin = await make_admin(gw, client)
        user, token = await client.user("bob")
        first = await client.new_key(token, name="one")
        second = await client.new_key(token, name="two")
        # Owners cannot raise (or set) their own key's rate.
        assert_error(
            await client.call("PATCH", f"/keys/{first['id']}", token=token, json={"rpm": 1000}),
            403, "admin_required",
        )  # fmt: skip
        status, patched = await client.call(
            "PATCH", f"/keys/{first['id']}", token=admin, json={"rpm": 2}
        )
        assert status == 200 and patched["rpm"] == 2
        assert await statuses(http, gw.url, first["key"], ["/a/echo/"] * 3) == [200, 200, 429]
        assert await statuses(http, gw.url, second["key"], ["/a/echo/"] * 3) == [200] * 3
        # The account's cap counts both keys together.
        status, changed = await client.call(
            "PATCH", f"/admin/users/{user['id']}", token=admin, json={"rpm": 4}
        )
        assert status == 200 and changed["rpm"] == 4
        assert await statuses(http, gw.url, second["key"], ["/b/echo/"] * 2) == [200, 200]
        assert await statuses(http, gw.url, second["key"], ["/a/echo/"] * 3) == [200, 200, 429]
        # null removes the caps again.
        await client.call("PATCH", f"/admin/users/{user['id']}", token=admin,
                          json={"rpm": None}, expect=200)  # fmt: skip
        status, cleared = await client.call(
            "PATCH", f"/keys/{first['id']}", token=admin, json={"rpm": None}
        )
        assert status == 200 and cleared["rpm"] is None
        assert await statuses(http, gw.url, second["key"], ["/a/echo/"] * 2) == [200, 200]
        assert_error(
            await client.call("PATCH", f"/keys/{first['id']}", token=admin, json={"rpm": 0}),
            422, "validation_error",
        )  # fmt: skip
