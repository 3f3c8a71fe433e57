"""The proxy as an ASGI app: match a route, apply its policy, forward."""

from __future__ import annotations

import asyncio
from urllib.parse import quote

from ferryman.errors import GatewayError, ServiceUnavailable, Unauthorized
from ferryman.observability.context import SCOPE_KEY, RequestContext
from ferryman.observability.responses import Responder
from ferryman.proxy.headers import host_of
from ferryman.proxy.paths import check_path
from ferryman.proxy.routing import CompiledRoute, RouteTable
from ferryman.proxy.streaming import Forwarder
from ferryman.types import Receive, Scope, Send


class Proxy:
    """Routes every request it is given; answers gateway errors in the JSON format."""

    def __init__(self, table: RouteTable, forwarder: Forwarder, responder: Responder) -> None:
        self._table = table
        self._forwarder = forwarder
        self._responder = responder
        self._uses_hosts = any(route.host is not None for route in table.routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            # WebSocket routes are not served yet: refuse the handshake (403).
            await send({"type": "websocket.close", "code": 1008})
            return
        ctx: RequestContext = scope[SCOPE_KEY]
        try:
            raw = scope.get("raw_path") or quote(scope["path"]).encode("ascii")
            path = check_path(raw)
            host = host_of(scope["headers"]) if self._uses_hosts else ""
            route = self._table.match(scope["method"], host, path)
            ctx.route = route.name
            self._authorise(route)
            await self._forwarder.forward(scope, receive, send, ctx, route, raw.decode("ascii"), [])
        except GatewayError as error:
            ctx.error = error.code
            await self._responder.error(send, error, ctx.correlation_id)
        except asyncio.CancelledError:
            # Only the server cancels a request it has not finished: the shutdown grace
            # period ran out. Say so properly if nothing has been sent yet.
            if ctx.status or ctx.client_gone:
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            shutdown = ServiceUnavailable("the gateway is shutting down", code="shutting_down")
            ctx.error = shutdown.code
            await self._responder.error(send, shutdown, ctx.correlation_id)

    @staticmethod
    def _authorise(route: CompiledRoute) -> None:
        if route.auth != ("none",):
            # No credential store exists yet, so nothing can satisfy these kinds: fail closed.
            kinds = ", ".join(route.auth)
            raise Unauthorized(
                f"this route requires a credential ({kinds})", code="missing_credential"
            )
