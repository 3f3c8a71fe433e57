"""Upstreams that hang, reset or vanish, and clients that leave: each answer is precise."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import aiohttp
import pytest

from ferryman.config.settings import Settings
from tests.fakes.raw import RawUpstream
from tests.fakes.upstream import FakeUpstream
from tests.support import client_session, free_socket, gateway_dict, serve_app


def assert_error_format(body: dict[str, Any], code: str, request_id: str) -> None:
    assert set(body) == {"error", "message", "correlation_id", "timestamp"}
    assert body["error"] == code
    assert body["correlation_id"] == request_id
    assert body["timestamp"].endswith("Z") and "T" in body["timestamp"]
    assert isinstance(body["message"], str) and body["message"]


async def test_read_timeout_is_a_504_in_the_error_format(
    settings: Settings, upstream: FakeUpstream
) -> None:
    config = gateway_dict(upstream.url, upstream_spec={"timeout": {"read": 0.3}})
    async with serve_app(settings, config) as gw, client_session() as http:
        started = time.monotonic()
        async with http.get(f"{gw.url}/hang") as r:
            assert r.status == 504
            body = await r.json()
            assert_error_format(body, "upstream_timeout", r.headers["X-Request-ID"])
        assert time.monotonic() - started < 3
        assert "'up'" in body["message"] and "127.0.0.1" not in body["message"]
        # The upstream learns the request was given up.
        await asyncio.wait_for(upstream.seen.hang_cancelled.wait(), 5)


async def test_total_timeout_is_a_504(settings: Settings, upstream: FakeUpstream) -> None:
    config = gateway_dict(upstream.url, upstream_spec={"timeout": {"total": 0.3, "read": 30}})
    async with serve_app(settings, config) as gw, client_session() as http:
        async with http.get(f"{gw.url}/slow", params={"delay": "2"}) as r:
            assert r.status == 504
            assert (await r.json())["error"] == "upstream_timeout"
        async with http.get(f"{gw.url}/slow", params={"delay": "0.01"}) as r:
            assert r.status == 200


async def test_connect_timeout_is_a_504(settings: Settings) -> None:
    # A listening socket whose backlog is full never completes a handshake.
    sock = free_socket()
    sock.listen(0)
    fillers = []
    try:
        for _ in range(8):
            filler = __import__("socket").socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(sock.getsockname())
            fillers.append(filler)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        config = gateway_dict(url, upstream_spec={"timeout": {"connect": 0.3}})
        async with serve_app(settings, config) as gw, client_session() as http:
            async with http.get(f"{gw.url}/x") as r:
                body = await r.json()
            # Linux may complete the handshake anyway; then the read side hangs.
            assert r.status == 504, body
            assert body["error"] == "upstream_timeout"
    finally:
        for filler in fillers:
            filler.close()
        sock.close()


async def test_connection_refused_is_a_502(settings: Settings) -> None:
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()  # nothing listens here now
    config = gateway_dict(f"http://127.0.0.1:{port}")
    async with serve_app(settings, config) as gw, client_session() as http:
        async with http.get(f"{gw.url}/x") as r:
            assert r.status == 502
            body = await r.json()
    assert_error_format(body, "upstream_unreachable", r.headers["X-Request-ID"])
    assert str(port) not in body["message"]


async def test_connection_reset_is_a_502(settings: Settings, upstream: FakeUpstream) -> None:
    async with serve_app(settings, gateway_dict(upstream.url)) as gw, client_session() as http:
        async with http.get(f"{gw.url}/reset") as r:
            assert r.status == 502
            assert (await r.json())["error"] == "upstream_disconnected"
        # aiohttp retries an idempotent request once on a dropped connection, no more.
        assert len([r for r in upstream.seen.requests if r["path"] == "/reset"]) == 2
        async with http.post(f"{gw.url}/reset", data=b"x") as r:
            assert r.status == 502
        assert len([r for r in upstream.seen.requests if r["path"] == "/reset"]) == 3


async def test_malformed_upstream_response_is_a_502(settings: Settings) -> None:
    raw = await RawUpstream(b"HTTP/1.1 2OO NOT OK\r\nbroken\r\n\r\n").start()
    try:
        async with serve_app(settings, gateway_dict(raw.url)) as gw, client_session() as http:
            async with http.post(f"{gw.url}/x", data=b"x") as r:
                assert r.status == 502
                assert (await r.json())["error"] == "upstream_protocol_error"
    finally:
        await raw.stop()


async def test_reset_after_the_response_started_closes_the_client_connection(
    settings: Settings, upstream: FakeUpstream
) -> None:
    async with serve_app(settings, gateway_dict(upstream.url)) as gw, client_session() as http:
        async with http.get(f"{gw.url}/reset-midway") as r:
            assert r.status == 200
            assert r.headers["Content-Length"] == "100000"
            with pytest.raises(aiohttp.ClientPayloadError):
                await r.read()


async def test_sse_events_reach_the_client_before_the_upstream_finishes(
    settings: Settings, upstream: FakeUpstream
) -> None:
    async with serve_app(settings, gateway_dict(upstream.url)) as gw, client_session() as http:
        async with http.get(f"{gw.url}/sse", params={"events": "4", "interval": "0.3"}) as r:
            assert r.headers["Content-Type"] == "text/event-stream"
            assert "Content-Length" not in r.headers
            first = await r.content.readline()
            first_at = time.monotonic()
            rest = await r.read()
    assert first == b"data: event 0\n"
    # The first event arrived while the upstream had more to send.
    assert first_at < upstream.seen.sse_sent_at[-1]
    assert (first + rest).count(b"data: ") == 5


async def test_a_client_that_leaves_cancels_the_upstream_request(
    settings: Settings, upstream: FakeUpstream
) -> None:
    async with serve_app(settings, gateway_dict(upstream.url)) as gw:
        async with client_session() as http:
            task = asyncio.create_task(http.get(f"{gw.url}/hang"))
            await asyncio.wait_for(upstream.seen.hang_started.wait(), 5)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        await asyncio.wait_for(upstream.seen.hang_cancelled.wait(), 5)


async def test_a_client_that_leaves_a_stream_cancels_the_upstream_stream(
    settings: Settings, upstream: FakeUpstream
) -> None:
    async with serve_app(settings, gateway_dict(upstream.url)) as gw:
        async with client_session() as http:
            r = await http.get(f"{gw.url}/sse", params={"events": "100", "interval": "0.05"})
            assert await r.content.readline() == b"data: event 0\n"
            r.close()
        await asyncio.wait_for(upstream.seen.sse_cancelled.wait(), 5)
        assert len(upstream.seen.sse_sent_at) < 100


async def test_no_route_is_a_404_and_a_wrong_method_a_405(
    settings: Settings, upstream: FakeUpstream
) -> None:
    config = {
        "upstreams": {"up": {"url": upstream.url}},
        "routes": [{"name": "read", "path": "/echo", "methods": ["GET"], "upstream": "up"}],
    }
    async with serve_app(settings, config) as gw, client_session() as http:
        async with http.get(f"{gw.url}/nothing/here") as r:
            assert r.status == 404
            assert_error_format(await r.json(), "no_route", r.headers["X-Request-ID"])
        async with http.delete(f"{gw.url}/echo/x") as r:
            assert r.status == 405
            assert r.headers["Allow"] == "GET"
            assert_error_format(await r.json(), "method_not_allowed", r.headers["X-Request-ID"])


@pytest.mark.parametrize(
    "path",
    [
        "/echo/../status/500",
        "/echo/%2e%2e/status/500",
        "/echo/%2E%2e/status/500",
        "/echo/.%2e/x",
        "/echo/%2fstatus",
        "/echo/a%5c..%5cb",
        "/echo//evil.example/x",
        "/echo/%252e%252e/x",
        "/echo/%00",
        "/echo/%zz",
        "/echo/./x",
    ],
)
async def test_paths_that_could_escape_are_refused(
    settings: Settings, upstream: FakeUpstream, path: str
) -> None:
    async with serve_app(settings, gateway_dict(upstream.url)) as gw, client_session() as http:
        url = aiohttp.client.URL(f"{gw.url}{path}", encoded=True)
        async with http.get(url) as r:
            assert r.status == 400
            assert (await r.json())["error"] == "invalid_path"
    assert upstream.seen.requests == []


async def test_an_absolute_form_request_target_cannot_change_the_host(
    settings: Settings, upstream: FakeUpstream
) -> None:
    async with serve_app(settings, gateway_dict(upstream.url)) as gw:
        host, port = gw.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            b"GET http://169.254.169.254/echo/meta HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        await writer.drain()
        answer = await reader.read()
        writer.close()
    # Only the path of the absolute-form target is used; the host stays the upstream's.
    assert answer.startswith(b"HTTP/1.1 200")
    assert len(upstream.seen.requests) == 1
    request = upstream.seen.requests[0]
    assert request["path"] == "/echo/meta"
    assert request["headers"]["Host"] == f"127.0.0.1:{upstream.port}"


async def test_a_websocket_handshake_an_upstream_does_not_take_is_refused_and_logged(
    settings: Settings, upstream: FakeUpstream, logs: Any
) -> None:
    """The HTTP-only fake has no WebSocket at /ws: its 404 is passed on, as JSON."""
    async with serve_app(settings, gateway_dict(upstream.url)) as gw, client_session() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await http.ws_connect(f"{gw.url}/ws")
        assert info.value.status == 404
    (line,) = [e for e in logs.events("request") if e["path"] == "/ws"]
    assert (line["method"], line["status"]) == ("GET", 404)
    assert line["error"] == "upstream_refused_websocket"
    assert logs.events("unhandled_error") == []


async def test_an_unexpected_error_is_a_json_500_and_logged(
    settings: Settings, upstream: FakeUpstream, logs: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ferryman.proxy.streaming import Forwarder

    async def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("a bug in the gateway")

    monkeypatch.setattr(Forwarder, "forward", broken)
    async with serve_app(settings, gateway_dict(upstream.url)) as gw, client_session() as http:
        async with http.get(f"{gw.url}/echo") as r:
            assert r.status == 500
            body = await r.json()
            assert_error_format(body, "internal_error", r.headers["X-Request-ID"])
            assert "bug" not in body["message"]
        async with http.get(f"{gw.url}/health/live") as r:
            assert r.status == 200
    errors = logs.events("unhandled_error")
    assert errors and errors[0]["correlation_id"] == body["correlation_id"]
    assert "RuntimeError: a bug in the gateway" in errors[0]["exception"]


async def test_a_pool_credential_without_keys_fails_closed(
    settings: Settings, upstream: FakeUpstream
) -> None:
    credential = {"kind": "pool", "shared_access": "everyone"}
    config = gateway_dict(upstream.url, upstream_spec={"credential": credential})
    async with serve_app(settings, config) as gw, client_session() as http:
        async with http.get(f"{gw.url}/echo") as r:
            assert r.status == 503
            body = await r.json()
    assert body["error"] == "no_upstream_key"
    assert "'up'" in body["message"]
    assert upstream.seen.requests == []
