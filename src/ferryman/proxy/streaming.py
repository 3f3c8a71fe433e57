"""Forwarding one request upstream and streaming the answer back.

Request bodies are handed to aiohttp as they arrive; responses go to the client chunk
by chunk as aiohttp reads them. Only a response that declares a small
`Content-Length` (and is not an event stream) is read whole first, which lets a
failure inside it still be answered with a clean 502.

A body that comes in pieces is read whole first, up to the route's buffer, so a slow
client holds no upstream connection; the client is watched (`ferryman.proxy.client`,
`ferryman.proxy.watchdog`): too slow to send its body, it gets 408; if it leaves before
the response is complete the handling task is cancelled, which closes the upstream
connection and so cancels the upstream request.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import AsyncIterator

import aiohttp
import structlog

from ferryman.auth.identity import Identity
from ferryman.errors import GatewayError, ServiceUnavailable, UpstreamError
from ferryman.metering.extract import with_stream_usage
from ferryman.metering.reading import Reading, StreamTail
from ferryman.observability.context import RequestContext
from ferryman.observability.metrics import Metrics
from ferryman.proxy.client import ClientDisconnected, ClientStream, declared_length
from ferryman.proxy.headers import TrustedProxies, response_headers
from ferryman.proxy.payloads import (
    CookieRefusals,
    not_lent,
    payload,
    rewritten,
    upstream_request,
    with_length,
)
from ferryman.proxy.retries import retrying
from ferryman.proxy.routing import CompiledRoute
from ferryman.proxy.upstream import UpstreamClient
from ferryman.proxy.upstream_errors import reason, translate
from ferryman.proxy.watchdog import Watchdog
from ferryman.rewrite.body import brotli_error
from ferryman.rewrite.cache import RewriteCache
from ferryman.types import Receive, Scope, Send
from ferryman.upstreams.attempt import Attempt
from ferryman.upstreams.health import failure_of, verdict
from ferryman.upstreams.pool import KeyPool

log = structlog.get_logger("ferryman.proxy")

#: A response declaring at most this many bytes is read whole before it is sent.
SMALL_BODY = 64 * 1024

#: A metered JSON answer too large to be read whole first is still parsed for its usage
#: once relayed, if it is at most this large (kept aside while it streams past).
JSON_USAGE_LIMIT = 4 * 1024 * 1024

_NO_BODY_STATUS = frozenset({204, 304})


class StreamAborted(Exception):
    """The upstream failed after the response had started: the client's connection is
    closed without a proper end, so a truncated body is never mistaken for a whole one."""


class Forwarder:
    """Sends a routed request to its upstream and relays the response."""

    def __init__(
        self,
        upstreams: dict[str, UpstreamClient],
        metrics: Metrics,
        trusted: TrustedProxies,
        watchdog: Watchdog | None = None,
    ) -> None:
        self._watchdog = watchdog or Watchdog()
        self._upstreams = upstreams
        self._metrics = metrics
        self._trusted = trusted
        self._pools: dict[str, KeyPool] = {}
        self._refused = CookieRefusals()
        self._rewritten = RewriteCache()

    def install_pools(self, pools: dict[str, KeyPool]) -> None:
        """Use these key pools for the upstreams whose credential is `pool`."""
        self._pools = pools

    async def forward(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        ctx: RequestContext,
        route: CompiledRoute,
        raw_path: str,
        extra_headers: list[tuple[str, str]],
        drop: frozenset[bytes] = frozenset(),
        identity: Identity | None = None,
    ) -> None:
        """Forward, or raise GatewayError before any response byte was sent.

        `drop` names client headers to withhold (credentials the gateway consumed);
        `extra_headers` are added (identity headers, a cleaned Cookie); `identity` is
        the verified caller (None on open routes), whose grants decide whether the
        operator's shared keys may serve it.
        """
        upstream = self._upstreams[route.upstream]
        ctx.upstream = upstream.name
        meter = route.spec.meter
        ctx.meter = meter != "none"
        pool: KeyPool | None = None
        if upstream.spec.credential.kind == "pool":
            pool = self._pools.get(upstream.name)
            if pool is None:
                # Never forward without the credential the upstream expects.
                raise ServiceUnavailable(
                    f"no upstream key is available for {upstream.name!r}", code="no_upstream_key"
                )
            drop = drop | pool.header_name if drop else pool.header_name
            shared = pool.lends_to(identity)
            if not shared and not pool.serves_own(ctx.consumer):
                raise not_lent(upstream.name, identity)
        url, headers, length = upstream_request(
            scope, ctx, route, upstream, raw_path, extra_headers, drop, self._trusted
        )
        declared_length(length, route.max_body_size)
        breaker = upstream.breaker
        # Refused before the body is read: an open breaker costs the client nothing.
        ticket = (breaker.gen if breaker.closed else await breaker.enter()) if breaker else 0
        method: str = scope["method"]
        client = ClientStream(receive, ctx, route.body, self._watchdog)
        response: aiohttp.ClientResponse | None = None
        attempt: Attempt | None = None
        verdict_given = False
        try:
            try:
                data = await client.first()
                if pool is not None:
                    data = await client.replayable(data, pool.spec.replay_limit)
            except ClientDisconnected:
                ctx.client_gone = True
                return
            reading: Reading | None = None
            if meter == "llm":
                if not isinstance(data, bytes):
                    reading = Reading()
                elif route.spec.stream_usage:
                    model, asking = with_stream_usage(data)
                    reading = Reading(model=model)
                    if asking is not None:
                        data = asking
                        headers = with_length(headers, len(data))
                else:
                    reading = Reading(data)  # its model is read later, off the hot path
                ctx.reading = reading
            try:
                args = (upstream, method, url, headers, data, client, ctx)
                if pool is None and upstream.spec.retries.attempts:
                    response = await retrying(self._exchange, route, *args)
                elif pool is None:
                    response = await self._exchange(*args)
                else:
                    attempt = Attempt(pool, ctx, self._metrics, shared)
                    response = await self._with_pool(
                        attempt, upstream, method, url, headers, data, client, ctx
                    )
            except UpstreamError as error:
                if breaker is not None:
                    verdict_given = breaker.failed(ticket, reason(error))
                raise
            if breaker is not None:
                verdict_given = breaker.answered(ticket, response.status)
            await self._relay(response, send, ctx, method, route, reading)
        except StreamAborted:
            if attempt is not None:
                attempt.broke_off()
            if breaker is not None:
                breaker.failed(ticket, "broke off")
            raise
        except ClientDisconnected:
            # It left while its body was being sent upstream (an abandoned upload, or a
            # framing error the server closed the connection over): nothing to answer.
            ctx.client_gone = True
            ctx.error = "client_disconnected"
            return
        except asyncio.CancelledError:
            if ctx.client_gone or client.timed_out:
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()
                if ctx.client_gone:
                    return
                if ctx.status:  # too late for a 408: end the answer abruptly
                    raise StreamAborted("the client stopped sending its body") from None
                assert client.error is not None
                raise client.error from None
            raise
        finally:
            client.close()
            if attempt is not None:
                attempt.done()
            if breaker is not None and not verdict_given:
                breaker.abandoned(ticket)
            if response is not None:
                if ctx.response_done:
                    response.release()
                else:
                    response.close()

    async def _with_pool(
        self,
        attempt: Attempt,
        upstream: UpstreamClient,
        method: str,
        url: object,
        headers: list[tuple[str, str]],
        data: bytes | AsyncIterator[bytes],
        body: ClientStream,
        ctx: RequestContext,
    ) -> aiohttp.ClientResponse:
        """Try healthy keys in turn until one gets an answer that is not the key's fault.

        A failure moves on to the next key only while nothing has been sent to the client
        and the body can be replayed; the answer that ends the loop is relayed.
        """
        pool = attempt.pool
        spec = pool.spec
        replayable = isinstance(data, bytes)
        header = spec.header
        while True:
            key = attempt.next_key()
            if key is None:
                raise attempt.exhausted(replayable)
            sent = [*headers, (header, key.header_value)]
            try:
                response = await self._exchange(upstream, method, url, sent, data, body, ctx)
            except UpstreamError as error:
                attempt.failed(failure_of(error))
                if not replayable or not attempt.more():
                    raise
                continue
            status = response.status
            failure = (
                None
                if status < 400
                else verdict(spec, status, response.headers.get("Retry-After"), attempt.now())
            )
            if failure is None:
                attempt.succeeded()
                return response
            if (
                status == 403
                and failure.reason == "invalid"
                and pool.confirm is not None
                and await pool.confirm(key)
            ):
                return response  # the key is fine: the refusal is about the request
            attempt.failed(failure)
            if replayable and attempt.more():
                response.close()
                continue
            if failure.breaker:
                return response  # the upstream's own 5xx is its answer
            response.close()
            raise attempt.exhausted(replayable)

    async def _exchange(
        self,
        upstream: UpstreamClient,
        method: str,
        url: object,
        headers: list[tuple[str, str]],
        data: bytes | AsyncIterator[bytes],
        body: ClientStream,
        ctx: RequestContext,
    ) -> aiohttp.ClientResponse:
        # aiohttp itself retries an idempotent request once on a dead pooled connection.
        ctx.upstream_sent = time.perf_counter()
        try:
            response = await upstream.session.request(
                method,
                url,  # type: ignore[arg-type]
                headers=headers,
                data=payload(data),
                allow_redirects=False,
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._failed(upstream, exc, body) from exc
        ctx.upstream_headers = time.perf_counter()
        return response

    def _failed(
        self, upstream: UpstreamClient, exc: BaseException, body: ClientStream
    ) -> GatewayError | ClientDisconnected:
        if body.error is not None:
            return body.error
        error = translate(exc, upstream.name)
        self._metrics.upstream_error(upstream.name, reason(error))
        return error

    async def _relay(
        self,
        response: aiohttp.ClientResponse,
        send: Send,
        ctx: RequestContext,
        method: str,
        route: CompiledRoute,
        reading: Reading | None = None,
    ) -> None:
        status = response.status
        headers = response_headers(response.raw_headers, ctx.upstream or "", self._refused)
        rewriter, headers = rewritten(
            route, method, status, headers, self._rewritten, response.url.raw_path_qs
        )
        if route.added_headers:
            replaced = route.replaced_headers
            headers = [h for h in headers if h[0] not in replaced]
            headers.extend(route.added_headers)
        if ctx.response_headers:
            headers.extend(ctx.response_headers)
        start = {"type": "http.response.start", "status": status, "headers": headers}
        if method == "HEAD" or status in _NO_BODY_STATUS or status < 200:
            await send(start)
            ctx.response_done = True
            await send({"type": "http.response.body", "body": b""})
            ctx.upstream_ended = time.perf_counter()
            return
        length = response.content_length
        content_type: str = response.headers.get("Content-Type", "")
        events = content_type.startswith("text/event-stream")
        content = response.content
        first = b""
        if length is not None and length <= SMALL_BODY and not events and rewriter is None:
            # A small body that came with the headers is sent in one piece (a failure
            # could still be a clean 502); one still arriving is streamed like any
            # other, so a slow upstream's first bytes are not held back.
            first = content.read_nowait(-1)
            if len(first) >= length:
                ctx.upstream_ended = time.perf_counter()
                if reading is not None and status < 300:
                    reading.answer(first)
                await send(start)
                ctx.response_done = True
                await send({"type": "http.response.body", "body": first})
                return
        await send(start)
        tail: StreamTail | None = None
        kept: bytearray | None = None
        if reading is not None:
            if events:
                tail = StreamTail()
            elif status < 300 and content_type.startswith("application/json"):
                kept = bytearray()
        try:
            while chunk := first or await content.readany():
                first = b""
                if rewriter is not None:
                    chunk = rewriter.feed(chunk)
                    if not chunk:
                        continue
                if tail is not None:
                    tail.feed(chunk)
                elif kept is not None:
                    kept += chunk
                    if len(kept) > JSON_USAGE_LIMIT:
                        kept = None  # too large to keep aside: recorded without usage
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            if rewriter is not None and (rest := rewriter.end()):
                await send({"type": "http.response.body", "body": rest, "more_body": True})
        except (aiohttp.ClientError, TimeoutError, zlib.error, brotli_error()) as exc:
            error = self._failed_midway(ctx.upstream or "", exc)
            ctx.error = error.code
            log.warning(
                "upstream_stream_aborted",
                upstream=ctx.upstream,
                route=route.name,
                correlation_id=ctx.correlation_id,
                reason=error.message,
                bytes_sent=ctx.bytes_out,
            )
            raise StreamAborted(error.message) from exc
        finally:
            if tail is not None and reading is not None:
                reading.events(tail)  # also of a stream cut short
        ctx.upstream_ended = time.perf_counter()
        if kept is not None and reading is not None:
            reading.answer(bytes(kept))
        ctx.response_done = True
        await send({"type": "http.response.body", "body": b""})

    def _failed_midway(self, upstream: str, exc: BaseException) -> UpstreamError:
        error = translate(exc, upstream)
        self._metrics.upstream_error(upstream, reason(error))
        return error
