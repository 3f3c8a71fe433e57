"""The proxy as an ASGI app: match a route, apply its policy, forward."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING
from urllib.parse import quote

from ferryman.auth.policy import RoutePolicy
from ferryman.errors import GatewayError, ServiceUnavailable, Unauthorized
from ferryman.observability.context import SCOPE_KEY, RequestContext
from ferryman.observability.responses import Responder
from ferryman.proxy.headers import host_of
from ferryman.proxy.paths import check_path
from ferryman.proxy.routing import RouteTable
from ferryman.proxy.streaming import Forwarder
from ferryman.types import Receive, Scope, Send

if TYPE_CHECKING:
    from ferryman.auth.services import Auth


class Proxy:
    """Routes every request it is given; answers gateway errors in the JSON format."""

    def __init__(self, table: RouteTable, forwarder: Forwarder, responder: Responder) -> None:
        self._table = table
        self._forwarder = forwarder
        self._responder = responder
        self._uses_hosts = any(route.host is not None for route in table.routes)
        self._policies: dict[str, RoutePolicy] = {}

    def install_auth(self, auth: Auth) -> None:
        """Compile every credentialed route's policy (once the database is up)."""
        self._policies = {
            route.name: RoutePolicy(auth, route.spec)
            for route in self._table.routes
            if route.auth != ("none",)
        }

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
            drop: frozenset[bytes] = frozenset()
            add: list[tuple[str, str]] = []
            if route.auth != ("none",):
                policy = self._policies.get(route.name)
                if policy is None:
                    # No identity services (not started): nothing can be verified.
                    raise Unauthorized(
                        "this route requires a credential", code="missing_credential"
                    )
                admitted = await policy.admit(scope["headers"])
                ctx.consumer = admitted.identity.user_id
                ctx.credential = admitted.identity.credential_id
                drop, add = admitted.drop, admitted.add
            await self._forwarder.forward(
                scope, receive, send, ctx, route, raw.decode("ascii"), add, drop
            )
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
