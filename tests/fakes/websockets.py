"""A real WebSocket upstream on loopback (aiohttp), told what to do by its messages.

GET /ws (upgrade)     echoes every text and binary message; subprotocols `chat` and
                      `superchat` (the first the client offers that it knows)
    "close:CODE:WHY"  closes with that code and reason
    "big:N"           sends one binary message of N bytes
    "die"             drops the TCP connection without a close frame
    "headers"         sends the handshake's headers and query as JSON
GET /refuse           answers 403 without upgrading
GET /broken           answers 500 without upgrading
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web


@dataclass
class Connection:
    headers: dict[str, str]
    query: str
    protocol: str | None
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    close_code: int | None = None
    received: list[Any] = field(default_factory=list)


class FakeWebSocketUpstream:
    """Start with `await fake.start()`; `fake.url` is its base URL."""

    def __init__(self) -> None:
        self.connections: list[Connection] = []
        self.port = 0
        self._runner: web.AppRunner | None = None
        app = web.Application()
        app.router.add_get("/ws", self.ws)
        app.router.add_get("/ws/{tail:.*}", self.ws)
        app.router.add_get("/refuse", self.refuse)
        app.router.add_get("/broken", self.broken)
        self.app = app

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> FakeWebSocketUpstream:
        self._runner = web.AppRunner(
            self.app, handle_signals=False, access_log=None, shutdown_timeout=0.1
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def refuse(self, request: web.Request) -> web.Response:
        return web.json_response({"detail": "no"}, status=403)

    async def broken(self, request: web.Request) -> web.Response:
        return web.Response(status=500, text="broken")

    async def ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(
            protocols=("chat", "superchat"), max_msg_size=64 * 1024 * 1024, heartbeat=None
        )
        await ws.prepare(request)
        conn = Connection(dict(request.headers), request.query_string, ws.ws_protocol)
        self.connections.append(conn)
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    conn.received.append(msg.data)
                    if await self._command(ws, request, msg.data):
                        break
                elif msg.type is WSMsgType.BINARY:
                    conn.received.append(msg.data)
                    await ws.send_bytes(msg.data)
        finally:
            conn.close_code = ws.close_code
            conn.closed.set()
        return ws

    async def _command(self, ws: web.WebSocketResponse, request: web.Request, text: str) -> bool:
        """Act on a command message; True when the connection is over."""
        if text.startswith("close:"):
            _, code, why = text.split(":", 2)
            await ws.close(code=int(code), message=why.encode())
            return True
        if text.startswith("big:"):
            await ws.send_bytes(b"b" * int(text[4:]))
            return False
        if text == "die":
            assert request.transport is not None
            request.transport.abort()
            return True
        if text == "headers":
            await ws.send_json({"headers": dict(request.headers), "query": request.query_string})
            return False
        await ws.send_str(text)
        return False
