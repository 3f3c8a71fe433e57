"""The HTTP protocol `serve` runs: uvicorn's httptools protocol, hardened for clients
on the internet.

uvicorn gives a connection all the time it wants to send its request head, lets one
address open as many connections as it likes, and answers a malformed request with a
plain-text 400 and a warning line. Here:

- a connection that has not sent a whole request head within `header_timeout` seconds
  of opening, or of starting the next request, is closed (slow-header clients hold a
  socket and a file descriptor each for as long as they like otherwise);
- one client address holds at most `per_ip` connections at once; a further one is
  answered `503 too_many_connections` (JSON, `Retry-After: 1`) as soon as it sends
  its request, and closed (addresses in FERRYMAN_TRUSTED_PROXIES, whose connections
  carry many clients, are exempt). An answer, not a silent close: a busy backend that
  outgrows the cap must see why in its own logs, and an HTTP client does not retry a
  503 as it would a dropped connection;
- a malformed request (a bad chunk, a broken header) is answered with Ferryman's JSON
  `400 invalid_request` and counted as such in the access line when a request was under
  way, never as an error of ours.

The watch on request heads is one periodic look over the server's connections, not a
timer per request; the hot path pays two attribute writes and a counter.

It subclasses uvicorn internals (the version is pinned in constraints.txt); the tests
in tests/e2e/test_hostile_clients.py fail loudly if they change.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any, ClassVar

import structlog
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ferryman.config.settings import Settings
from ferryman.observability.context import (
    INVALID_REQUEST,
    SCOPE_KEY,
    RequestContext,
    new_request_id,
)
from ferryman.observability.responses import error_body
from ferryman.proxy.headers import TrustedProxies

log = structlog.get_logger("ferryman.server")

#: Seconds between two looks at the connections' request heads.
TICK = 0.5

_INVALID = "Invalid HTTP request received."


class _QuietInvalid(logging.Filter):
    """uvicorn warns about each malformed request; Ferryman logs it itself (one line)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != _INVALID


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a head timeout, a per-address connection cap
    and malformed requests answered in Ferryman's format."""

    header_ticks: ClassVar[int] = math.ceil(10.0 / TICK)
    per_ip: ClassVar[int] = 256
    trusted: ClassVar[TrustedProxies] = TrustedProxies([])
    #: Open connections per client address, in this process.
    open: ClassVar[dict[str, int]] = {}
    now: ClassVar[int] = 0
    _sweeper: ClassVar[asyncio.Task[None] | None] = None
    _said: ClassVar[dict[str, float]] = {}
    closed_slow: ClassVar[int] = 0
    refused: ClassVar[int] = 0

    _peer: str
    _heads_since: int
    _refused: bool = False

    @classmethod
    def configure(cls, settings: Settings) -> None:
        cls.header_ticks = max(1, math.ceil(settings.header_timeout / TICK))
        cls.per_ip = settings.max_connections_per_ip
        cls.trusted = TrustedProxies(settings.trusted_proxies)
        errors = logging.getLogger("uvicorn.error")
        if not any(isinstance(f, _QuietInvalid) for f in errors.filters):
            errors.addFilter(_QuietInvalid())

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        cls = GuardedProtocol
        self._heads_since = cls.now
        peer = self.client[0] if self.client else ""
        self._peer = peer
        count = cls.open.get(peer, 0) + 1
        cls.open[peer] = count
        if cls._sweeper is None or cls._sweeper.done():
            cls._sweeper = self.loop.create_task(_sweep(self.server_state.connections))
        if 0 < cls.per_ip < count and not cls.trusted.trusts(peer):
            cls.refused += 1
            _say(peer, "connection_refused", f"over {cls.per_ip} connections from one address")
            # Answered once the request is in (closing with it unread would reset the
            # connection and lose the answer); one that sends nothing meets the head
            # timeout.
            self._refused = True

    def data_received(self, data: bytes) -> None:
        # (uvloop holds the bound method from before connection_made: a flag, not an
        # instance attribute, tells a refused connection.)
        if self._refused:
            self._refuse()
        else:
            super().data_received(data)

    def _refuse(self) -> None:
        if self.transport.is_closing():
            return
        body = error_body(
            "too_many_connections",
            f"at most {GuardedProtocol.per_ip} connections at once from one address",
            new_request_id(),
        )
        self.transport.write(
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
            b"retry-after: 1\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s"
            % (len(body), body)
        )
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        cls = GuardedProtocol
        count = cls.open.get(self._peer, 1) - 1
        if count > 0:
            cls.open[self._peer] = count
        else:
            cls.open.pop(self._peer, None)
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        self._heads_since = GuardedProtocol.now
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._heads_since = -1
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        """A malformed request: answered in the JSON format, and told once."""
        ctx: RequestContext | None = None
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            # A request is under way (perhaps not yet started: its head and the bad
            # bytes came in one read): its access line tells it, as a 400, not a 499.
            cycle.scope[INVALID_REQUEST] = True  # type: ignore[literal-required]
            ctx = cycle.scope.get(SCOPE_KEY)  # type: ignore[assignment]
        else:
            log.warning("invalid_request", client_ip=self._peer, reason="malformed HTTP")
        body = error_body(
            "invalid_request",
            "malformed HTTP request (framing, headers or chunks)",
            ctx.correlation_id if ctx is not None else new_request_id(),
        )
        self.transport.write(
            b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body)
        )
        self.transport.close()


async def _sweep(connections: set[Any]) -> None:
    """Every TICK: close connections that have been sending a request head too long."""
    cls = GuardedProtocol
    while True:
        await asyncio.sleep(TICK)
        cls.now += 1
        limit = cls.now - cls.header_ticks
        for connection in list(connections):
            since = getattr(connection, "_heads_since", -1)
            if 0 <= since <= limit and not connection.transport.is_closing():
                cls.closed_slow += 1
                _say(connection._peer, "header_timeout", "request head not sent in time")
                connection.transport.close()


def _say(peer: str, event: str, reason: str) -> None:
    """A warning at most once a minute per event: a flood must not flood the log."""
    now = time.monotonic()
    if now - GuardedProtocol._said.get(event, -math.inf) >= 60.0:
        GuardedProtocol._said[event] = now
        log.warning(event, client_ip=peer, reason=reason)
