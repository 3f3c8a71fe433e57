"""A real HTTP upstream on loopback that can be told to misbehave.

One aiohttp server answers every kind the gateway must cope with:

    /echo/...                 method, raw path, query, headers and body, as JSON
    /sse?events=N&interval=S  text/event-stream, one event every S seconds
    /slow?delay=S             answers after S seconds
    /hang                     never answers; records when the gateway gives up
    /reset                    closes the connection without answering
    /reset-midway             sends headers and part of a body, then resets
    /redirect?to=URL          302 to URL
    /gzip                     a gzip-encoded body with Content-Encoding: gzip
    /large?size=N&chunked=1   N bytes, with Content-Length or chunked
    /status/CODE              an empty answer with that status
    /cookies                  two Set-Cookie headers
    /headers?h=Name:Value...  an empty 200 with each `h` as a response header (repeatable)
    /upload                   reads the body in chunks, returns its size and hash
    /drip?bytes=N&interval=S  declares N bytes, then sends one every S seconds
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import time
from dataclasses import dataclass, field

from aiohttp import web

PAYLOAD_BYTE = b"x"


@dataclass
class Seen:
    """What the fake observed, for tests to assert on."""

    requests: list[dict[str, object]] = field(default_factory=list)
    hang_started: asyncio.Event = field(default_factory=asyncio.Event)
    hang_cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    sse_sent_at: list[float] = field(default_factory=list)
    sse_cancelled: asyncio.Event = field(default_factory=asyncio.Event)


class FakeUpstream:
    """Start with `await fake.start()`; `fake.url` is its base URL."""

    def __init__(self) -> None:
        self.seen = Seen()
        self._runner: web.AppRunner | None = None
        self.port = 0
        app = web.Application(client_max_size=1024**3)
        app.router.add_route("*", "/echo{tail:.*}", self.echo)
        app.router.add_get("/sse", self.sse)
        app.router.add_get("/slow", self.slow)
        app.router.add_route("*", "/hang", self.hang)
        app.router.add_route("*", "/reset", self.reset)
        app.router.add_get("/reset-midway", self.reset_midway)
        app.router.add_get("/redirect", self.redirect)
        app.router.add_get("/gzip", self.gzipped)
        app.router.add_get("/large", self.large)
        app.router.add_route("*", "/status/{code}", self.status)
        app.router.add_get("/cookies", self.cookies)
        app.router.add_get("/headers", self.headers)
        app.router.add_post("/upload", self.upload)
        app.router.add_get("/drip", self.drip)
        self.app = app

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> FakeUpstream:
        self._runner = web.AppRunner(
            self.app,
            handle_signals=False,
            access_log=None,
            shutdown_timeout=0.1,
            handler_cancellation=True,  # so the fake sees the gateway give up
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

    def _record(self, request: web.Request) -> None:
        self.seen.requests.append(
            {"method": request.method, "path": request.raw_path, "headers": dict(request.headers)}
        )

    async def echo(self, request: web.Request) -> web.Response:
        self._record(request)
        body = await request.read()
        return web.json_response(
            {
                "method": request.method,
                "raw_path": request.raw_path,
                "path": request.path,
                "query": request.query_string,
                "headers": [
                    [k.decode("latin-1"), v.decode("latin-1")] for k, v in request.raw_headers
                ],
                "body": body.decode("latin-1"),
                "body_length": len(body),
                "chunked": request.headers.get("Transfer-Encoding", "") == "chunked",
            }
        )

    async def sse(self, request: web.Request) -> web.StreamResponse:
        self._record(request)
        events = int(request.query.get("events", "3"))
        interval = float(request.query.get("interval", "0.05"))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        response.headers["Cache-Control"] = "no-cache"
        await response.prepare(request)
        try:
            for index in range(events):
                await response.write(f"data: event {index}\n\n".encode())
                self.seen.sse_sent_at.append(time.monotonic())
                if index < events - 1:
                    await asyncio.sleep(interval)
            await response.write(b"data: [DONE]\n\n")
        except (asyncio.CancelledError, ConnectionResetError):
            self.seen.sse_cancelled.set()
            raise
        await response.write_eof()
        return response

    async def slow(self, request: web.Request) -> web.Response:
        self._record(request)
        await asyncio.sleep(float(request.query.get("delay", "1")))
        return web.json_response({"slow": True})

    async def hang(self, request: web.Request) -> web.Response:
        self._record(request)
        self.seen.hang_started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            self.seen.hang_cancelled.set()
            raise
        return web.Response()  # pragma: no cover

    async def reset(self, request: web.Request) -> web.Response:
        self._record(request)
        transport = request.transport
        assert transport is not None
        transport.abort()
        await asyncio.sleep(0.01)
        raise ConnectionResetError

    async def reset_midway(self, request: web.Request) -> web.StreamResponse:
        self._record(request)
        response = web.StreamResponse(headers={"Content-Length": "100000"})
        await response.prepare(request)
        await response.write(b"y" * 1000)
        await response.drain()
        await asyncio.sleep(0.05)
        transport = request.transport
        assert transport is not None
        transport.abort()
        return response

    async def drip(self, request: web.Request) -> web.StreamResponse:
        self._record(request)
        size = int(request.query.get("bytes", "4"))
        interval = float(request.query.get("interval", "0.5"))
        response = web.StreamResponse(headers={"Content-Length": str(size)})
        await response.prepare(request)
        for n in range(size):
            await response.write(bytes([ord("a") + n % 26]))
            if n < size - 1:
                await asyncio.sleep(interval)
        return response

    async def redirect(self, request: web.Request) -> web.Response:
        self._record(request)
        return web.Response(status=302, headers={"Location": request.query.get("to", "/")})

    async def gzipped(self, request: web.Request) -> web.Response:
        self._record(request)
        body = gzip.compress(b'{"compressed": true}' * 50)
        return web.Response(
            body=body,
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        )

    async def large(self, request: web.Request) -> web.StreamResponse:
        self._record(request)
        size = int(request.query.get("size", str(1024 * 1024)))
        chunked = request.query.get("chunked") == "1"
        response = web.StreamResponse()
        response.content_type = "application/octet-stream"
        if chunked:
            response.enable_chunked_encoding()
        else:
            response.content_length = size
        await response.prepare(request)
        block = PAYLOAD_BYTE * 65536
        remaining = size
        while remaining:
            piece = block[: min(remaining, len(block))]
            await response.write(piece)
            remaining -= len(piece)
        await response.write_eof()
        return response

    async def status(self, request: web.Request) -> web.Response:
        self._record(request)
        code = int(request.match_info["code"])
        return web.Response(status=code, headers={"X-Upstream-Status": str(code)})

    async def cookies(self, request: web.Request) -> web.Response:
        self._record(request)
        response = web.Response(text="cookies")
        response.headers.add("Set-Cookie", "a=1; Path=/")
        response.headers.add("Set-Cookie", "b=2; Path=/")
        return response

    async def headers(self, request: web.Request) -> web.Response:
        self._record(request)
        response = web.Response(text="headers")
        for item in request.query.getall("h", []):
            name, _, value = item.partition(":")
            response.headers.add(name, value.strip())
        return response

    async def upload(self, request: web.Request) -> web.Response:
        self._record(request)
        digest = hashlib.sha256()
        size = 0
        async for chunk in request.content.iter_any():
            digest.update(chunk)
            size += len(chunk)
        return web.json_response(
            {
                "size": size,
                "sha256": digest.hexdigest(),
                "chunked": request.headers.get("Transfer-Encoding", "") == "chunked",
                "content_length": request.headers.get("Content-Length"),
            }
        )
