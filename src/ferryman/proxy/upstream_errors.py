"""The one place aiohttp's exceptions become Ferryman's UpstreamError family."""

from __future__ import annotations

import asyncio

import aiohttp

from ferryman.errors import (
    UpstreamConnectError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTimeout,
)


def translate(exc: BaseException, upstream: str) -> UpstreamError:
    """An UpstreamError naming `upstream` (never its address) for a client exception."""
    if isinstance(exc, UpstreamError):
        return exc
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return UpstreamTimeout(f"upstream {upstream!r} did not accept a connection in time")
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return UpstreamTimeout(f"upstream {upstream!r} did not answer in time")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamConnectError(f"upstream {upstream!r} could not be reached")
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError):
        return UpstreamConnectError(
            f"upstream {upstream!r} closed the connection", code="upstream_disconnected"
        )
    if isinstance(exc, aiohttp.ClientPayloadError):
        return UpstreamConnectError(
            f"upstream {upstream!r} broke off the response", code="upstream_disconnected"
        )
    if isinstance(exc, aiohttp.ClientResponseError):
        return UpstreamProtocolError(f"upstream {upstream!r} sent an invalid response")
    return UpstreamError(f"upstream {upstream!r} failed")


def reason(error: UpstreamError) -> str:
    """A short metric label for an upstream failure."""
    if isinstance(error, UpstreamTimeout):
        return "timeout"
    if error.code == "upstream_disconnected":
        return "disconnect"
    if isinstance(error, UpstreamConnectError):
        return "connect"
    if isinstance(error, UpstreamProtocolError):
        return "protocol"
    return "other"
