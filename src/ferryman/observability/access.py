"""The outermost layer: a request id, the access log line and the request metrics."""

from __future__ import annotations

import logging
import time

import structlog

from ferryman.errors import GatewayError
from ferryman.metering.writer import UsageWriter
from ferryman.observability.access_log import Record
from ferryman.observability.context import (
    INVALID_REQUEST,
    SCOPE_KEY,
    RequestContext,
    pick_request_id,
)
from ferryman.observability.metrics import Metrics
from ferryman.observability.recorder import RequestRecorder
from ferryman.observability.responses import Responder
from ferryman.proxy.headers import TrustedProxies
from ferryman.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger("ferryman.access")

#: Routes answered by the gateway itself; logged at debug level when they succeed.
QUIET_ROUTES = frozenset({"health", "metrics"})


class Observe:
    """Gives each request a context and correlation id; logs and measures it once done.

    The request's record goes to the `RequestRecorder`, which updates the metrics and
    writes the access line in batches, off the request path.

    `X-Request-ID` is taken from the client when it is sane, else generated, and is
    returned on every response.
    """

    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        trusted: TrustedProxies,
        responder: Responder,
        recorder: RequestRecorder,
    ) -> None:
        self.app = app
        self._recorder = recorder
        self._metrics = metrics
        self._trusted = trusted
        self._responder = responder
        #: Set once the database is up: where usage records of proxied requests go.
        self.usage: UsageWriter | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = forwarded_for = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                request_id = value
            elif name == b"x-forwarded-for":
                forwarded_for = value
        client = scope.get("client")
        peer = client[0] if client else "-"
        client_ip = self._trusted.client_ip(peer, forwarded_for) if self._trusted else peer
        ctx = RequestContext(pick_request_id(request_id), client_ip)
        scope[SCOPE_KEY] = ctx
        request_id_header = (b"x-request-id", ctx.correlation_id.encode())

        async def observed_send(message: Message) -> None:
            kind = message["type"]
            if kind == "http.response.body":
                ctx.bytes_out += len(message.get("body", b""))
            elif kind == "http.response.start":
                ctx.status = message["status"]
                headers = message.get("headers")
                if isinstance(headers, list):
                    headers.append(request_id_header)
                else:
                    message["headers"] = [*(headers or ()), request_id_header]
            elif kind == "websocket.accept":
                ctx.status = 101
            elif kind == "websocket.close" and not ctx.status:
                # Closed before it was accepted: the server answers the handshake 403.
                ctx.status = 403
                ctx.response_done = True
            elif kind == "websocket.http.response.start":
                ctx.status = message["status"]
            await send(message)

        metrics = self._metrics
        metrics.request_started()
        try:
            await self.app(scope, receive, observed_send)
        except Exception as exc:
            if ctx.error == "internal_error" and ctx.status == 500:
                return  # answered and logged where it was caught (the management API)
            if ctx.status or ctx.client_gone or scope["type"] != "http":
                if ctx.error is None:
                    ctx.error = type(exc).__name__
                raise
            # A bug, not a client's or an upstream's doing: say so in the error format.
            log.exception("unhandled_error", correlation_id=ctx.correlation_id, route=ctx.route)
            ctx.error = "internal_error"
            error = GatewayError("the gateway failed to handle this request")
            await self._responder.error(observed_send, error, ctx.correlation_id)
        finally:
            metrics.request_finished()
            self._record(scope, ctx)

    def _record(self, scope: Scope, ctx: RequestContext) -> None:
        elapsed = time.perf_counter() - ctx.started
        status = ctx.status
        if ctx.client_gone and not ctx.response_done:
            if scope.get(INVALID_REQUEST):
                status, ctx.error = 400, "invalid_request"  # answered by the server
            else:
                status = 499  # client closed request, as nginx counts it
                ctx.error = ctx.error or "client_disconnected"
        elif not status:
            status = 500
        route = ctx.route or "-"
        record: Record = (
            time.time(),
            logging.DEBUG if route in QUIET_ROUTES and status < 400 else logging.INFO,
            scope.get("method", "GET"),  # a WebSocket scope has none: its handshake is a GET
            scope.get("raw_path") or scope.get("path", "").encode(),
            scope.get("query_string", b""),
            route,
            status,
            elapsed,
            ctx.upstream,
            ctx.upstream_headers - ctx.upstream_sent if ctx.upstream_headers else None,
            ctx.upstream_ended - ctx.upstream_sent if ctx.upstream_ended else None,
            ctx.bytes_in,
            ctx.bytes_out,
            ctx.correlation_id,
            ctx.client_ip,
            ctx.consumer,
            ctx.credential,
            ctx.error,
            ctx.upstream_key,
            ctx.attempts,
            ctx.websocket,
        )
        self._recorder.record(record)
        if ctx.meter and self.usage is not None:
            # The usage row is built from the same record, later, in the writer's batch.
            self.usage.record(record, ctx.reading)
