"""The client's side of an exchange: its body, read as it arrives, and its departure.

A body that comes in pieces is read whole, up to the route's `request_body.buffer`,
before an upstream connection is taken, so a client that sends slowly ties up nothing
of the upstream's pool; a larger body streams to aiohttp as it arrives. Either way the
`Watchdog` ends a request whose client sends nothing for `idle_timeout`, or takes more
than `timeout` over a buffered body (`408 request_timeout`), and, once the body is in,
watches the client for `http.disconnect` so that a client who leaves cancels the
upstream request.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import NamedTuple

from ferryman.errors import BadRequest, GatewayError, PayloadTooLarge, RequestTimeout
from ferryman.observability.context import RequestContext
from ferryman.proxy.watchdog import TICK, Watchdog
from ferryman.types import Receive


class ClientDisconnected(Exception):
    """The client went away before the request was complete."""


class BodyRules(NamedTuple):
    """How one route takes request bodies, in bytes and watchdog ticks."""

    limit: int
    """Largest body accepted (413 beyond)."""
    buffer: int
    """A body up to this size is read whole before going upstream."""
    total_ticks: int
    """Ticks a buffered body may take in all."""
    idle_ticks: int
    """Ticks without a piece of the body, buffered or streamed."""


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"request body is larger than the limit of {limit} bytes")


def declared_length(value: bytes | None, limit: int) -> int | None:
    """Check a `Content-Length` header against the limit before reading anything."""
    if value is None:
        return None
    try:
        length = int(value)
    except ValueError:
        raise BadRequest("invalid Content-Length", code="invalid_header") from None
    if length < 0:
        raise BadRequest("invalid Content-Length", code="invalid_header")
    if length > limit:
        raise too_large(limit)
    return length


async def _watch_disconnect(
    receive: Receive, ctx: RequestContext, task: asyncio.Task[object]
) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    if not ctx.response_done:
        ctx.client_gone = True
        task.cancel()


class ClientStream:
    """One request's client: its body (bytes, or a stream when it is larger than the
    buffer) and a watch on its connection.

    Errors found while aiohttp pulls a streamed body (too large, too slow, client gone)
    are kept in `error`, because aiohttp reports them as its own exception; `timed_out`
    says the watchdog cancelled the request because the client was too slow.
    """

    __slots__ = (
        "_age",
        "_buffering",
        "_ctx",
        "_done",
        "_idle",
        "_receive",
        "_rules",
        "_task",
        "_total",
        "_waiting",
        "_watchdog",
        "_watcher",
        "error",
        "timed_out",
    )

    def __init__(
        self, receive: Receive, ctx: RequestContext, rules: BodyRules, watchdog: Watchdog
    ) -> None:
        self._receive = receive
        self._ctx = ctx
        self._rules = rules
        self._task: asyncio.Task[object] | None = asyncio.current_task()
        self._watchdog = watchdog
        self._watcher: asyncio.Task[None] | None = None
        self._waiting = False  # a piece of the body is awaited
        self._buffering = True  # the body is read whole before going upstream
        self._done = False  # the whole body is in
        self._idle = 0  # ticks the current piece has been awaited
        self._total = 0  # ticks the buffered body has taken
        self._age = 0  # ticks since the body was complete
        self.error: GatewayError | ClientDisconnected | None = None
        self.timed_out = False
        watchdog.streams.add(self)

    async def first(self) -> bytes | AsyncIterator[bytes]:
        """The body if it is complete within the buffer, else a stream of it (what was
        read first, then the rest as it arrives)."""
        self._waiting = True
        message = await self._receive()
        self._waiting = False
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        body: bytes = message.get("body", b"")
        self._ctx.bytes_in = len(body)
        if len(body) > self._rules.limit:
            raise too_large(self._rules.limit)
        if not message.get("more_body", False):
            self._done = True
            return body
        parts = [body]
        size = len(body)
        while size <= self._rules.buffer:
            chunk, more = await self._piece()
            parts.append(chunk)
            size += len(chunk)
            if not more:
                self._done = True
                return b"".join(parts)
        self._buffering = False  # from here only the idle limit applies
        return self._stream(parts)

    async def replayable(
        self, body: bytes | AsyncIterator[bytes], limit: int
    ) -> bytes | AsyncIterator[bytes]:
        """The body as bytes when it ends within `limit` (so it can be sent again), else
        a stream of what was read followed by the rest."""
        if isinstance(body, bytes):
            return body
        parts: list[bytes] = []
        size = 0
        async for chunk in body:
            parts.append(chunk)
            size += len(chunk)
            if size > limit:
                return _chain(parts, body)
        return b"".join(parts)

    async def _piece(self) -> tuple[bytes, bool]:
        """The next piece of the body and whether more follows."""
        self._waiting = True
        self._idle = 0
        message = await self._receive()
        self._waiting = False
        if message["type"] == "http.disconnect":
            self.error = ClientDisconnected()
            raise self.error
        chunk: bytes = message.get("body", b"")
        self._ctx.bytes_in += len(chunk)
        if self._ctx.bytes_in > self._rules.limit:
            self.error = too_large(self._rules.limit)
            raise self.error
        return chunk, bool(message.get("more_body", False))

    async def _stream(self, head: list[bytes]) -> AsyncIterator[bytes]:
        for chunk in head:
            if chunk:
                yield chunk
        while True:
            chunk, more = await self._piece()
            if chunk:
                yield chunk
            if not more:
                self._done = True
                return

    def look(self) -> bool:
        """The watchdog's tick: True when this request has just been timed out."""
        if self._waiting:
            self._idle += 1
            if self._buffering:
                self._total += 1
            rules = self._rules
            if self._idle >= rules.idle_ticks:
                return self._time_out(f"nothing for {rules.idle_ticks * TICK:g} s")
            if self._buffering and self._total >= rules.total_ticks:
                return self._time_out(f"not whole after {rules.total_ticks * TICK:g} s")
        elif self._buffering and not self._done:
            self._total += 1
        elif self._done and self._watcher is None and not self._ctx.response_done:
            self._age += 1
            if self._age > 1 and self._task is not None:  # still running a tick later
                self._watcher = asyncio.get_running_loop().create_task(
                    _watch_disconnect(self._receive, self._ctx, self._task)
                )
                # Nothing more to look at: long streams do not weigh on every tick.
                self._watchdog.streams.discard(self)
        return False

    def _time_out(self, why: str) -> bool:
        self._waiting = False
        self.timed_out = True
        self.error = RequestTimeout(f"the request body did not arrive in time ({why})")
        self._watchdog.streams.discard(self)
        if self._task is not None:
            self._task.cancel()
        return True

    def close(self) -> None:
        """Stop watching: the exchange is over."""
        self._watchdog.streams.discard(self)
        if self._watcher is not None:
            self._watcher.cancel()


async def _chain(head: list[bytes], rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    for chunk in head:
        yield chunk
    async for chunk in rest:
        yield chunk
