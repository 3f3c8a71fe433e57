"""The client's side of an exchange: its body, read as it arrives, and its departure.

The body goes to aiohttp without being buffered whole. Once it is complete, the
client is watched for `http.disconnect` so that a client who leaves cancels the
upstream request; the watcher is a task, so it is only started once the request has
run for `WATCH_AFTER` (most answers are complete sooner and never pay for one).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from ferryman.errors import BadRequest, GatewayError, PayloadTooLarge
from ferryman.observability.context import RequestContext
from ferryman.types import Receive

#: How long a request runs before its client is watched; a slow or streaming request
#: is cancelled at most this long after its client has gone.
WATCH_AFTER = 0.05


class ClientDisconnected(Exception):
    """The client went away before the request was complete."""


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
    """One request's client: its body (bytes, or a stream when it comes in pieces) and
    a watch on its connection once the body is in.

    Errors found while aiohttp pulls a streamed body (too large, client gone) are kept
    in `error`, because aiohttp reports them as its own exception.
    """

    __slots__ = ("_ctx", "_limit", "_receive", "_task", "_timer", "_watcher", "error")

    def __init__(self, receive: Receive, ctx: RequestContext, limit: int) -> None:
        self._receive = receive
        self._ctx = ctx
        self._limit = limit
        self._task: asyncio.Task[object] | None = asyncio.current_task()
        self._timer: asyncio.TimerHandle | None = None
        self._watcher: asyncio.Task[None] | None = None
        self.error: GatewayError | ClientDisconnected | None = None

    async def first(self) -> bytes | AsyncIterator[bytes]:
        """The body if it came in one message, else an iterator over its pieces."""
        message = await self._receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        body: bytes = message.get("body", b"")
        self._ctx.bytes_in = len(body)
        if len(body) > self._limit:
            raise too_large(self._limit)
        if not message.get("more_body", False):
            self._complete()
            return body
        return self._stream(body)

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

    async def _stream(self, first: bytes) -> AsyncIterator[bytes]:
        if first:
            yield first
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self.error = ClientDisconnected()
                raise self.error
            chunk: bytes = message.get("body", b"")
            self._ctx.bytes_in += len(chunk)
            if self._ctx.bytes_in > self._limit:
                self.error = too_large(self._limit)
                raise self.error
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                self._complete()
                return

    def _complete(self) -> None:
        # Called from aiohttp's body-writing task when the body was streamed, so the
        # task to cancel is the one that created this object.
        self._timer = asyncio.get_running_loop().call_later(WATCH_AFTER, self._start_watching)

    def _start_watching(self) -> None:
        if self._ctx.response_done or self._task is None:
            return
        self._watcher = asyncio.get_running_loop().create_task(
            _watch_disconnect(self._receive, self._ctx, self._task)
        )

    def close(self) -> None:
        """Stop watching: the exchange is over."""
        if self._timer is not None:
            self._timer.cancel()
        if self._watcher is not None:
            self._watcher.cancel()


async def _chain(head: list[bytes], rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    for chunk in head:
        yield chunk
    async for chunk in rest:
        yield chunk
