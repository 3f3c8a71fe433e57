"""WebSocket relay: a real gateway between aiohttp's WebSocket client and a real
WebSocket upstream, both on loopback."""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from ferryman.config.settings import Settings
from ferryman.store.tables import usage_records
from tests.conftest import LogReader
from tests.fakes.upstream import FakeUpstream
from tests.fakes.websockets import FakeWebSocketUpstream
from tests.support import Api, Running, client_session, gateway_dict, serve_app

MiB = 1024 * 1024


@pytest.fixture
async def wsup() -> AsyncIterator[FakeWebSocketUpstream]:
    fake = await FakeWebSocketUpstream().start()
    yield fake
    await fake.stop()


def ws_url(gw: Running, path: str = "/ws") -> str:
    return gw.url.replace("http://", "ws://") + path


async def handshake(
    http: aiohttp.ClientSession, gw: Running, path: str = "/ws", **headers: str
) -> tuple[int, dict[str, Any]]:
    """A handshake sent as a plain GET, to read a refusal's status and JSON body."""
    key = base64.b64encode(os.urandom(16)).decode()
    sent = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": key,
        **{name.replace("_", "-"): value for name, value in headers.items()},
    }
    async with http.get(gw.url + path, headers=sent) as response:
        body = await response.json(content_type=None) if response.status != 101 else {}
        return response.status, body


async def test_text_binary_and_a_mebibyte_relayed_both_ways_with_the_subprotocol(
    settings: Settings, wsup: FakeWebSocketUpstream
) -> None:
    async with serve_app(settings, gateway_dict(wsup.url)) as gw, client_session() as http:
        async with http.ws_connect(
            ws_url(gw), protocols=("superchat", "chat"), max_msg_size=4 * MiB
        ) as ws:
            assert ws.protocol == "superchat"
            await ws.send_str("héllo")
            assert await ws.receive_str(timeout=2) == "héllo"
            await ws.send_bytes(b"\x00\x01\xff")
            assert await ws.receive_bytes(timeout=2) == b"\x00\x01\xff"
            big = os.urandom(MiB)
            await ws.send_bytes(big)
            assert await ws.receive_bytes(timeout=5) == big
            await ws.send_str(f"big:{MiB}")
            assert await ws.receive_bytes(timeout=5) == b"b" * MiB
        (conn,) = wsup.connections
        assert conn.protocol == "superchat"
        await asyncio.wait_for(conn.closed.wait(), 2)
        # The client's offers, in its order; the rest of the handshake is aiohttp's own.
        assert conn.headers["Sec-WebSocket-Protocol"].replace(" ", "") == "superchat,chat"
        assert "X-Request-ID" in conn.headers and "X-Forwarded-For" in conn.headers


async def test_close_codes_and_reasons_pass_both_ways(
    settings: Settings, wsup: FakeWebSocketUpstream
) -> None:
    async with serve_app(settings, gateway_dict(wsup.url)) as gw, client_session() as http:
        async with http.ws_connect(ws_url(gw)) as ws:
            await ws.send_str("close:4001:gone fishing")
            msg = await ws.receive(timeout=2)
            assert msg.type is aiohttp.WSMsgType.CLOSE
            assert (msg.data, msg.extra) == (4001, "gone fishing")
        async with http.ws_connect(ws_url(gw)) as ws:
            await ws.send_str("ping")
            assert await ws.receive_str(timeout=2) == "ping"
            await ws.close(code=4002, message=b"bye")
        conn = wsup.connections[-1]
        await asyncio.wait_for(conn.closed.wait(), 2)
        assert conn.close_code == 4002


async def test_an_upstream_that_dies_midway_closes_the_client_with_1011_at_once(
    settings: Settings, wsup: FakeWebSocketUpstream
) -> None:
    async with serve_app(settings, gateway_dict(wsup.url)) as gw, client_session() as http:
        async with http.ws_connect(ws_url(gw)) as ws:
            await ws.send_str("die")
            started = time.monotonic()
            msg = await ws.receive(timeout=3)
            assert msg.type is aiohttp.WSMsgType.CLOSE
            assert msg.data == 1011
            assert time.monotonic() - started < 1.0


async def test_upstream_refusals_and_absence_are_answered_as_http_before_the_upgrade(
    settings: Settings, wsup: FakeWebSocketUpstream
) -> None:
    async with serve_app(settings, gateway_dict(wsup.url)) as gw, client_session() as http:
        status, body = await handshake(http, gw, "/refuse")
        assert (status, body["error"]) == (403, "upstream_refused_websocket")
        status, body = await handshake(http, gw, "/broken")
        assert (status, body["error"]) == (502, "upstream_refused_websocket")
    await wsup.stop()
    async with serve_app(settings, gateway_dict(wsup.url)) as gw, client_session() as http:
        status, body = await handshake(http, gw)
        assert (status, body["error"]) == (502, "upstream_unreachable")


