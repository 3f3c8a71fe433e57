"""Request bodies from slow, stalling and vanishing clients: read whole before the
upstream is asked (up to the buffer), ended with 408 when too slow, and a client that
leaves is a 499 in the log, never an internal error."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from ferryman.config.settings import Settings
from tests.conftest import LogReader
from tests.fakes.upstream import FakeUpstream
from tests.support import client_session, gateway_dict, serve_app


async def send_slowly(
    url: str, path: str, pieces: list[bytes], pause: float, *, chunked: bool = False
) -> tuple[int, dict[str, str], bytes]:
    """POST `pieces` with `pause` seconds before each, on a raw connection, stopping as
    soon as an answer comes (as a browser does); the answer's status, headers and body
    (status 0 when the connection closed unanswered)."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    size = sum(len(p) for p in pieces)
    framing = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % size
    writer.write(b"POST %s HTTP/1.1\r\nHost: x\r\n%s\r\n\r\n" % (path.encode(), framing))
    answer = asyncio.create_task(reader.read(1 << 20))
    try:
        for piece in pieces:
            await asyncio.wait([answer], timeout=pause)
            if answer.done():
                break
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            await writer.drain()
        else:
            if chunked:
                writer.write(b"0\r\n\r\n")
                await writer.drain()
    except ConnectionError:
        pass  # the gateway gave up on us first: read its answer
    try:
        raw = await asyncio.wait_for(answer, 30)
    except ConnectionError:
        raw = b""
    writer.close()
    if not raw:
        return 0, {}, b""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def one_connection(upstream_url: str, **route: Any) -> dict[str, Any]:
    """The upstream behind a pool of one connection: whoever holds it blocks everyone."""
    return gateway_dict(upstream_url, upstream_spec={"pool": {"size": 1}}, **route)


async def test_a_slow_sender_holds_no_upstream_connection(
    settings: Settings, upstream: FakeUpstream
) -> None:
    async with serve_app(settings, one_connection(upstream.url)) as gw, client_session() as http:
        slow = asyncio.create_task(
            send_slowly(gw.url, "/upload", [b"a" * 10] * 8, 0.25)  # two seconds to send
        )
        await asyncio.sleep(0.3)
        started = time.monotonic()
        for _ in range(5):  # the only upstream connection is free meanwhile
            async with http.get(f"{gw.url}/echo/x") as r:
                assert r.status == 200
        assert time.monotonic() - started < 1.0
        status, _, body = await slow
    assert status == 200
    answer = json.loads(body)
    assert answer["size"] == 80 and answer["chunked"] is False  # sent whole, when whole


async def test_a_client_that_stops_sending_gets_408_and_the_upstream_nothing(
    settings: Settings, upstream: FakeUpstream, logs: LogReader
) -> None:
    config = gateway_dict(upstream.url, request_body={"idle_timeout": 0.3})
    async with serve_app(settings, config) as gw:
        started = time.monotonic()
        status, headers, body = await send_slowly(gw.url, "/upload", [b"a", b"b" * 99], 1.5)
        waited = time.monotonic() - started
    assert status == 408
    assert headers["connection"] == "close"
    error = json.loads(body)
    assert error["error"] == "request_timeout"
    assert "nothing for 0.3 s" in error["message"]
    assert waited < 3.0
    assert upstream.seen.requests == []
    lines = [e for e in logs.events("request") if e["path"] == "/upload"]
    assert [(e["status"], e["error"]) for e in lines] == [(408, "request_timeout")]
    assert not logs.events("unhandled_error")


async def test_a_body_dribbled_past_the_total_timeout_gets_408(
    settings: Settings, upstream: FakeUpstream
) -> None:
    config = gateway_dict(upstream.url, request_body={"timeout": 0.6, "idle_timeout": 5})
    async with serve_app(settings, config) as gw:
        status, _, body = await send_slowly(gw.url, "/upload", [b"x"] * 40, 0.05, chunked=True)
    assert status == 408
    assert "not whole after 0.6 s" in json.loads(body)["message"]
    assert upstream.seen.requests == []


async def test_a_large_body_streams_and_a_stall_midway_ends_it(
    settings: Settings, upstream: FakeUpstream
) -> None:
    config = gateway_dict(
        upstream.url, request_body={"buffer": 1024, "idle_timeout": 0.3, "timeout": 0.5}
    )
    async with serve_app(settings, config) as gw:
        # Larger than the buffer: streamed as it comes (the total limit does not apply).
        status, _, body = await send_slowly(
            gw.url, "/upload", [b"a" * 2000] * 4, 0.15, chunked=True
        )
        assert status == 200
        answer = json.loads(body)
        assert answer["size"] == 8000 and answer["chunked"] is True
        # Stalling after the buffer was passed: 408 too.
        status, _, body = await send_slowly(gw.url, "/upload", [b"a" * 2000, b"b"], 1.0)
    assert status in (0, 408)  # 408 unless the upstream answered first
    if status:
        assert json.loads(body)["error"] == "request_timeout"


@pytest.mark.parametrize("framing", ["length", "chunked"])
async def test_an_abandoned_upload_is_a_499_in_the_log_not_an_error(
    settings: Settings, upstream: FakeUpstream, logs: LogReader, framing: str
) -> None:
    config = gateway_dict(upstream.url, request_body={"buffer": 0})  # streamed upstream
    async with serve_app(settings, config) as gw:
        host, port = gw.url.removeprefix("http://").split(":")
        for _ in range(3):
            _, writer = await asyncio.open_connection(host, int(port))
            head = b"Content-Length: 5000" if framing == "length" else b"Transfer-Encoding: chunked"
            writer.write(b"POST /upload HTTP/1.1\r\nHost: x\r\n%s\r\n\r\n" % head)
            writer.write(b"a" * 100 if framing == "length" else b"64\r\n" + b"a" * 100 + b"\r\n")
            await writer.drain()
            await asyncio.sleep(0.2)
            writer.close()  # gone, mid-body
        await asyncio.sleep(0.3)
        async with client_session() as http, http.get(f"{gw.url}/echo/x") as r:
            assert r.status == 200
    lines = [e for e in logs.events("request") if e["path"] == "/upload"]
    assert [(e["status"], e["error"]) for e in lines] == [(499, "client_disconnected")] * 3
    assert not logs.events("unhandled_error")
    assert "Traceback" not in logs.text()
