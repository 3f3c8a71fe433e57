"""What the gateway decides about proxied answers whatever the upstream says: its own
cookie, the security headers, and CORS per route."""

from __future__ import annotations

from typing import Any

import pytest

from ferryman.config.settings import Settings
from tests.conftest import LogReader
from tests.fakes.upstream import FakeUpstream
from tests.support import client_session, gateway_dict, serve_app


@pytest.mark.parametrize(
    "cookie",
    [
        "session_token=planted; Path=/; HttpOnly",
        "session_token=; Max-Age=0; Path=/",  # clearing it would log the user out
        " session_token =planted; Domain=example.com",
        "session_token=planted; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
    ],
)
async def test_an_upstream_can_neither_set_nor_clear_the_gateways_session_cookie(
    settings: Settings, upstream: FakeUpstream, logs: LogReader, cookie: str
) -> None:
    async with serve_app(settings, gateway_dict(upstream.url)) as gw, client_session() as http:
        params = [("h", f"Set-Cookie:{cookie}"), ("h", "Set-Cookie:theme=dark; Path=/")]
        for _ in range(2):
            async with http.get(f"{gw.url}/headers", params=params) as r:
                assert r.status == 200
                assert r.headers.getall("Set-Cookie") == ["theme=dark; Path=/"]
    refused = logs.events("upstream_cookie_refused")
    assert len(refused) == 1  # once a minute per upstream, not per response
    assert refused[0]["upstream"] == "up" and refused[0]["cookie_name"] == "session_token"
    assert "planted" not in str(refused)  # the cookie's value is not logged


async def test_cookies_of_other_names_pass(settings: Settings, upstream: FakeUpstream) -> None:
    names = ["session_token_v2=1", "my_session_token=1", "Session_Token=1", "x=session_token=1"]
    async with serve_app(settings, gateway_dict(upstream.url)) as gw, client_session() as http:
        params = [("h", f"Set-Cookie:{c}") for c in names]
        async with http.get(f"{gw.url}/headers", params=params) as r:
            assert r.headers.getall("Set-Cookie") == names


HEADERS: dict[str, Any] = {
    "hsts": {"max_age": 63072000, "preload": True},
    "content_type_options": "nosniff",
    "frame_options": "DENY",
    "referrer_policy": "strict-origin-when-cross-origin",
    "content_security_policy": "default-src 'self'",
}


async def test_security_headers_go_on_proxied_answers_globally_and_per_route(
    settings: Settings, upstream: FakeUpstream
) -> None:
    config = gateway_dict(upstream.url, security={"response_headers": HEADERS})
    config["routes"] += [
        {
            "name": "framed",
            "path": "/app",
            "upstream": "up",
            "strip_prefix": True,
            # Field by field over the global ones; null removes one here.
            "response_headers": {"frame_options": "SAMEORIGIN", "content_security_policy": None},
        },
        {"name": "bare", "path": "/raw", "upstream": "up", "strip_prefix": True,
         "response_headers": None},
    ]  # fmt: skip
    upstream_says = [("h", "X-Frame-Options:ALLOWALL"), ("h", "Referrer-Policy:unsafe-url")]
    async with serve_app(settings, config) as gw, client_session() as http:
        async with http.get(f"{gw.url}/headers", params=upstream_says) as r:
            assert r.headers["Strict-Transport-Security"] == (
                "max-age=63072000; includeSubDomains; preload"
            )
            assert r.headers["X-Content-Type-Options"] == "nosniff"
            assert r.headers.getall("X-Frame-Options") == ["DENY"]  # the upstream's replaced
            assert r.headers.getall("Referrer-Policy") == ["strict-origin-when-cross-origin"]
            assert r.headers["Content-Security-Policy"] == "default-src 'self'"
        async with http.get(f"{gw.url}/app/headers", params=upstream_says) as r:
            assert r.headers.getall("X-Frame-Options") == ["SAMEORIGIN"]
            assert "Content-Security-Policy" not in r.headers
            assert r.headers["X-Content-Type-Options"] == "nosniff"
        async with http.get(f"{gw.url}/raw/headers", params=upstream_says) as r:
            assert r.headers.getall("X-Frame-Options") == ["ALLOWALL"]  # left as it was
            assert "Strict-Transport-Security" not in r.headers
        # A streamed answer gets them too.
        async with http.get(f"{gw.url}/sse", params={"events": "1"}) as r:
            assert r.headers["X-Content-Type-Options"] == "nosniff"
            await r.read()


