"""Clients that attack rather than ask, against a real `ferryman serve`: slow bodies,
slow heads, abandoned and malformed uploads, many connections from one address,
paths that Java servers read differently, and secrets slipped into what gets logged."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.fakes.upstream import FakeUpstream
from tests.support import Api, GatewayProcess, client_session, gateway_dict

pytestmark = pytest.mark.e2e


async def open_raw(gw: GatewayProcess) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", gw.port)


async def latencies(gw: GatewayProcess, count: int) -> list[float]:
    """Seconds each of `count` sequential requests of a well-behaved client took."""
    out = []
    async with client_session() as http:
        for _ in range(count):
            started = time.monotonic()
            async with http.post(f"{gw.url}/echo/ok", data=b'{"ok": 1}') as r:
                assert r.status == 200
                await r.read()
            out.append(time.monotonic() - started)
    return out


async def slow_sender(gw: GatewayProcess, stop: asyncio.Event) -> None:
    """A 1,000-byte POST, one byte at a time, half a second apart, until told to stop."""
    try:
        _, writer = await open_raw(gw)
        writer.write(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        while not stop.is_set():
            writer.write(b"x")
            await writer.drain()
            await asyncio.wait([asyncio.ensure_future(stop.wait())], timeout=0.5)
        writer.close()
    except ConnectionError:
        pass  # the gateway may end it (idle or total timeout): that is allowed


async def test_slow_senders_do_not_take_the_route_down(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    # The upstream pool is as small as the attack is large: any sender that held a
    # connection to it would block the well-behaved client.
    config = gateway_dict(upstream.url, upstream_spec={"pool": {"size": 100}})
    gw = GatewayProcess(tmp_path, config, {"FERRYMAN_MAX_CONNECTIONS_PER_IP": "1000"})
    await gw.start()
    try:
        before = await latencies(gw, 30)
        stop = asyncio.Event()
        senders = [asyncio.create_task(slow_sender(gw, stop)) for _ in range(120)]
        await asyncio.sleep(1.5)  # every sender has its request under way
        during = await latencies(gw, 30)
        stop.set()
        await asyncio.gather(*senders)
    finally:
        await gw.stop()
    usual, attacked = statistics.median(before), statistics.median(during)
    assert max(during) < 1.0, (before, during)
    assert attacked < usual + 0.05, (usual, attacked)
    assert not [r for r in upstream.seen.requests if r["path"] == "/upload"]


async def end_of(reader: asyncio.StreamReader) -> bytes:
    """What is left to read until the gateway closes (b"" when nothing was sent). A
    close with bytes of ours still unread reaches us as a reset: a close too."""
    try:
        return await asyncio.wait_for(reader.read(), 5)
    except ConnectionResetError:
        return b""


async def test_slow_request_heads_are_closed_within_the_timeout(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    gw = GatewayProcess(tmp_path, gateway_dict(upstream.url), {"FERRYMAN_HEADER_TIMEOUT": "1"})
    await gw.start()
    try:
        connections = [await open_raw(gw) for _ in range(50)]

        async def dribble(writer: asyncio.StreamWriter) -> None:
            for byte in b"GET /echo HTTP/1.1\r\nHost: slow\r\n":
                try:
                    writer.write(bytes([byte]))
                    await writer.drain()
                except ConnectionError:
                    return
                await asyncio.sleep(0.2)

        started = time.monotonic()
        dribblers = [asyncio.create_task(dribble(w)) for _, w in connections]
        ends = await asyncio.gather(*(end_of(reader) for reader, _ in connections))
        closed_after = time.monotonic() - started
        for task in dribblers:
            task.cancel()
        for _, writer in connections:
            writer.close()
        # A silent connection (never a byte) is closed too.
        reader, writer = await open_raw(gw)
        silent = await end_of(reader)
        writer.close()
        # And a well-behaved client is unaffected.
        assert len(await latencies(gw, 3)) == 3
    finally:
        await gw.stop()
    assert ends == [b""] * 50 and silent == b""
    assert closed_after < 2.5
    assert upstream.seen.requests == [] or all(
        r["path"] == "/echo/ok" for r in upstream.seen.requests
    )
    assert [e["event"] for e in gw.lines() if e["event"] == "header_timeout"] == ["header_timeout"]


async def test_one_address_cannot_hold_every_connection(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    gw = GatewayProcess(
        tmp_path, gateway_dict(upstream.url), {"FERRYMAN_MAX_CONNECTIONS_PER_IP": "5"}
    )
    await gw.start()
    try:
        held = [await open_raw(gw) for _ in range(5)]
        await asyncio.sleep(0.2)
        extra_reader, extra_writer = await open_raw(gw)
        extra_writer.write(b"GET /echo/six HTTP/1.1\r\nHost: x\r\n\r\n")
        refused = await asyncio.wait_for(extra_reader.read(), 5)
        extra_writer.close()
        for _, writer in held:
            writer.close()
        await asyncio.sleep(0.3)  # their places are free again
        assert len(await latencies(gw, 2)) == 2
    finally:
        await gw.stop()
    head, _, body = refused.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 ")
    assert b"retry-after: 1" in head.lower() and b"connection: close" in head.lower()
    assert json.loads(body)["error"] == "too_many_connections"
    assert all(r["path"] != "/echo/six" for r in upstream.seen.requests)
    assert [e["event"] for e in gw.lines() if e["event"] == "connection_refused"] == [
        "connection_refused"
    ]


async def test_dropped_and_malformed_uploads_are_not_server_errors(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    gw = GatewayProcess(tmp_path, gateway_dict(upstream.url))
    await gw.start()
    try:
        for body in (
            b"Content-Length: 5000\r\n\r\n" + b"a" * 100,
            b"Transfer-Encoding: chunked\r\n\r\n64\r\n" + b"a" * 100,
        ):
            _, writer = await open_raw(gw)
            writer.write(b"POST /upload HTTP/1.1\r\nHost: x\r\n" + body)
            await writer.drain()
            await asyncio.sleep(0.3)
            writer.close()  # abandoned midway
        reader, writer = await open_raw(gw)
        writer.write(
            b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nbad\r\n"
        )
        await writer.drain()
        malformed = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        await asyncio.sleep(0.3)
    finally:
        await gw.stop()
    head, _, body = malformed.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400")
    assert b'"error":"invalid_request"' in body
    uploads = [e for e in gw.lines() if e.get("event") == "request" and e["path"] == "/upload"]
    assert sorted((e["status"], e["error"]) for e in uploads) == [
        (400, "invalid_request"),
        (499, "client_disconnected"),
        (499, "client_disconnected"),
    ]
    output = gw.output()
    assert "Traceback" not in output and "unhandled_error" not in output
    assert "Invalid HTTP request received" not in output


@pytest.mark.parametrize(
    "path",
    [
        "/api/..;/secret",
        "/api/%2e%2e;/secret",
        "/api/..%3bjsessionid=1/secret",
        "/api/%c0%ae%c0%ae/secret",
        "/api/%ef%bc%8e%ef%bc%8e/secret",
        "/api/%ef%bc%8fsecret",
    ],
)
async def test_paths_java_servers_read_as_dot_segments_are_refused(
    tmp_path: Path, upstream: FakeUpstream, path: str
) -> None:
    config = gateway_dict(upstream.url, path="/api", upstream_path="/base")
    gw = GatewayProcess(tmp_path, config)
    await gw.start()
    try:
        async with client_session() as http:
            url = aiohttp.client.URL(f"{gw.url}{path}", encoded=True)
            async with http.get(url) as r:
                status, body = r.status, await r.json()
    finally:
        await gw.stop()
    assert (status, body["error"]) == (400, "invalid_path")
    assert upstream.seen.requests == []


async def test_secrets_slipped_into_logged_places_are_not_logged(
    tmp_path: Path, upstream: FakeUpstream, secret: Any
) -> None:
    key = "fm_" + secret()[:43]
    token = secret()[:64].replace("0", "Q").replace("1", "z")  # a pass token's shape
    gw = GatewayProcess(tmp_path, gateway_dict(upstream.url))
    await gw.start()
    try:
        async with client_session() as http:
            async with http.get(f"{gw.url}/echo/x", headers={"X-Request-ID": key}) as r:
                assert r.headers["X-Request-ID"] != key
            async with http.get(f"{gw.url}/echo/{token}/file") as r:
                assert r.status == 200
    finally:
        await gw.stop()
    output = gw.output()
    assert key not in output and token not in output
    assert any(
        e.get("path") == "/echo/[redacted]/file" for e in gw.lines() if e["event"] == "request"
    )


async def test_huge_paging_numbers_and_odd_dates_are_422_not_500(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    admin = {"FERRYMAN_ADMIN_USERNAME": "root", "FERRYMAN_ADMIN_PASSWORD": "root password long"}
    gw = GatewayProcess(tmp_path, gateway_dict(upstream.url), admin)
    await gw.start()
    try:
        async with client_session() as http:
            token = await Api(http, gw.url).login("root", "root password long")
            statuses = {}
            for query in (
                "/admin/users?offset=9999999999999999999",
                "/admin/users?offset=-1",
                "/usage?page=97693427969633520",
                "/usage?limit=1e3",
                "/stats/provider-keys?page=18446744073709551617",
                "/stats?start_date=0",
                "/usage.csv?end_date=99999-01-01",
            ):
                async with http.get(
                    f"{gw.url}/api/v1{query}", headers={"Authorization": f"Bearer {token}"}
                ) as r:
                    statuses[query] = (r.status, (await r.json())["error"])
    finally:
        await gw.stop()
    assert set(statuses.values()) == {(422, "validation_error")}, statuses
    assert not [e for e in gw.lines() if e["event"] == "unhandled_error"]