async def test_no_credential_a_revoked_one_and_a_route_without_websockets_are_refused(
    settings: Settings, wsup: FakeWebSocketUpstream
) -> None:
    spec = gateway_dict(wsup.url, auth=["api_key"])
    spec["routes"].append({"name": "plain", "path": "/plain", "upstream": "up", "websocket": False})
    async with serve_app(settings, spec) as gw, client_session() as http:
        status, body = await handshake(http, gw)
        assert (status, body["error"]) == (401, "missing_credential")
        api = Api(http, gw.url)
        _, token = await api.user("wendy")
        key = await api.new_key(token)
        async with http.ws_connect(ws_url(gw), headers={"X-API-Key": key["key"]}) as ws:
            await ws.send_str("hi")
            assert await ws.receive_str(timeout=2) == "hi"
        await api.call("DELETE", f"/keys/{key['id']}", token=token, expect=204)
        status, body = await handshake(http, gw, X_API_Key=key["key"])
        assert (status, body["error"]) == (401, "revoked_credential")
        status, body = await handshake(http, gw, "/plain/ws")
        assert (status, body["error"]) == (403, "websocket_not_allowed")


async def test_only_the_pages_own_origin_or_the_listed_ones_may_connect(
    settings: Settings, wsup: FakeWebSocketUpstream
) -> None:
    spec = gateway_dict(wsup.url)
    spec["routes"].append(
        {"name": "listed", "path": "/listed", "upstream": "up", "strip_prefix": True,
         "websocket": {"allow_origins": ["https://app.example.com"]}}
    )  # fmt: skip
    async with serve_app(settings, spec) as gw, client_session() as http:
        host = gw.url.removeprefix("http://")
        status, body = await handshake(http, gw, Origin="https://evil.example")
        assert (status, body["error"]) == (403, "origin_not_allowed")
        assert wsup.connections == []  # refused before the upstream was asked
        async with http.ws_connect(ws_url(gw), origin=f"http://{host}") as ws:
            await ws.send_str("same origin")
            assert await ws.receive_str(timeout=2) == "same origin"
        status, _ = await handshake(http, gw, "/listed/ws", Origin=f"http://{host}")
        assert status == 403
        url = ws_url(gw, "/listed/ws")
        async with http.ws_connect(url, origin="https://app.example.com") as ws:
            await ws.send_str("listed")
            assert await ws.receive_str(timeout=2) == "listed"


async def test_a_connection_holds_its_max_parallel_slot_while_open(
    settings: Settings, wsup: FakeWebSocketUpstream
) -> None:
    spec = gateway_dict(wsup.url, max_parallel=1)
    async with serve_app(settings, spec) as gw, client_session() as http:
        async with http.ws_connect(ws_url(gw)) as ws:
            await ws.send_str("one")
            assert await ws.receive_str(timeout=2) == "one"
            status, body = await handshake(http, gw)
            assert (status, body["error"]) == (429, "too_many_in_flight")
        await asyncio.sleep(0.05)
        async with http.ws_connect(ws_url(gw)) as ws:
            await ws.send_str("two")
            assert await ws.receive_str(timeout=2) == "two"


async def test_a_message_over_the_routes_limit_closes_both_legs_with_1009(
    settings: Settings, wsup: FakeWebSocketUpstream
) -> None:
    spec = gateway_dict(wsup.url, websocket={"max_message": 1024})
    async with serve_app(settings, spec) as gw, client_session() as http:
        async with http.ws_connect(ws_url(gw)) as ws:
            await ws.send_bytes(b"x" * 1024)  # at the limit: relayed
            assert len(await ws.receive_bytes(timeout=2)) == 1024
            await ws.send_bytes(b"x" * 1025)
            msg = await ws.receive(timeout=2)
            assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, 1009)
        conn = wsup.connections[-1]
        await asyncio.wait_for(conn.closed.wait(), 2)
        assert conn.close_code == 1009
        async with http.ws_connect(ws_url(gw)) as ws:
            await ws.send_str("big:2048")  # too big from the upstream's side
            msg = await ws.receive(timeout=2)
            assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, 1009)


