"""One relay's endpoints, under its prefix (seed 004's paths by default):

    POST {prefix}/session/create              {origin_domain, page_url} → {session_id, expires_at}
    GET  {prefix}/session/validate            → {valid, session_id, origin_domain}
    DELETE {prefix}/session                   ends the session (the widget's "log out")
    POST {prefix}/chat/message                {message, page_url} → SSE (`relay.chat`)
    POST {prefix}/chat/stream                 the same
    GET  {prefix}/chat/history/{session_id}   ?after=<message id>&limit=N → the messages

Every call must come from one of the relay's origins (403 otherwise, `Origin`
required), and a session works only from the origin it was made for.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from ferryman.clock import Clock
from ferryman.config.relay import Relay
from ferryman.errors import (
    BadRequest,
    Forbidden,
    GatewayError,
    MethodNotAllowed,
    NotFound,
    Unauthorized,
)
from ferryman.limits.limiter import Caller, CompiledTier, Limits, RouteLimits
from ferryman.limits.rates import parse_rate
from ferryman.observability.context import RequestContext, context_of
from ferryman.observability.responses import Responder
from ferryman.proxy.upstream import UpstreamClient
from ferryman.relay import http
from ferryman.relay.chat import ChatCall
from ferryman.relay.history import HistoryWriter
from ferryman.relay.sessions import WidgetSessions
from ferryman.relay.workflow import WorkflowRequest
from ferryman.store.relay import WidgetSession
from ferryman.types import Receive, Scope, Send

#: Bytes a session request's body may have.
SESSION_BODY = 8 * 1024


def _tiers(name: str, by: str, rates: tuple[str, ...], start: int) -> list[CompiledTier]:
    return [
        CompiledTier.of(name, start + i, (by,), "sliding_window", parse_rate(rate))  # type: ignore[arg-type]
        for i, rate in enumerate(rates)
    ]


class ChatRelay:
    """See the module docstring."""

    def __init__(
        self,
        spec: Relay,
        upstream: UpstreamClient,
        sessions: WidgetSessions,
        history: HistoryWriter | None,
        limits: Limits,
        responder: Responder,
        clock: Clock,
    ) -> None:
        self.spec = spec
        self.sessions = sessions
        self.history = history
        self.responder = responder
        self.clock = clock
        self.upstream = upstream
        self.label = f"relay:{spec.name}"
        caps = spec.limits
        tiers = _tiers(self.label, "session", caps.session, 0)
        tiers += _tiers(self.label, "ip", caps.ip, len(tiers))
        tiers += _tiers(self.label, "origin", caps.origin, len(tiers))
        if caps.origin_daily:
            tiers += _tiers(self.label, "origin", (f"{caps.origin_daily}/day",), len(tiers))
        self.message_limits = RouteLimits(None, self.label, limits, tiers)
        creating = (caps.sessions_per_ip,) if caps.sessions_per_ip else ()
        self.session_limits = RouteLimits(
            None,
            self.label + ":sessions",
            limits,
            _tiers(self.label + ":sessions", "ip", creating, 0),
        )
        self.chat = ChatCall(
            upstream,
            WorkflowRequest(spec),
            history,
            spec.workflow.heartbeat,
            int(spec.workflow.max_answer),
        )
        self.paths = {
            spec.path("/session/create"): ("POST", self.create),
            spec.path("/session/validate"): ("GET", self.validate),
            spec.path("/session"): ("DELETE", self.end),
            spec.path("/chat/message"): ("POST", self.message),
            spec.path("/chat/stream"): ("POST", self.message),
        }
        self.history_prefix = spec.path("/chat/history/")

    def owns(self, path: str) -> bool:
        return path in self.paths or path.startswith(self.history_prefix)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx = context_of(scope)
        ctx.route = self.label
        ctx.upstream = self.upstream.name
        path: str = scope["path"]
        method: str = scope["method"]
        headers: http.Headers = []
        try:
            origin = http.checked_origin(scope, self.spec)
            headers = http.cors(origin)
            if method == "OPTIONS":
                await self.responder.send(
                    send, 204, b"", content_type=b"", headers=http.preflight(scope, origin)
                )
                return
            if path.startswith(self.history_prefix):
                allowed, handler = "GET", self.history_page
            else:
                allowed, handler = self.paths[path]
            if method != allowed:
                raise MethodNotAllowed(f"{method} is not allowed here", allow=(allowed, "OPTIONS"))
            await handler(scope, receive, send, ctx, origin, headers)
        except GatewayError as error:
            ctx.error = error.code
            error.headers.extend(headers)
            await self.responder.error(send, error, ctx.correlation_id)

    # -- sessions ------------------------------------------------------------------

    async def create(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        ctx: RequestContext,
        origin: str,
        headers: http.Headers,
    ) -> None:
        payload = await http.read_json(receive, SESSION_BODY)
        domain = http.text_field(payload, "origin_domain", required=False, longest=300)
        page_url = http.text_field(payload, "page_url", required=False, longest=2000)
        host = urlsplit(origin).hostname or ""
        if domain is not None and domain.lower() not in (host, origin.lower()):
            raise BadRequest(
                "origin_domain does not match the page's Origin", code="origin_mismatch"
            )
        if page_url is not None and urlsplit(page_url).scheme not in ("http", "https"):
            raise BadRequest("page_url must be an http(s) URL", code="invalid_body")
        caller = Caller(ip=ctx.client_ip, route=self.label)
        headers += await self.session_limits.check(caller)
        created = await self.sessions.create(
            origin, page_url, ctx.client_ip, http.header(scope, b"user-agent")
        )
        session = created.session
        ctx.session = session.id
        headers.append(http.set_cookie(self.spec, created.token, self.spec.session.max_age))
        body = {"session_id": session.id, "expires_at": _iso(session), "origin_domain": host}
        await self.responder.json(send, 200, body, headers=headers)

    async def validate(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        ctx: RequestContext,
        origin: str,
        headers: http.Headers,
    ) -> None:
        session = await self._session(scope, origin, required=False)
        if session is None:
            await self.responder.json(send, 200, {"valid": False}, headers=headers)
            return
        body = {
            "valid": True,
            "session_id": session.id,
            "origin_domain": urlsplit(session.origin).hostname,
            "expires_at": _iso(session),
        }
        await self.responder.json(send, 200, body, headers=headers)

    async def end(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        ctx: RequestContext,
        origin: str,
        headers: http.Headers,
    ) -> None:
        session = await self._session(scope, origin)
        assert session is not None
        ctx.session = session.id
        await self.sessions.revoke(session)
        headers.append(http.set_cookie(self.spec, "", 0))
        await self.responder.send(send, 204, b"", content_type=b"", headers=headers)

    async def _session(
        self, scope: Scope, origin: str, *, required: bool = True
    ) -> WidgetSession | None:
        token = http.session_token(scope, self.spec)
        session = await self.sessions.find(token) if token else None
        if session is not None and session.origin != origin:
            raise Forbidden(
                "this session belongs to another origin", code="session_origin_mismatch"
            )
        if session is None and required:
            error = Unauthorized(
                "a chat session is needed: create one with POST "
                f"{self.spec.path('/session/create')}",
                code="session_required" if token is None else "session_invalid",
            )
            raise error
        return session

    # -- chat ----------------------------------------------------------------------

    async def message(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        ctx: RequestContext,
        origin: str,
        headers: http.Headers,
    ) -> None:
        session = await self._session(scope, origin)
        assert session is not None
        ctx.session = session.id
        limit = self.spec.message_max * 4 + 4096  # UTF-8 at its widest, and the JSON around
        payload = await http.read_json(receive, limit)
        message = http.text_field(payload, "message", required=True, longest=self.spec.message_max)
        page_url = http.text_field(payload, "page_url", required=False, longest=2000)
        assert message is not None
        caller = Caller(ip=ctx.client_ip, route=self.label, session=session.id, origin=origin)
        headers += await self.message_limits.check(caller)
        breaker = self.upstream.breaker
        ticket = (breaker.gen if breaker.closed else await breaker.enter()) if breaker else 0
        ctx.meter = True
        await self.chat.run(
            receive, send, ctx, session, message, page_url, headers, ticket, self.clock.time()
        )

    async def history_page(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        ctx: RequestContext,
        origin: str,
        headers: http.Headers,
    ) -> None:
        wanted = scope["path"][len(self.history_prefix) :]
        session = await self._session(scope, origin)
        assert session is not None
        if self.history is None or wanted != session.id:
            # Another session's history does not exist, as far as this caller can tell.
            raise NotFound("no such chat history", code="history_not_found")
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        after = _one(query, "after")
        try:
            limit = int(_one(query, "limit") or self.spec.history.page_size)
        except ValueError:
            raise BadRequest("limit must be a whole number", code="invalid_query") from None
        limit = max(1, min(limit, self.spec.history.page_size))
        page = await self.history.page(session.id, after, limit + 1)
        more = len(page) > limit
        page = page[:limit]
        body = {
            "session_id": session.id,
            "messages": [_message(m) for m in page],
            "next": page[-1].id if more else None,
        }
        await self.responder.json(send, 200, body, headers=headers)


def _one(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


def _iso(session: WidgetSession) -> str:
    return session.expires_at.isoformat().replace("+00:00", "Z")


def _message(m: Any) -> dict[str, Any]:
    return {
        "id": m.id,
        "role": m.role,
        "content": m.content,
        "complete": m.complete,
        "created_at": m.created_at.isoformat().replace("+00:00", "Z"),
    }
