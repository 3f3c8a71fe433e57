"""A fake n8n chat webhook: a real aiohttp server on loopback standing in for a Chat Trigger.

`POST /webhook/chat` takes what the `@n8n/chat` widget sends,
`{"action": "sendMessage", "sessionId": ..., "chatInput": ..., "metadata": {...}}`, and
answers according to `mode`; every other path is 404. The answer is made of `pieces`
(`["Hello", ", ", "world", "!"]` by default):

    json     200 `{"output": "<pieces joined>"}` after `interval` seconds
    text     200 `{"text": "<pieces joined>"}` after `interval` seconds
    ndjson   200 newline-delimited JSON, written line by line: `{"type": "begin", ...}`,
             one `{"type": "item", "content": <piece>, ...}` per piece (each after
             `interval` seconds), then `{"type": "end", ...}`
    sse      the same objects as `text/event-stream` events (`data: {...}\\n\\n`)
    hang     reads the request, then never answers until `stop()`
    die      NDJSON begin and the first item, then the connection is aborted mid-answer
    error    NDJSON begin, then `{"type": "error", "content": "workflow failed"}`, then
             the response ends
    status   `status` (500 by default) with `{"message": "Workflow could not be started"}`
    garbage  200, Content-Type application/json, body `not json at all{{`

`requests` records each request that reached the webhook (parsed JSON body, headers, time),
`finished_at` the time each complete answer was fully written, and `cancelled` is set when
a handler was cancelled because the client (the gateway) went away. The NDJSON answers carry
`ndjson_content_type` (`application/json`, as n8n sends; `application/x-ndjson` also works).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

WEBHOOK_PATH = "/webhook/chat"
MODES = frozenset({"json", "text", "ndjson", "sse", "hang", "die", "error", "status", "garbage"})
DEFAULT_PIECES = ("Hello", ", ", "world", "!")
ERROR_CONTENT = "workflow failed"
STATUS_MESSAGE = "Workflow could not be started"
GARBAGE_BODY = b"not json at all{{"


@dataclass
class Recorded:
    """One request the webhook received."""

    body: dict[str, Any]
    headers: dict[str, str]
    received_at: float


class FakeN8n:
    """Start with `await fake.start()`; post to `fake.webhook_url`."""

    def __init__(self) -> None:
        self.mode = "json"
        self.pieces: list[str] = list(DEFAULT_PIECES)
        self.interval = 0.0
        self.status = 500
        self.ndjson_content_type = "application/json"
        self.requests: list[Recorded] = []
        self.finished_at: list[float] = []
        self.cancelled = asyncio.Event()
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()
        app = web.Application()
        app.router.add_post(WEBHOOK_PATH, self.webhook)
        self._app = app

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def webhook_url(self) -> str:
        return self.url + WEBHOOK_PATH

    @property
    def answer(self) -> str:
        """The whole answer, as the json and text modes send it."""
        return "".join(self.pieces)

    async def start(self) -> FakeN8n:
        self._runner = web.AppRunner(
            self._app,
            handle_signals=False,
            access_log=None,
            shutdown_timeout=0.1,
            handler_cancellation=True,  # so the fake sees the gateway give up
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        self._stopping.set()  # hanging handlers end, so the cleanup does not wait on them
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def webhook(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._answer(request)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        received_at = time.monotonic()
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return web.json_response({"message": "expected a JSON object"}, status=400)
        self.requests.append(Recorded(body, dict(request.headers), received_at))
        mode = self.mode
        if mode in ("json", "text"):
            if self.interval:
                await asyncio.sleep(self.interval)
            key = "output" if mode == "json" else "text"
            return await self._finish(request, web.json_response({key: self.answer}))
        if mode in ("ndjson", "sse"):
            return await self._stream(request, sse=mode == "sse")
        if mode == "hang":
            await self._stopping.wait()
            return web.json_response({"message": "stopped"}, status=503)
        if mode == "die":
            return await self._die(request)
        if mode == "error":
            return await self._error(request)
        if mode == "status":
            response = web.json_response({"message": STATUS_MESSAGE}, status=self.status)
            return await self._finish(request, response)
        if mode == "garbage":
            response = web.Response(body=GARBAGE_BODY, content_type="application/json")
            return await self._finish(request, response)
        raise AssertionError(f"unknown FakeN8n mode {mode!r}; expected one of {sorted(MODES)}")

    async def _finish(self, request: web.Request, response: web.Response) -> web.Response:
        """Write a whole (non-streamed) answer now, so `finished_at` is when it went out."""
        await response.prepare(request)
        await response.write_eof()
        self.finished_at.append(time.monotonic())
        return response

    @staticmethod
    def _metadata() -> dict[str, Any]:
        return {
            "nodeId": "fake-agent",
            "nodeName": "AI Agent",
            "timestamp": int(time.time() * 1000),
        }

    def _line(self, obj: dict[str, Any], *, sse: bool = False) -> bytes:
        text = json.dumps(obj, separators=(",", ":"))
        return f"data: {text}\n\n".encode() if sse else f"{text}\n".encode()

    async def _open(self, request: web.Request, *, sse: bool = False) -> web.StreamResponse:
        response = web.StreamResponse()
        if sse:
            response.headers["Content-Type"] = "text/event-stream"
            response.headers["Cache-Control"] = "no-cache"
        else:
            response.headers["Content-Type"] = self.ndjson_content_type
        await response.prepare(request)
        return response

    async def _stream(self, request: web.Request, *, sse: bool) -> web.StreamResponse:
        response = await self._open(request, sse=sse)
        await response.write(self._line({"type": "begin", "metadata": self._metadata()}, sse=sse))
        for piece in list(self.pieces):
            if self.interval:
                await asyncio.sleep(self.interval)
            item = {"type": "item", "content": piece, "metadata": self._metadata()}
            await response.write(self._line(item, sse=sse))
        await response.write(self._line({"type": "end", "metadata": self._metadata()}, sse=sse))
        await response.write_eof()
        self.finished_at.append(time.monotonic())
        return response

    async def _die(self, request: web.Request) -> web.StreamResponse:
        response = await self._open(request)
        await response.write(self._line({"type": "begin", "metadata": self._metadata()}))
        if self.pieces:
            if self.interval:
                await asyncio.sleep(self.interval)
            item = {"type": "item", "content": self.pieces[0], "metadata": self._metadata()}
            await response.write(self._line(item))
        transport = request.transport
        if transport is not None:
            transport.abort()
        return response

    async def _error(self, request: web.Request) -> web.StreamResponse:
        response = await self._open(request)
        await response.write(self._line({"type": "begin", "metadata": self._metadata()}))
        await response.write(self._line({"type": "error", "content": ERROR_CONTENT}))
        await response.write_eof()
        self.finished_at.append(time.monotonic())
        return response