async def test_an_idle_connection_is_closed_with_1001_and_logged_with_its_counts(
    settings_factory: Callable[..., Settings], wsup: FakeWebSocketUpstream, logs: LogReader
) -> None:
    spec = gateway_dict(wsup.url, websocket={"idle_timeout": 0.3})
    async with (
        serve_app(settings_factory(), spec) as gw,
        client_session() as http,
    ):
        async with http.ws_connect(ws_url(gw) + "?mode=x") as ws:
            for word in ("a", "b"):
                await ws.send_str(word)
                assert await ws.receive_str(timeout=2) == word
            started = time.monotonic()
            msg = await ws.receive(timeout=3)
            assert (msg.type, msg.data, msg.extra) == (
                aiohttp.WSMsgType.CLOSE, 1001, "idle timeout",
            )  # fmt: skip
            assert 0.2 < time.monotonic() - started < 1.5
        async with http.get(gw.url + "/metrics") as r:
            metrics = await r.text()
    await asyncio.sleep(0.3)
    (line,) = [e for e in logs.events("request") if e["path"].startswith("/ws")]
    assert line["status"] == 101 and line["route"] == "main"
    assert (line["close_code"], line["messages_in"], line["messages_out"]) == (1001, 2, 2)
    assert line["bytes_in"] == 2 and line["bytes_out"] == 2
    assert 'ferryman_websocket_closes_total{by="idle",route="main"} 1.0' in metrics
    assert 'ferryman_websocket_messages_total{direction="in",route="main"} 2.0' in metrics
    assert 'ferryman_websocket_connections{route="main"} 0.0' in metrics


async def test_a_connection_on_a_metered_route_leaves_one_usage_record(
    settings: Settings, wsup: FakeWebSocketUpstream
) -> None:
    async with serve_app(settings, gateway_dict(wsup.url)) as gw, client_session() as http:
        async with http.ws_connect(ws_url(gw)) as ws:
            await ws.send_bytes(b"12345")
            assert await ws.receive_bytes(timeout=2) == b"12345"
        await asyncio.sleep(0.2)  # the access record is made once the handler returns
        assert gw.app.usage is not None and gw.app.database is not None
        await gw.app.usage.flush()
        async with gw.app.database.engine.connect() as conn:
            rows = (await conn.execute(select(usage_records))).all()
    (row,) = [r for r in rows if r.route == "main"]
    assert (row.status, row.bytes_in, row.bytes_out, row.upstream) == (101, 5, 5, "up")


async def test_open_connections_do_not_take_the_http_pool_and_a_hung_handshake_is_504(
    settings: Settings, wsup: FakeWebSocketUpstream, upstream: FakeUpstream
) -> None:
    # A pool of 2 for HTTP requests: 5 WebSocket connections stay open beside it.
    spec = gateway_dict(wsup.url, upstream_spec={"pool": {"size": 2}})
    async with serve_app(settings, spec) as gw, client_session() as http:
        sockets = [await http.ws_connect(ws_url(gw)) for _ in range(5)]
        for n, ws in enumerate(sockets):
            await ws.send_str(f"n{n}")
            assert await ws.receive_str(timeout=2) == f"n{n}"
        for ws in sockets:
            await ws.close()
    # An upstream that takes the handshake and never answers it.
    spec = gateway_dict(upstream.url, upstream_spec={"timeout": {"read": 0.5}})
    async with serve_app(settings, spec) as gw, client_session() as http:
        started = time.monotonic()
        status, body = await handshake(http, gw, "/hang")
        assert (status, body["error"]) == (504, "upstream_timeout")
        assert time.monotonic() - started < 2


async def test_an_open_connection_ends_when_its_account_is_disabled_not_when_renamed(
    settings_factory: Callable[..., Settings], wsup: FakeWebSocketUpstream
) -> None:
    settings = settings_factory(admin_username="root", admin_password="root password long")
    spec = gateway_dict(wsup.url, auth=["api_key"])
    async with serve_app(settings, spec) as gw, client_session() as http:
        api = Api(http, gw.url)
        admin = await api.login("root", "root password long")
        user, token = await api.user("xena")
        key = (await api.new_key(token))["key"]
        async with http.ws_connect(ws_url(gw), headers={"X-API-Key": key}) as ws:
            await api.call(
                "PATCH", f"/admin/users/{user['id']}", token=admin,
                json={"role": "user"}, expect=200,
            )  # fmt: skip
            await ws.send_str("still here")  # an account change that takes nothing away
            assert await ws.receive_str(timeout=2) == "still here"
            await api.call(
                "PATCH", f"/admin/users/{user['id']}", token=admin,
                json={"is_active": False}, expect=200,
            )  # fmt: skip
            msg = await ws.receive(timeout=2)
            assert (msg.type, msg.data, msg.extra) == (
                aiohttp.WSMsgType.CLOSE, 1008, "credential revoked",
            )  # fmt: skip
