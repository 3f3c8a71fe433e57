"""The request body, read from ASGI and handed to aiohttp without buffering it whole."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from ferryman.errors import BadRequest, GatewayError, PayloadTooLarge
from ferryman.observability.context import RequestContext
from ferryman.types import Receive


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


class RequestBody:
    """The first ASGI body message decides: a whole body as bytes, or a stream.

    When it is a stream, errors found while aiohttp pulls from it (too large, client
    gone) are kept in `error` because aiohttp reports them as its own exception.
    """

    __slots__ = ("_ctx", "_limit", "_on_complete", "_receive", "error")

    def __init__(
        self,
        receive: Receive,
        ctx: RequestContext,
        limit: int,
        on_complete: Callable[[], None],
    ) -> None:
        self._receive = receive
        self._ctx = ctx
        self._limit = limit
        self._on_complete = on_complete
        self.error: GatewayError | ClientDisconnected | None = None

    async def first(self) -> bytes | AsyncIterator[bytes]:
        message = await self._receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        body: bytes = message.get("body", b"")
        self._ctx.bytes_in = len(body)
        if len(body) > self._limit:
            raise too_large(self._limit)
        if not message.get("more_body", False):
            self._on_complete()
            return body
        return self._stream(body)

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
                self._on_complete()
                return
