"""CORS with an allow-list: the gateway answers preflights and owns the CORS headers.

Upstreams' own `Access-Control-*` headers are removed from responses to browsers, so
the gateway's list is the only one that counts.
"""

from __future__ import annotations

from ferryman.config.security import Cors as CorsConfig
from ferryman.errors import Forbidden
from ferryman.observability.context import SCOPE_KEY, RequestContext
from ferryman.observability.responses import Responder
from ferryman.types import ASGIApp, Headers, Message, Receive, Scope, Send


class Cors:
    """Answers preflights for allowed origins; adds CORS headers to their responses."""

    def __init__(self, app: ASGIApp, config: CorsConfig, responder: Responder) -> None:
        self.app = app
        self._responder = responder
        self._any_origin = "*" in config.allow_origins
        self._origins = frozenset(o.encode() for o in config.allow_origins if o != "*")
        self._methods = frozenset(m.upper() for m in config.allow_methods)
        self._methods_value = ", ".join(config.allow_methods).encode()
        self._any_header = "*" in config.allow_headers
        self._headers = frozenset(h.lower() for h in config.allow_headers if h != "*")
        self._headers_value = ", ".join(h for h in config.allow_headers if h != "*").encode()
        self._expose = ", ".join(config.expose_headers).encode()
        self._credentials = config.allow_credentials
        self._max_age = str(config.max_age).encode()

    def _allowed(self, origin: bytes) -> bool:
        return self._any_origin or origin in self._origins

    def _origin_headers(self, origin: bytes) -> Headers:
        echo = b"*" if self._any_origin and not self._credentials else origin
        headers: Headers = [(b"access-control-allow-origin", echo), (b"vary", b"Origin")]
        if self._credentials:
            headers.append((b"access-control-allow-credentials", b"true"))
        return headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        origin = request_method = request_headers = None
        for name, value in scope["headers"]:
            if name == b"origin":
                origin = value
            elif name == b"access-control-request-method":
                request_method = value
            elif name == b"access-control-request-headers":
                request_headers = value
        if origin is None:
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS" and request_method is not None:
            await self._preflight(scope, send, origin, request_method, request_headers)
            return
        allowed = self._allowed(origin)
        added = self._origin_headers(origin) if allowed else []
        if allowed and self._expose:
            added.append((b"access-control-expose-headers", self._expose))

        async def cors_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (n, v)
                    for n, v in message.get("headers", ())
                    if not n.lower().startswith(b"access-control-")
                ]
                headers.extend(added)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, cors_send)

    async def _preflight(
        self,
        scope: Scope,
        send: Send,
        origin: bytes,
        request_method: bytes,
        request_headers: bytes | None,
    ) -> None:
        ctx: RequestContext = scope[SCOPE_KEY]
        ctx.route = "cors-preflight"
        problem = None
        if not self._allowed(origin):
            problem = "origin is not allowed"
        elif request_method.decode("latin-1").upper() not in self._methods:
            problem = "method is not allowed for cross-origin requests"
        asked = [
            h.strip().lower()
            for h in (request_headers or b"").decode("latin-1").split(",")
            if h.strip()
        ]
        if problem is None and not self._any_header:
            refused = [h for h in asked if h not in self._headers]
            if refused:
                problem = f"header {refused[0]!r} is not allowed for cross-origin requests"
        if problem is not None:
            error = Forbidden(f"CORS preflight refused: {problem}", code="cors_refused")
            ctx.error = error.code
            await self._responder.error(send, error, ctx.correlation_id)
            return
        headers = self._origin_headers(origin)
        headers.append((b"access-control-allow-methods", self._methods_value))
        allow_headers = ", ".join(asked).encode() if self._any_header else self._headers_value
        if allow_headers:
            headers.append((b"access-control-allow-headers", allow_headers))
        headers.append((b"access-control-max-age", self._max_age))
        await self._responder.send(send, 204, b"", content_type=b"text/plain", headers=headers)
