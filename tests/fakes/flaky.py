"""A real HTTP upstream on loopback whose health a test switches at will.

Every path answers according to `mode`:

    ok       200 with `{"ok": true, "n": <request number>}` after `delay` seconds
    fail     `status` (500 by default)
    reset    the connection closed without an answer
    hang     no answer until the gateway gives up
    refuse   403 (a client error: never the upstream's failure)

`hits` counts the requests that reached it (per path in `by_path`); a WebSocket
handshake on `/ws` is counted too and, in mode `ok`, echoes messages.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from aiohttp import WSMsgType, web


class FlakyUpstream:
    def __init__(self) -> None:
        self.mode = "ok"
        self.status = 500
        self.delay = 0.0
        self.hits = 0
        self.by_path: Counter[str] = Counter()
        self.bodies: list[bytes] = []
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()
        app = web.Application()
        app.router.add_get("/ws", self.websocket)
        app.router.add_route("*", "/{tail:.*}", self.answer)
        self._app = app

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> FlakyUpstream:
        self._runner = web.AppRunner(self._app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        self._stopping.set()  # hanging handlers end, so the cleanup does not wait on them
        if self._runner is not None:
            await self._runner.cleanup()

    def _count(self, request: web.Request) -> int:
        self.hits += 1
        self.by_path[request.path] += 1
        return self.hits

    async def answer(self, request: web.Request) -> web.StreamResponse:
        n = self._count(request)
        self.bodies.append(await request.read())
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.mode == "fail":
            return web.json_response({"failed": True}, status=self.status)
        if self.mode == "refuse":
            return web.json_response({"refused": True}, status=403)
        if self.mode == "reset":
            assert request.transport is not None
            request.transport.abort()
            return web.Response()  # never sent
        if self.mode == "hang":
            await self._stopping.wait()
        return web.json_response({"ok": True, "n": n})

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        self._count(request)
        if self.mode != "ok":
            return web.json_response({"failed": True}, status=self.status)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                await ws.send_str(msg.data)
        return ws
