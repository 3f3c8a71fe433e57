"""CORS with an allow-list: the gateway answers preflights and owns the CORS headers.

One `CorsPolicy` per configured policy: `security.cors`, and each route's own `cors`.
The proxy applies a route's policy once the route is known (so routes can allow
different origins, as chat widgets embedded on different sites need); the `Cors`
middleware applies `security.cors` to the management API. Upstreams' own
`Access-Control-*` headers are removed from responses to browsers, so the gateway's
list is the only one that counts. With `enforce`, a request from an origin not on the
list is refused instead of being forwarded without CORS headers.
"""

from __future__ import annotations

from collections.abc import Callable

from ferryman.config.security import Cors as CorsConfig
from ferryman.errors import Forbidden
from ferryman.observability.context import SCOPE_KEY, RequestContext
from ferryman.observability.responses import Responder
from ferryman.types import ASGIApp, Headers, Message, Receive, Scope, Send


class Asked:
    """The CORS-relevant headers of one request."""

    __slots__ = ("headers", "method", "origin")

    def __init__(self, headers: list[tuple[bytes, bytes]]) -> None:
        self.origin: bytes | None = None
        self.method: bytes | None = None
        self.headers: bytes | None = None
        for name, value in headers:
            if name == b"origin":
                self.origin = value
            elif name == b"access-control-request-method":
                self.method = value
            elif name == b"access-control-request-headers":
                self.headers = value

    def is_preflight(self, method: str) -> bool:
        return method == "OPTIONS" and self.origin is not None and self.method is not None


class CorsPolicy:
    """One allow-list: who may call, with which methods and headers."""

    def __init__(self, config: CorsConfig, responder: Responder) -> None:
        self._responder = responder
        self.enforce = config.enforce
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

    def allowed(self, origin: bytes) -> bool:
        return self._any_origin or origin in self._origins

    def _origin_headers(self, origin: bytes) -> Headers:
        echo = b"*" if self._any_origin and not self._credentials else origin
        headers: Headers = [(b"access-control-allow-origin", echo), (b"vary", b"Origin")]
        if self._credentials:
            headers.append((b"access-control-allow-credentials", b"true"))
        return headers

    def refusal(self, origin: bytes) -> Forbidden:
        """The 403 for a request from an origin off the list, when `enforce` is set."""
        shown = origin.decode("latin-1")[:200]
        return Forbidden(
            f"requests from origin {shown!r} are not allowed here", code="origin_not_allowed"
        )

    async def refuse(self, scope: Scope, send: Send, origin: bytes) -> None:
        ctx: RequestContext = scope[SCOPE_KEY]
        error = self.refusal(origin)
        ctx.error = error.code
        await self._responder.error(send, error, ctx.correlation_id)

    def sender(self, send: Send, origin: bytes) -> Send:
        """`send` with the upstream's CORS headers replaced by this policy's."""
        allowed = self.allowed(origin)
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

        return cors_send

    async def preflight(self, scope: Scope, send: Send, asked: Asked) -> None:
        """Answer a preflight here: it never reaches an upstream."""
        ctx: RequestContext = scope[SCOPE_KEY]
        assert asked.origin is not None and asked.method is not None
        problem = None
        if not self.allowed(asked.origin):
            problem = "origin is not allowed"
        elif asked.method.decode("latin-1").upper() not in self._methods:
            problem = "method is not allowed for cross-origin requests"
        names = [
            h.strip().lower()
            for h in (asked.headers or b"").decode("latin-1").split(",")
            if h.strip()
        ]
        if problem is None and not self._any_header:
            refused = [h for h in names if h not in self._headers]
            if refused:
                problem = f"header {refused[0]!r} is not allowed for cross-origin requests"
        if problem is not None:
            error = Forbidden(f"CORS preflight refused: {problem}", code="cors_refused")
            ctx.error = error.code
            await self._responder.error(send, error, ctx.correlation_id)
            return
        headers = self._origin_headers(asked.origin)
        headers.append((b"access-control-allow-methods", self._methods_value))
        allow_headers = ", ".join(names).encode() if self._any_header else self._headers_value
        if allow_headers:
            headers.append((b"access-control-allow-headers", allow_headers))
        headers.append((b"access-control-max-age", self._max_age))
        await self._responder.send(send, 204, b"", content_type=b"text/plain", headers=headers)


class Cors:
    """Applies one policy to the requests `applies` picks (the management API's)."""

    def __init__(self, app: ASGIApp, policy: CorsPolicy, applies: Callable[[str], bool]) -> None:
        self.app = app
        self._policy = policy
        self._applies = applies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self._applies(scope["path"]):
            await self.app(scope, receive, send)
            return
        asked = Asked(scope["headers"])
        if asked.origin is None:
            await self.app(scope, receive, send)
            return
        policy = self._policy
        if asked.is_preflight(scope["method"]):
            scope[SCOPE_KEY].route = "cors-preflight"
            await policy.preflight(scope, send, asked)
            return
        if policy.enforce and not policy.allowed(asked.origin):
            await policy.refuse(scope, send, asked.origin)
            return
        await self.app(scope, receive, policy.sender(send, asked.origin))
