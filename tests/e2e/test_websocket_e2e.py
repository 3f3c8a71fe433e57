"""WebSocket through a real `ferryman serve`: relayed, logged once by the gateway with
the query redacted, and never with a credential in uvicorn's own lines."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fakes.websockets import FakeWebSocketUpstream
from tests.support import GatewayProcess, client_session, gateway_dict


@pytest.fixture
async def wsup() -> AsyncIterator[FakeWebSocketUpstream]:
    fake = await FakeWebSocketUpstream().start()
    yield fake
    await fake.stop()


async def test_relayed_and_no_token_from_the_query_string_reaches_any_log_line(
    tmp_path: Path, wsup: FakeWebSocketUpstream
) -> None:
    spec = gateway_dict(wsup.url)
    spec["routes"].append(
        {"name": "private", "path": "/private", "upstream": "up", "strip_prefix": True,
         "auth": ["access_pass"]}
    )  # fmt: skip
    gw = await GatewayProcess(tmp_path, spec).start()
    token = secrets.token_urlsafe(48)
    try:
        async with client_session() as http:
            base = gw.url.replace("http://", "ws://")
            async with http.ws_connect(f"{base}/ws?token={token}") as ws:
                await ws.send_str("through a real server")
                assert await ws.receive_str(timeout=5) == "through a real server"
            async with http.get(
                f"{gw.url}/private/ws?token={token}",
                headers={"Connection": "Upgrade", "Upgrade": "websocket",
                         "Sec-WebSocket-Version": "13",
                         "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="},
            ) as refused:  # fmt: skip
                assert refused.status == 401
    finally:
        await gw.stop()
    output = gw.output()
    assert token not in output
    lines = [e for e in gw.lines() if e.get("event") == "request"]
    assert {(e["route"], e["status"]) for e in lines} >= {("main", 101), ("private", 401)}
    assert all("token=[redacted]" in e["path"] for e in lines if "/ws" in e["path"])
    assert "WebSocket" not in output  # uvicorn's own handshake lines are not written