async def test_no_security_headers_are_added_unless_configured(
    settings: Settings, upstream: FakeUpstream
) -> None:
    async with serve_app(settings, gateway_dict(upstream.url)) as gw, client_session() as http:
        async with http.get(f"{gw.url}/headers") as r:
            for name in ("Strict-Transport-Security", "X-Frame-Options", "Referrer-Policy"):
                assert name not in r.headers


def cors_gateway(upstream: FakeUpstream) -> dict[str, Any]:
    config = gateway_dict(
        upstream.url, security={"cors": {"allow_origins": ["https://console.example"]}}
    )
    config["routes"] += [
        {
            "name": "widget",
            "path": "/widget",
            "upstream": "up",
            "strip_prefix": True,
            "methods": ["POST"],
            "cors": {
                "allow_origins": ["https://shop.example"],
                "allow_methods": ["POST"],
                "enforce": True,
            },
        },
        {"name": "nocors", "path": "/plain", "upstream": "up", "strip_prefix": True,
         "cors": None},
    ]  # fmt: skip
    return config


async def test_a_routes_own_cors_list_is_enforced_before_anything_is_forwarded(
    settings: Settings, upstream: FakeUpstream
) -> None:
    async with serve_app(settings, cors_gateway(upstream)) as gw, client_session() as http:
        shop = {"Origin": "https://shop.example"}
        async with http.post(f"{gw.url}/widget/echo", headers=shop, data=b"{}") as r:
            assert r.status == 200
            assert r.headers["Access-Control-Allow-Origin"] == "https://shop.example"
        for origin in ("https://console.example", "https://evil.example", "null"):
            async with http.post(
                f"{gw.url}/widget/echo", headers={"Origin": origin}, data=b"{}"
            ) as r:
                assert r.status == 403
                body = await r.json()
                assert body["error"] == "origin_not_allowed"
                assert origin in body["message"]
                assert "Access-Control-Allow-Origin" not in r.headers
        # No Origin: not a browser's cross-origin request; the route's auth decides.
        async with http.post(f"{gw.url}/widget/echo", data=b"{}") as r:
            assert r.status == 200
        # A preflight is matched to the route of the method it asks about.
        preflight = {**shop, "Access-Control-Request-Method": "POST"}
        async with http.options(f"{gw.url}/widget/echo", headers=preflight) as r:
            assert r.status == 204
            assert r.headers["Access-Control-Allow-Methods"] == "POST"
        evil = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
        async with http.options(f"{gw.url}/widget/echo", headers=evil) as r:
            assert (r.status, (await r.json())["error"]) == (403, "cors_refused")
    posts = [req for req in upstream.seen.requests if req["method"] == "POST"]
    assert len(posts) == 2  # the refused ones never left


async def test_routes_without_their_own_list_use_the_global_one_or_none(
    settings: Settings, upstream: FakeUpstream
) -> None:
    async with serve_app(settings, cors_gateway(upstream)) as gw, client_session() as http:
        console = {"Origin": "https://console.example"}
        async with http.get(f"{gw.url}/echo", headers=console) as r:
            assert r.headers["Access-Control-Allow-Origin"] == "https://console.example"
        # The global list does not enforce: another origin is forwarded without CORS.
        async with http.get(f"{gw.url}/echo", headers={"Origin": "https://shop.example"}) as r:
            assert r.status == 200 and "Access-Control-Allow-Origin" not in r.headers
        # `cors: null` turns CORS off on a route: its OPTIONS goes to the upstream.
        preflight = {**console, "Access-Control-Request-Method": "GET"}
        async with http.options(f"{gw.url}/plain/echo", headers=preflight) as r:
            assert r.status == 200
            assert (await r.json())["method"] == "OPTIONS"
        # The management API keeps the global list.
        async with http.options(f"{gw.url}/api/v1/auth/login", headers={
            **console, "Access-Control-Request-Method": "POST"}) as r:  # fmt: skip
            assert r.status == 204
            assert r.headers["Access-Control-Allow-Origin"] == "https://console.example"
