"""Refuse requests whose `Host` header is not one this gateway serves."""

from __future__ import annotations

from ferryman.errors import BadRequest
from ferryman.observability.context import SCOPE_KEY, RequestContext
from ferryman.observability.responses import Responder
from ferryman.proxy.headers import host_of
from ferryman.types import ASGIApp, Receive, Scope, Send


class TrustedHost:
    """400 `invalid_host` unless the host is listed (`api.example.com`, `*.example.com`)."""

    def __init__(self, app: ASGIApp, hosts: tuple[str, ...], responder: Responder) -> None:
        self.app = app
        self._exact = frozenset(h for h in hosts if not h.startswith("*."))
        self._suffixes = tuple(h[1:] for h in hosts if h.startswith("*."))
        self._responder = responder

    def allows(self, host: str) -> bool:
        if host in self._exact:
            return True
        return any(host.endswith(s) and len(host) > len(s) for s in self._suffixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self.allows(host_of(scope["headers"])):
            await self.app(scope, receive, send)
            return
        ctx: RequestContext = scope[SCOPE_KEY]
        if scope["type"] == "websocket":
            ctx.error = "invalid_host"
            await send({"type": "websocket.close", "code": 1008})  # a 403 to the handshake
            return
        error = BadRequest("the Host header names no host this gateway serves", code="invalid_host")
        ctx.error = error.code
        await self._responder.error(send, error, ctx.correlation_id)
