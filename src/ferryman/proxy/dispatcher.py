"""The proxy as an ASGI app: match a route, apply its policy, forward."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING
from urllib.parse import quote

from ferryman.auth.identity import Identity
from ferryman.auth.pass_cookie import set_cookie
from ferryman.auth.policy import Admitted, RoutePolicy
from ferryman.config.limits import Limiter
from ferryman.errors import Forbidden, GatewayError, ServiceUnavailable, Unauthorized
from ferryman.guards.cors import Asked, CorsPolicy
from ferryman.limits.backends import Tier
from ferryman.limits.limiter import (
    AccountRates,
    AccountTier,
    Caller,
    Limits,
    RouteLimits,
)
from ferryman.limits.parallel import ParallelCap
from ferryman.observability.context import SCOPE_KEY, RequestContext
from ferryman.observability.responses import Responder
from ferryman.proxy.headers import host_of
from ferryman.proxy.paths import check_path
from ferryman.proxy.routing import CompiledRoute, RouteTable
from ferryman.proxy.streaming import Forwarder
from ferryman.proxy.websocket import Ending, WebSocketRelay, allowed_origin, denial
from ferryman.rewrite.body import runtime_script
from ferryman.types import Receive, Scope, Send

if TYPE_CHECKING:
    from ferryman.auth.services import Auth
    from ferryman.limits.budgets import Budgets


class Proxy:
    """Routes every request it is given; answers gateway errors in the JSON format."""

    def __init__(
        self,
        table: RouteTable,
        forwarder: Forwarder,
        responder: Responder,
        websockets: WebSocketRelay | None = None,
    ) -> None:
        self._table = table
        self._forwarder = forwarder
        self._websockets = websockets
        self._auth: Auth | None = None
        self._responder = responder
        self._uses_hosts = any(route.host is not None for route in table.routes)
        self._policies: dict[str, RoutePolicy] = {}
        self._limits: dict[str, RouteLimits] = {}
        self._caps: dict[str, ParallelCap] = {}
        self._origin: frozenset[str] = frozenset()
        self._account = AccountRates(Limiter())
        self._limiter: Limits | None = None
        self._budgets: Budgets | None = None
        #: Routes' CORS policies (their own `cors`, else `security.cors`).
        self._cors = {
            route.name: CorsPolicy(route.cors, responder)
            for route in table.routes
            if route.cors is not None
        }
        #: Routes metered as LLM calls: where tokens a minute and budgets apply.
        self._llm = frozenset(r.name for r in table.routes if r.spec.meter == "llm")

    def install_auth(self, auth: Auth) -> None:
        """Compile every credentialed route's policy (once the database is up)."""
        self._auth = auth
        self._policies = {
            route.name: RoutePolicy(auth, route.spec)
            for route in self._table.routes
            if route.auth != ("none",)
        }

    def install_budgets(self, budgets: Budgets) -> None:
        """Check callers' budgets on LLM routes (once metering is up)."""
        self._budgets = budgets

    def install_limits(self, limits: Limits) -> None:
        """Compile every route's rate limits and concurrency cap."""
        self._limiter = limits
        self._account = AccountRates(limits.spec)
        account = bool(self._account.defaults)
        self._limits = {
            route.name: RouteLimits(route.spec, route.name, limits)
            for route in self._table.routes
            # Credentialed routes too: a caller's own rate may apply (key or user rpm).
            if route.spec.limits or route.auth != ("none",) or account
        }
        self._caps = {
            route.name: ParallelCap(route.spec.max_parallel, route.spec, route.name, limits)
            for route in self._table.routes
            if route.spec.max_parallel is not None
        }
        self._origin = frozenset(
            route.name
            for route in self._table.routes
            if any("origin" in (t.by or ()) for t in route.spec.limits)
            or (
                route.spec.max_parallel is not None
                and "origin" in (route.spec.max_parallel.by or ())
            )
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx: RequestContext = scope[SCOPE_KEY]
        if scope["type"] != "http":
            await self._websocket(scope, receive, send, ctx)
            return
        try:
            raw = scope.get("raw_path") or quote(scope["path"]).encode("ascii")
            path = check_path(raw)
            host = host_of(scope["headers"]) if self._uses_hosts else ""
            if self._cors and scope["method"] == "OPTIONS":
                asked = Asked(scope["headers"])
                if asked.is_preflight("OPTIONS") and await self._preflight(
                    scope, send, ctx, host, path, asked
                ):
                    return
            route = self._table.match(scope["method"], host, path)
            ctx.route = route.name
            if route.runtime_path is not None and path == route.runtime_path:
                await self._runtime_script(send, scope)
                return
            cors = self._cors.get(route.name) if self._cors else None
            if cors is not None:
                origin = origin_header(scope["headers"])
                if origin is not None:
                    if cors.enforce and not cors.allowed(origin):
                        raise cors.refusal(origin)
                    send = cors.sender(send, origin)
            drop: frozenset[bytes] = frozenset()
            add: list[tuple[str, str]] = []
            identity: Identity | None = None
            if route.auth != ("none",):
                policy, admitted = await self._admit(scope, ctx, route)
                identity, drop, add = admitted.identity, admitted.drop, admitted.add
                if admitted.handle is not None and navigates(scope):
                    await self._pass_redirect(send, route, policy, admitted, raw)
                    return
            llm = route.name in self._llm
            budgets = self._budgets if llm and identity is not None else None
            account = self._account.tiers(identity, llm) if identity is not None else []
            limits = self._limits.get(route.name)
            if limits is not None and not (limits.tiers or account):
                limits = None
            cap = self._caps.get(route.name)
            if limits is None and cap is None and budgets is None:
                await self._forwarder.forward(
                    scope, receive, send, ctx, route, raw.decode("ascii"), add, drop, identity
                )
                return
            caller = Caller(
                ip=ctx.client_ip,
                route=route.name,
                user=ctx.consumer,
                credential=ctx.credential,
                session=ctx.session,
                origin=origin_of(scope["headers"]) if route.name in self._origin else None,
            )
            if budgets is not None:
                assert identity is not None
                await budgets.check(identity)
            if limits is not None:
                ctx.response_headers = await limits.check(caller, account)
            slot = await cap.acquire(caller) if cap is not None else None
            try:
                await self._forwarder.forward(
                    scope, receive, send, ctx, route, raw.decode("ascii"), add, drop, identity
                )
            finally:
                if cap is not None and slot is not None:
                    await cap.release(slot)
                if llm and account:
                    await self._charge_tokens(ctx, account)
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

    async def _websocket(
        self, scope: Scope, receive: Receive, send: Send, ctx: RequestContext
    ) -> None:
        """A WebSocket handshake: the route's guards as for HTTP (a refusal answered as
        HTTP before any upgrade), then the connection relayed; a `max_parallel` slot is
        held for as long as it is open."""
        try:
            raw = scope.get("raw_path") or quote(scope["path"]).encode("ascii")
            path = check_path(raw)
            host = host_of(scope["headers"]) if self._uses_hosts else ""
            route = self._table.match("GET", host, path)
            ctx.route = route.name
            spec = route.spec.websocket
            if not spec.enabled or self._websockets is None:
                raise Forbidden(
                    f"route {route.name!r} does not take WebSocket connections",
                    code="websocket_not_allowed",
                )
            allowed = spec.allow_origins
            if allowed is None and route.cors is not None:
                allowed = route.cors.allow_origins
            scheme = "https" if scope.get("scheme") == "wss" else "http"
            origin = origin_header(scope["headers"])
            if not allowed_origin(origin, _host_header(scope), allowed, scheme):
                raise Forbidden(
                    "WebSocket connections from this origin are not allowed",
                    code="origin_not_allowed",
                )
            drop: frozenset[bytes] = frozenset()
            add: list[tuple[str, str]] = []
            identity: Identity | None = None
            if route.auth != ("none",):
                _, admitted = await self._admit(scope, ctx, route)
                identity, drop, add = admitted.identity, admitted.drop, admitted.add
            account = self._account.tiers(identity) if identity is not None else []
            limits = self._limits.get(route.name)
            cap = self._caps.get(route.name)
            caller = Caller(
                ip=ctx.client_ip,
                route=route.name,
                user=ctx.consumer,
                credential=ctx.credential,
                session=ctx.session,
                origin=origin_of(scope["headers"]) if route.name in self._origin else None,
            )
            if limits is not None and (limits.tiers or account):
                await limits.check(caller, account)
            slot = await cap.acquire(caller) if cap is not None else None
            ending, unwatch = None, None
            if identity is not None and self._auth is not None:
                revoked, unwatch = self._auth.watchers.watch(identity)
                expires = identity.expires_at
                left = expires.timestamp() - self._auth.clock.time() if expires else None
                ending = Ending(revoked, left)
            try:
                await self._websockets.relay(
                    scope, receive, send, ctx, route, raw.decode("ascii"), add, drop, ending
                )
            finally:
                if unwatch is not None:
                    unwatch()
                if cap is not None and slot is not None:
                    await cap.release(slot)
        except GatewayError as error:
            ctx.error = error.code
            if ctx.status:  # already accepted: the relay closed it
                return
            await self._responder.error(denial(scope, send), error, ctx.correlation_id)

    async def _admit(
        self, scope: Scope, ctx: RequestContext, route: CompiledRoute
    ) -> tuple[RoutePolicy, Admitted]:
        """The route's auth, for HTTP and WebSocket alike: who called, noted on the
        context, and a pass taken out of the query the upstream will see."""
        policy = self._policies.get(route.name)
        if policy is None:
            # No identity services (not started): nothing can be verified.
            raise Unauthorized("this route requires a credential", code="missing_credential")
        admitted = await policy.admit(scope["headers"], scope["query_string"])
        identity = admitted.identity
        ctx.consumer = identity.user_id
        ctx.credential = identity.credential_id
        ctx.session = identity.credential_id if identity.kind == "session" else None
        if admitted.query is not None:
            scope["query_string"] = admitted.query  # the pass stays here
        return policy, admitted

    async def _runtime_script(self, send: Send, scope: Scope) -> None:
        """The script that maps a rewritten page's run-time URLs (no credential needed:
        it is the same public file for everyone)."""
        await self._responder.send(
            send,
            200,
            runtime_script(),
            content_type=b"text/javascript; charset=utf-8",
            head=scope["method"] == "HEAD",
        )

    async def _pass_redirect(
        self,
        send: Send,
        route: CompiledRoute,
        policy: RoutePolicy,
        admitted: Admitted,
        raw: bytes,
    ) -> None:
        """A browser opened the route with its pass in the URL: send it to the same URL
        without the pass, carrying the cookie from now on (its page's own requests,
        fetch and WebSocket included, then need nothing more)."""
        assert admitted.handle is not None and policy.pass_cookie is not None
        cookie = set_cookie(
            policy.pass_cookie,
            admitted.handle,
            route.prefix or "/",
            admitted.handle_age,
            policy.secure_cookie,
        )
        location = raw + (b"?" + admitted.query if admitted.query else b"")
        headers = [(b"location", location), (b"set-cookie", cookie)]
        await self._responder.send(send, 303, b"", content_type=b"text/plain", headers=headers)

    async def _preflight(
        self, scope: Scope, send: Send, ctx: RequestContext, host: str, path: str, asked: Asked
    ) -> bool:
        """Answer a CORS preflight for the route the real request would take, if that
        route has a CORS policy (True); a route without one gets the OPTIONS request
        forwarded like any other (False)."""
        assert asked.method is not None
        route = self._table.match(asked.method.decode("latin-1").upper(), host, path)
        policy = self._cors.get(route.name)
        if policy is None:
            return False
        ctx.route = route.name
        await policy.preflight(scope, send, asked)
        return True

    async def _charge_tokens(self, ctx: RequestContext, account: list[AccountTier]) -> None:
        """Pay the tokens the upstream reported into the caller's token tiers."""
        if ctx.reading is None or self._limiter is None:
            return
        usage = ctx.reading.usage()
        used = usage.total_tokens or (usage.prompt_tokens or 0) + (usage.completion_tokens or 0)
        if used > 0:
            tiers = [Tier(a.key, "gcra", a.rate, used) for a in account if a.tokens]
            if tiers:
                await self._limiter.charge(tiers)


def origin_header(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    for name, value in headers:
        if name == b"origin":
            return value
    return None


def origin_of(headers: list[tuple[bytes, bytes]]) -> str | None:
    origin = origin_header(headers)
    return None if origin is None else origin.decode("latin-1")


def navigates(scope: Scope) -> bool:
    """Is this a browser loading a page (not a script's fetch, an image, a WebSocket)?"""
    if scope["method"] not in ("GET", "HEAD"):
        return False
    mode = accept = None
    for name, value in scope["headers"]:
        if name == b"sec-fetch-mode":
            mode = value
        elif name == b"accept":
            accept = value
    if mode is not None:
        return bytes(mode) == b"navigate"
    return accept is not None and b"text/html" in bytes(accept)


def _host_header(scope: Scope) -> bytes:
    for name, value in scope["headers"]:
        if name == b"host":
            return bytes(value)
    return b""
