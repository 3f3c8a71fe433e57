"""Relaying one WebSocket connection to the route's upstream.

The upstream is connected first (aiohttp's `ws_connect`): only once it has accepted
does the client get its 101, with the subprotocol the upstream chose. An upstream that
refuses or cannot be reached is answered to the client as HTTP, in the gateway's JSON
error format, before any upgrade. Then two pumps relay text and binary messages each
way with awaited sends, so a slow reader slows its writer down and nothing queues
without bound, until either side closes; the close code and reason are passed on (the
codes that may not be sent, 1005, 1006 and 1015, become legal ones). Keep-alive pings
run on each leg on their own: aiohttp's heartbeat upstream, the server's toward the
client; pings are answered where they arrive and never relayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp
import structlog

from ferryman.config.websocket import WebSocket
from ferryman.errors import Forbidden, GatewayError, UpstreamError
from ferryman.observability.context import RequestContext
from ferryman.observability.metrics import Metrics
from ferryman.proxy.headers import TrustedProxies
from ferryman.proxy.payloads import upstream_request
from ferryman.proxy.routing import CompiledRoute
from ferryman.proxy.upstream import UpstreamClient
from ferryman.proxy.upstream_errors import reason, translate
from ferryman.types import Message, Receive, Scope, Send

log = structlog.get_logger("ferryman.proxy")

#: The client's handshake headers that are its own connection's business: aiohttp makes
#: the upstream handshake itself (its own key, version and extensions), and the
#: subprotocols are passed to it as a list.
_HANDSHAKE = frozenset(
    {
        b"sec-websocket-key",
        b"sec-websocket-version",
        b"sec-websocket-extensions",
        b"sec-websocket-protocol",
    }
)

GOING_AWAY = 1001
POLICY = 1008
TOO_BIG = 1009
INTERNAL = 1011


def legal_close(code: int | None, *, abnormal: int = INTERNAL) -> int:
    """A close code that may be sent for one received (or for none).

    1005 (no code given) becomes 1000; 1006 (the connection dropped without a close)
    and 1015 (TLS failed) become `abnormal`; codes no endpoint may send (outside
    1000-1003, 1007-1014 and 3000-4999) become 1011... except that a missing code is
    a normal close."""
    if code is None or code == 1005:
        return 1000
    if code in (1006, 1015):
        return abnormal
    if 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999:
        return code
    return INTERNAL


def denial(scope: Scope, send: Send) -> Send:
    """A `send` that answers a WebSocket handshake as HTTP (the ASGI denial-response
    extension), for the gateway's refusals and the upstream's; a server without the
    extension gets a plain close, which it answers 403."""
    if "websocket.http.response" not in (scope.get("extensions") or {}):

        async def close(message: Message) -> None:
            if message["type"] == "http.response.start":
                await send({"type": "websocket.close", "code": 1008})

        return close

    async def deny(message: Message) -> None:
        kind = message["type"]
        if kind.startswith("http.response."):
            message = {**message, "type": "websocket." + kind}
        await send(message)

    return deny


def allowed_origin(
    origin: bytes | None, host: bytes, allowed: Iterable[str] | None, scheme: str
) -> bool:
    """May a page from `origin` open a connection here? No `Origin`: not a browser, the
    route's auth decides. An allow-list: exact origins or `*`. None: the page's own
    origin only (its host is the one the handshake was sent to)."""
    if origin is None:
        return True
    text = origin.decode("latin-1")
    if allowed is not None:
        return "*" in allowed or text in allowed
    if not host:
        return False
    return text in (f"{s}://{host.decode('latin-1')}" for s in (scheme, "http", "https"))


@dataclass(frozen=True, slots=True)
class Ending:
    """What ends a connection with its credential: a future resolved on revocation (or
    the account disabled), and the seconds the credential had left at the handshake, if
    it expires."""

    revoked: asyncio.Future[None]
    left: float | None = None


@dataclass(slots=True)
class Traffic:
    """What crossed one connection, for the access line and the metrics."""

    messages_in: int = 0
    messages_out: int = 0
    close_code: int | None = None
    closed_by: str | None = None


class WebSocketRelay:
    """Connects a routed WebSocket handshake to its upstream and relays the connection."""

    def __init__(
        self, upstreams: dict[str, UpstreamClient], metrics: Metrics, trusted: TrustedProxies
    ) -> None:
        self._upstreams = upstreams
        self._metrics = metrics
        self._trusted = trusted

    async def relay(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        ctx: RequestContext,
        route: CompiledRoute,
        raw_path: str,
        extra_headers: list[tuple[str, str]],
        drop: frozenset[bytes] = frozenset(),
        ended: Ending | None = None,
    ) -> None:
        """Relay until either side closes; GatewayError before the upgrade. `ended`:
        when the caller's credential stops being good (revoked, expired, its account
        disabled), the connection is closed with 1008."""
        upstream = self._upstreams[route.upstream]
        ctx.upstream = upstream.name
        ctx.meter = route.spec.meter != "none"  # one usage record for the connection
        spec = route.spec.websocket
        if upstream.spec.credential.kind == "pool":
            # A pooled key is chosen, counted and failed over per request; a connection
            # that lasts hours fits none of that.
            raise Forbidden(
                f"upstream {upstream.name!r} takes keys from a pool, which WebSocket "
                "connections cannot use",
                code="websocket_not_supported",
            )
        # The client's handshake headers are its own leg's business (aiohttp makes the
        # upstream's handshake); the rest goes as for HTTP.
        url, headers, _ = upstream_request(
            scope, ctx, route, upstream, raw_path, extra_headers, drop | _HANDSHAKE, self._trusted
        )
        first = await receive()
        if first["type"] != "websocket.connect":
            ctx.client_gone = True
            return
        breaker = upstream.breaker
        ticket = (breaker.gen if breaker.closed else await breaker.enter()) if breaker else 0
        ctx.upstream_sent = time.perf_counter()
        try:
            # The handshake is an answer like any other: the upstream's read timeout.
            async with asyncio.timeout(upstream.spec.timeout.read):
                ws = await upstream.websocket_session().ws_connect(
                    url,
                    protocols=_subprotocols(scope),
                    headers=headers,
                    heartbeat=spec.ping_interval,
                    max_msg_size=spec.max_message + 1,  # aiohttp refuses at the size itself
                    autoclose=False,
                    autoping=True,
                    timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5.0),
                )
        except aiohttp.WSServerHandshakeError as exc:
            if breaker is not None:
                breaker.answered(ticket, exc.status)
            raise _refused(upstream.name, exc.status) from None
        except Exception as exc:
            error = translate(exc, upstream.name)
            self._metrics.upstream_error(upstream.name, reason(error))
            if breaker is not None:
                breaker.failed(ticket, reason(error))
            raise error from None
        except BaseException:
            if breaker is not None:
                breaker.abandoned(ticket)
            raise
        if breaker is not None:
            breaker.succeeded(ticket)
        ctx.upstream_headers = time.perf_counter()
        traffic = Traffic()
        self._metrics.websocket_opened(route.name)
        try:
            await send({"type": "websocket.accept", "subprotocol": ws.protocol})
            await self._pump(receive, send, ws, spec, ctx, traffic, ended)
        finally:
            ctx.upstream_ended = time.perf_counter()
            if not ws.closed:
                with contextlib.suppress(Exception):
                    await ws.close(code=GOING_AWAY)
            ctx.response_done = True
            ctx.websocket = (traffic.close_code, traffic.messages_in, traffic.messages_out)
            self._metrics.websocket_closed(
                route.name,
                (traffic.messages_in, traffic.messages_out),
                (ctx.bytes_in, ctx.bytes_out),
                traffic.closed_by,
            )

    async def _pump(
        self,
        receive: Receive,
        send: Send,
        ws: aiohttp.ClientWebSocketResponse,
        spec: WebSocket,
        ctx: RequestContext,
        traffic: Traffic,
        ended: Ending | None = None,
    ) -> None:
        """Both directions at once, until one ends; then the other leg is closed with the
        code that ended it."""
        last = [time.monotonic()]
        limit = spec.max_message

        async def inbound() -> tuple[str, int, str]:
            while True:
                message = await receive()
                kind = message["type"]
                if kind == "websocket.disconnect":
                    code = message.get("code", 1005)
                    return "client", legal_close(code, abnormal=GOING_AWAY), ""
                if kind != "websocket.receive":
                    continue
                text = message.get("text")
                data = message.get("bytes")
                size = len(text.encode()) if text is not None else len(data or b"")
                if size > limit:
                    return "limit", TOO_BIG, "message too big"
                last[0] = time.monotonic()
                traffic.messages_in += 1
                ctx.bytes_in += size
                if text is not None:
                    await ws.send_str(text)
                else:
                    await ws.send_bytes(data or b"")

        async def outbound() -> tuple[str, int, str]:
            while True:
                msg = await ws.receive()
                if msg.type is aiohttp.WSMsgType.TEXT:
                    size = len(msg.data.encode())
                    await send({"type": "websocket.send", "text": msg.data})
                elif msg.type is aiohttp.WSMsgType.BINARY:
                    size = len(msg.data)
                    await send({"type": "websocket.send", "bytes": msg.data})
                elif msg.type is aiohttp.WSMsgType.CLOSE:
                    return "upstream", legal_close(msg.data), str(msg.extra or "")[:120]
                elif msg.type is aiohttp.WSMsgType.ERROR:
                    too_big = isinstance(msg.data, aiohttp.WebSocketError) and (
                        msg.data.code == TOO_BIG
                    )
                    if too_big:
                        return "limit", TOO_BIG, "message too big"
                    return "upstream", INTERNAL, "upstream connection failed"
                else:  # CLOSING / CLOSED: the connection is gone
                    return "upstream", legal_close(ws.close_code), ""
                last[0] = time.monotonic()
                traffic.messages_out += 1
                ctx.bytes_out += size

        # The two legs are tasks; everything else that can end the connection (idle,
        # total time, the credential's expiry or revocation) is waited for beside them
        # by this task, which keeps an idle connection to two tasks of its own.
        legs = [asyncio.create_task(inbound()), asyncio.create_task(outbound())]
        waiting: list[asyncio.Future[Any]] = [*legs]
        if ended is not None:
            waiting.append(ended.revoked)
        started = time.monotonic()
        total = started + spec.max_duration if spec.max_duration else None
        expiry = started + max(ended.left, 0.0) if ended and ended.left is not None else None
        outcome: tuple[str, int, str] | None = None
        try:
            while outcome is None:
                now = time.monotonic()
                idle = last[0] + spec.idle_timeout if spec.idle_timeout else None
                limits = [t for t in (idle, total, expiry) if t is not None]
                timeout = max(min(limits) - now, 0.0) if limits else None
                done, _ = await asyncio.wait(
                    waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                outcome = _ended(done, legs, ended) if done else None
                now = time.monotonic()
                if outcome is not None:
                    break
                if expiry is not None and now >= expiry:
                    outcome = ("credential", POLICY, "credential expired")
                elif total is not None and now >= total:
                    outcome = ("duration", GOING_AWAY, "connection time limit")
                elif spec.idle_timeout and now - last[0] >= spec.idle_timeout:
                    outcome = ("idle", GOING_AWAY, "idle timeout")
        finally:
            for task in legs:
                task.cancel()
            await asyncio.gather(*legs, return_exceptions=True)
        by, code, why = outcome
        traffic.close_code, traffic.closed_by = code, by
        if not ws.closed:  # the upstream's own close is answered with its code
            with contextlib.suppress(Exception):
                await ws.close(code=code, message=why.encode())
        if by != "client":
            with contextlib.suppress(Exception):
                await send({"type": "websocket.close", "code": code, "reason": why})


def _ended(
    done: set[asyncio.Future[Any]],
    legs: list[asyncio.Task[tuple[str, int, str]]],
    ending: Ending | None,
) -> tuple[str, int, str]:
    """Why the connection ends, from what finished first."""
    if ending is not None and ending.revoked in done and not any(leg in done for leg in legs):
        return "credential", POLICY, "credential revoked"
    finished = next(leg for leg in legs if leg in done)
    try:
        return finished.result()
    except Exception as exc:  # a leg broke: the other is told so
        side = "client" if finished is legs[0] else "upstream"
        log.info("websocket_leg_failed", side=side, error=type(exc).__name__)
        return side, INTERNAL, ""


def _subprotocols(scope: Scope) -> tuple[str, ...]:
    offered = scope.get("subprotocols") or ()
    return tuple(str(p) for p in offered)


def _refused(upstream: str, status: int) -> GatewayError:
    """The upstream answered the handshake without upgrading: its 4xx is passed on (a
    WebSocket path it does not have, a credential it did not take), anything else is a
    bad gateway."""
    message = f"upstream {upstream!r} refused the WebSocket handshake ({status})"
    if 400 <= status < 500:
        error = GatewayError(message, code="upstream_refused_websocket")
        error.status = status
        return error
    return UpstreamError(message, code="upstream_refused_websocket")
