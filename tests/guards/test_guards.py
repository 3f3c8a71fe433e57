"""Trusted hosts, CORS and the security headers on gateway-made responses."""

from __future__ import annotations

from ferryman.config.settings import Settings
from tests.fakes.upstream import FakeUpstream
from tests.support import client_session, gateway_dict, serve_app


async def test_security_headers_on_gateway_made_responses_only(
    settings: Settings, upstream: FakeUpstream
) -> None:
    config = gateway_dict(upstream.url, methods=["GET"])
    async with serve_app(settings, config) as gw, client_session() as http:
        for method, path in (("POST", "/echo"), ("GET", "/health/live")):
            async with http.request(method, f"{gw.url}{path}") as r:
                assert r.headers["X-Content-Type-Options"] == "nosniff"
                assert r.headers["X-Frame-Options"] == "DENY"
                assert r.headers["Content-Security-Policy"].startswith("default-src 'none'")
                assert "Strict-Transport-Security" not in r.headers
                assert "Date" in r.headers
        async with http.get(f"{gw.url}/echo") as r:
            # A proxied response carries the upstream's headers, not the gateway's.
            assert "Content-Security-Policy" not in r.headers


async def test_hsts_when_configured(settings: Settings, upstream: FakeUpstream) -> None:
    config = gateway_dict(
        upstream.url,
        security={"hsts": {"max_age": 100, "include_subdomains": False, "preload": True}},
    )
    async with serve_app(settings, config) as gw, client_session() as http:
        async with http.get(f"{gw.url}/health/live") as r:
            assert r.headers["Strict-Transport-Security"] == "max-age=100; preload"


async def test_trusted_hosts(settings: Settings, upstream: FakeUpstream) -> None:
    config = gateway_dict(
        upstream.url, security={"trusted_hosts": ["api.example.com", "*.tenants.example.com"]}
    )
    async with serve_app(settings, config) as gw, client_session() as http:
        for host in ("api.example.com", "API.example.com:8080", "a.tenants.example.com"):
            async with http.get(f"{gw.url}/echo", headers={"Host": host}) as r:
                assert r.status == 200, host
        for host in ("evil.example", "tenants.example.com", "api.example.com.evil"):
            async with http.get(f"{gw.url}/echo", headers={"Host": host}) as r:
                assert r.status == 400, host
                assert (await r.json())["error"] == "invalid_host"
    assert len(upstream.seen.requests) == 3


async def test_cors_preflight_and_actual_requests(
    settings: Settings, upstream: FakeUpstream
) -> None:
    config = gateway_dict(
        upstream.url,
        security={
            "cors": {
                "allow_origins": ["https://app.example.com"],
                "allow_methods": ["GET", "POST"],
                "allow_headers": ["Content-Type", "Authorization"],
                "allow_credentials": True,
                "max_age": 300,
            }
        },
    )
    good = "https://app.example.com"
    async with serve_app(settings, config) as gw, client_session() as http:
        preflight = {
            "Origin": good,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, authorization",
        }
        async with http.options(f"{gw.url}/echo", headers=preflight) as r:
            assert r.status == 204
            assert r.headers["Access-Control-Allow-Origin"] == good
            assert r.headers["Access-Control-Allow-Credentials"] == "true"
            assert r.headers["Access-Control-Allow-Methods"] == "GET, POST"
            assert r.headers["Access-Control-Allow-Headers"] == "Content-Type, Authorization"
            assert r.headers["Access-Control-Max-Age"] == "300"
            assert r.headers["Vary"] == "Origin"
        refused = [
            {**preflight, "Origin": "https://evil.example"},
            {**preflight, "Access-Control-Request-Method": "DELETE"},
            {**preflight, "Access-Control-Request-Headers": "x-secret"},
        ]
        for headers in refused:
            async with http.options(f"{gw.url}/echo", headers=headers) as r:
                assert r.status == 403
                assert (await r.json())["error"] == "cors_refused"
        async with http.get(f"{gw.url}/echo", headers={"Origin": good}) as r:
            assert r.headers["Access-Control-Allow-Origin"] == good
            assert r.headers["Access-Control-Expose-Headers"] == "X-Request-ID"
        async with http.get(f"{gw.url}/echo", headers={"Origin": "https://evil.example"}) as r:
            assert r.status == 200
            assert "Access-Control-Allow-Origin" not in r.headers
    # Preflights are answered by the gateway and never reach the upstream.
    assert [req["method"] for req in upstream.seen.requests] == ["GET", "GET"]


async def test_cors_strips_the_upstreams_own_cors_headers(settings: Settings) -> None:
    from tests.fakes.raw import RawUpstream

    raw = await RawUpstream(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
        b"Access-Control-Allow-Origin: *\r\nAccess-Control-Allow-Credentials: true\r\n\r\nok"
    ).start()
    try:
        config = gateway_dict(raw.url, security={"cors": {"allow_origins": ["https://a.example"]}})
        async with serve_app(settings, config) as gw, client_session() as http:
            async with http.get(f"{gw.url}/x", headers={"Origin": "https://evil.example"}) as r:
                assert "Access-Control-Allow-Origin" not in r.headers
                assert "Access-Control-Allow-Credentials" not in r.headers
            async with http.get(f"{gw.url}/x", headers={"Origin": "https://a.example"}) as r:
                assert r.headers.getall("Access-Control-Allow-Origin") == ["https://a.example"]
    finally:
        await raw.stop()
