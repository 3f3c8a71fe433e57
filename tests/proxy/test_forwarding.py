"""Forwarding through the real ASGI app under uvicorn, to real upstreams on loopback."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import time
from typing import Any

import aiohttp
import pytest

from ferryman.config.settings import Settings
from tests.fakes.raw import RawUpstream
from tests.fakes.upstream import FakeUpstream
from tests.support import client_session, gateway_dict, serve_app


def header_values(echo: dict[str, Any], name: str) -> list[str]:
    return [v for k, v in echo["headers"] if k.lower() == name.lower()]


async def echoed(
    settings: Settings, upstream: FakeUpstream, headers: dict[str, str]
) -> tuple[dict[str, Any], str]:
    """What the upstream saw of one GET /echo through the gateway, and the request id."""
    async with serve_app(settings, gateway_dict(upstream.url)) as gw, client_session() as http:
        async with http.get(f"{gw.url}/echo", headers=headers) as r:
            return await r.json(), r.headers["X-Request-ID"]


async def test_method_path_query_and_body_pass_through_exactly(
    settings: Settings, upstream: FakeUpstream
) -> None:
    body = bytes(range(256)) * 4
    async with serve_app(settings, gateway_dict(upstream.url)) as gw, client_session() as http:
        url = f"{gw.url}/echo/a%20b/%C3%A9/c;p=1?x=1&y=%2F&z=a+b&empty="
        async with http.request("PATCH", aiohttp.client.URL(url, encoded=True), data=body) as r:
            assert r.status == 200
            echo = await r.json()
    assert echo["method"] == "PATCH"
    assert echo["raw_path"] == "/echo/a%20b/%C3%A9/c;p=1?x=1&y=%2F&z=a+b&empty="
    assert echo["body"].encode("latin-1") == body
    assert header_values(echo, "Content-Length") == [str(len(body))]


async def test_upstream_sees_its_own_host_and_forwarding_headers(
    settings: Settings, upstream: FakeUpstream
) -> None:
    headers = {
        "Host": "gateway.example",
        "X-Forwarded-For": "6.6.6.6",
        "X-Forwarded-Host": "evil.example",
        "X-Forwarded-Proto": "gopher",
        "Forwarded": "for=6.6.6.6",
        "X-Real-IP": "6.6.6.6",
    }
    echo, request_id = await echoed(settings, upstream, headers)
    assert header_values(echo, "Host") == [f"127.0.0.1:{upstream.port}"]
    assert header_values(echo, "X-Forwarded-For") == ["127.0.0.1"]
    assert header_values(echo, "X-Forwarded-Host") == ["gateway.example"]
    assert header_values(echo, "X-Forwarded-Proto") == ["http"]
    assert header_values(echo, "Forwarded") == []
    assert header_values(echo, "X-Real-IP") == []
    assert header_values(echo, "X-Request-ID") == [request_id]


async def test_forwarding_headers_from_a_trusted_proxy_are_extended(
    settings_factory: Any, upstream: FakeUpstream
) -> None:
    settings = settings_factory(trusted_proxies=["127.0.0.0/8"])
    async with serve_app(settings, gateway_dict(upstream.url)) as gw, client_session() as http:
        headers = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}
        async with http.get(f"{gw.url}/echo", headers=headers) as r:
            echo = await r.json()
    assert header_values(echo, "X-Forwarded-For") == ["203.0.113.9, 127.0.0.1"]
    assert header_values(echo, "X-Forwarded-Proto") == ["https"]


async def test_request_id_is_kept_when_sane_and_replaced_when_not(
    settings: Settings, upstream: FakeUpstream
) -> None:
    async with serve_app(settings, gateway_dict(upstream.url)) as gw, client_session() as http:
        async with http.get(f"{gw.url}/echo", headers={"X-Request-ID": "req-abc123"}) as r:
            echo = await r.json()
            assert r.headers["X-Request-ID"] == "req-abc123"
        assert header_values(echo, "X-Request-ID") == ["req-abc123"]
        async with http.get(f"{gw.url}/echo", headers={"X-Request-ID": "bad id<script>"}) as r:
            assert r.headers["X-Request-ID"] != "bad id<script>"
            assert len(r.headers["X-Request-ID"]) == 32


async def test_hop_by_hop_request_headers_are_dropped(
    settings: Settings, upstream: FakeUpstream
) -> None:
    headers = {
        "Connection": "keep-alive, X-Private-Hop",
        "X-Private-Hop": "secret-hop",
        "Keep-Alive": "timeout=5",
        "TE": "trailers",
        "Proxy-Authorization": "Basic Zm9vOmJhcg==",
        "Upgrade": "h2c",
        "X-Kept": "yes",
    }
    echo, _ = await echoed(settings, upstream, headers)
    names = {k.lower() for k, _ in echo["headers"]}
    assert "x-kept" in names
    for dropped in ("x-private-hop", "keep-alive", "te", "proxy-authorization", "upgrade"):
        assert dropped not in names
    assert header_values(echo, "Connection") in ([], ["keep-alive"])


async def test_no_headers_are_invented_for_the_upstream(
    settings: Settings, upstream: FakeUpstream
) -> None:
    async with serve_app(settings, gateway_dict(upstream.url)) as gw:
        # A bare client: no Accept, no User-Agent, no Accept-Encoding.
        async with (
            aiohttp.ClientSession(
                skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent")
            ) as http,
            http.get(f"{gw.url}/echo") as r,
        ):
            echo = await r.json()
    names = {k.lower() for k, _ in echo["headers"]}
    assert names.isdisjoint({"accept", "accept-encoding", "user-agent", "content-type"})


async def test_hop_by_hop_response_headers_are_dropped(settings: Settings) -> None:
    raw = await RawUpstream(
        b"HTTP/1.1 200 OK\r\n"
        b"Content-Length: 2\r\n"
        b"Connection: keep-alive, X-Upstream-Hop\r\n"
        b"X-Upstream-Hop: 1\r\n"
        b"Keep-Alive: timeout=99\r\n"
        b"Proxy-Authenticate: Basic\r\n"
        b"X-Kept: yes\r\n"
        b"\r\nok"
    ).start()
    try:
        async with serve_app(settings, gateway_dict(raw.url)) as gw, client_session() as http:
            async with http.get(f"{gw.url}/x") as r:
                assert await r.read() == b"ok"
                assert r.headers["X-Kept"] == "yes"
                for dropped in ("X-Upstream-Hop", "Keep-Alive", "Proxy-Authenticate"):
                    assert dropped not in r.headers
    finally:
        await raw.stop()


async def test_multiple_set_cookie_headers_pass_and_are_never_stored(
    settings: Settings, upstream: FakeUpstream
) -> None:
    async with serve_app(settings, gateway_dict(upstream.url)) as gw, client_session() as http:
        async with http.get(f"{gw.url}/cookies") as r:
            assert r.headers.getall("Set-Cookie") == ["a=1; Path=/", "b=2; Path=/"]
        async with http.get(f"{gw.url}/echo") as r:
            echo = await r.json()
    assert header_values(echo, "Cookie") == []


async def test_redirects_are_passed_to_the_client_not_followed(
    settings: Settings, upstream: FakeUpstream
) -> None:
    async with serve_app(settings, gateway_dict(upstream.url)) as gw, client_session() as http:
        target = "https://elsewhere.example/landing?x=1"
        async with http.get(
            f"{gw.url}/redirect", params={"to": target}, allow_redirects=False
        ) as r:
            assert r.status == 302
            assert r.headers["Location"] == target
    # Exactly one upstream request: the redirect was not followed.
    assert len(upstream.seen.requests) == 1
    assert str(upstream.seen.requests[0]["path"]).startswith("/redirect?to=https")


async def test_compressed_bodies_pass_through_untouched(
    settings: Settings, upstream: FakeUpstream
) -> None:
    async with serve_app(settings, gateway_dict(upstream.url)) as gw, client_session() as http:
        async with http.get(f"{gw.url}/gzip", headers={"Accept-Encoding": "gzip"}) as r:
            raw = await r.read()
            assert r.headers["Content-Encoding"] == "gzip"
            assert int(r.headers["Content-Length"]) == len(raw)
    assert gzip.decompress(raw) == b'{"compressed": true}' * 50


async def test_head_and_no_content_statuses_have_no_body(
    settings: Settings, upstream: FakeUpstream
) -> None:
    async with serve_app(settings, gateway_dict(upstream.url)) as gw, client_session() as http:
        async with http.head(f"{gw.url}/echo") as r:
            assert r.status == 200
            assert await r.read() == b""
        for code in (204, 304):
            async with http.get(f"{gw.url}/status/{code}") as r:
                assert r.status == code
                assert r.headers["X-Upstream-Status"] == str(code)
                assert await r.read() == b""


@pytest.mark.parametrize("code", [400, 401, 404, 418, 500, 503])
async def test_upstream_error_statuses_are_passed_as_they_are(
    settings: Settings, upstream: FakeUpstream, code: int
) -> None:
    async with serve_app(settings, gateway_dict(upstream.url)) as gw, client_session() as http:
        async with http.get(f"{gw.url}/status/{code}") as r:
            assert r.status == code
            assert r.headers["X-Upstream-Status"] == str(code)


async def test_strip_prefix_and_upstream_prefixes_join(
    settings: Settings, upstream: FakeUpstream
) -> None:
    config = {
        "upstreams": {"up": {"url": f"{upstream.url}/echo/base/"}},
        "routes": [
            {"name": "stripped", "path": "/v1", "upstream": "up", "strip_prefix": True},
            {"name": "kept", "path": "/keep", "upstream": "up"},
            {
                "name": "extra",
                "path": "/api/x",
                "upstream": "up",
                "strip_prefix": True,
                "upstream_path": "/inner/",
            },
        ],
    }
    cases = {
        "/v1/chat/completions?a=1": "/echo/base/chat/completions?a=1",
        "/v1": "/echo/base",
        "/v1/": "/echo/base/",
        "/keep/x": "/echo/base/keep/x",
        "/api/x/y": "/echo/base/inner/y",
        "/api/x": "/echo/base/inner",
    }
    async with serve_app(settings, config) as gw, client_session() as http:
        for path, expected in cases.items():
            async with http.get(f"{gw.url}{path}") as r:
                assert r.status == 200, path
                echo = await r.json()
            assert echo["raw_path"] == expected, path


async def test_large_bodies_stream_both_ways(settings: Settings, upstream: FakeUpstream) -> None:
    size = 20 * 1024 * 1024
    payload = (b"0123456789abcdef" * (size // 16))[:size]

    async def chunks() -> Any:
        for start in range(0, size, 256 * 1024):
            yield payload[start : start + 256 * 1024]

    config = gateway_dict(upstream.url, max_body_size="64MiB")
    async with serve_app(settings, config) as gw, client_session() as http:
        async with http.post(f"{gw.url}/upload", data=chunks()) as r:
            result = await r.json()
        assert result["size"] == size
        assert result["sha256"] == hashlib.sha256(payload).hexdigest()
        assert result["chunked"] is True
        async with http.post(
            f"{gw.url}/upload", data=io.BytesIO(payload), headers={"Content-Length": str(size)}
        ) as r:
            result = await r.json()
        assert result["content_length"] == str(size)
        assert result["chunked"] is False
        async with http.get(f"{gw.url}/large", params={"size": str(size), "chunked": "1"}) as r:
            assert "Content-Length" not in r.headers
            assert r.headers["Transfer-Encoding"] == "chunked"
            received = 0
            async for block in r.content.iter_any():
                received += len(block)
        assert received == size
        async with http.get(f"{gw.url}/large", params={"size": str(size)}) as r:
            assert r.headers["Content-Length"] == str(size)
            assert len(await r.read()) == size


async def test_body_over_the_limit_is_refused_before_the_upstream_sees_it(
    settings: Settings, upstream: FakeUpstream
) -> None:
    config = gateway_dict(upstream.url, max_body_size=1000)
    async with serve_app(settings, config) as gw, client_session() as http:
        async with http.post(f"{gw.url}/upload", data=b"x" * 1001) as r:
            assert r.status == 413
            error = await r.json()
        assert error["error"] == "payload_too_large"
        assert "1000 bytes" in error["message"]
        assert upstream.seen.requests == []

        async def chunks() -> Any:
            for _ in range(10):
                yield b"y" * 500

        async with http.post(f"{gw.url}/upload", data=chunks()) as r:
            assert r.status == 413
            assert (await r.json())["error"] == "payload_too_large"
        async with http.post(f"{gw.url}/upload", data=b"x" * 1000) as r:
            assert r.status == 200
            assert (await r.json())["size"] == 1000


async def test_security_max_body_size_applies_to_every_route(
    settings: Settings, upstream: FakeUpstream
) -> None:
    config = gateway_dict(upstream.url, security={"max_body_size": "1KB"})
    async with serve_app(settings, config) as gw, client_session() as http:
        async with http.post(f"{gw.url}/upload", data=b"x" * 1001) as r:
            assert r.status == 413
        async with http.post(f"{gw.url}/upload", data=b"x" * 1000) as r:
            assert r.status == 200


async def test_json_bodies_are_not_reencoded(settings: Settings, upstream: FakeUpstream) -> None:
    # Odd spacing, key order and escapes must survive byte for byte.
    body = b'{ "b":1,"a" : "\\u00e9",\n"z":[1 ,2]}'
    async with serve_app(settings, gateway_dict(upstream.url)) as gw, client_session() as http:
        async with http.post(
            f"{gw.url}/echo", data=body, headers={"Content-Type": "application/json"}
        ) as r:
            echo = await r.json()
    assert echo["body"].encode("latin-1") == body
    assert header_values(echo, "Content-Type") == ["application/json"]
    assert json.loads(body) == {"b": 1, "a": "é", "z": [1, 2]}


async def test_a_small_body_still_arriving_is_relayed_as_it_comes(
    settings: Settings, upstream: FakeUpstream
) -> None:
    """Declared small (4 bytes) but dripped over 1.5 s: the first byte is not held
    back until the last has come."""
    async with serve_app(settings, gateway_dict(upstream.url)) as gw, client_session() as http:
        started = time.monotonic()
        async with http.get(gw.url + "/drip?bytes=4&interval=0.5") as r:
            assert r.headers["Content-Length"] == "4"
            first = await r.content.readany()
            first_at = time.monotonic() - started
            rest = await r.read()
        assert first_at < 0.4, first_at
        assert first + rest == b"abcd"
        assert time.monotonic() - started >= 1.4
        # A small body that came whole with its headers is still answered in one piece.
        async with http.get(gw.url + "/echo/x") as r:
            assert r.status == 200 and len(await r.read()) == int(r.headers["Content-Length"])
