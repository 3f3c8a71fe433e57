"""Forwarding one request upstream and streaming the answer back.

Request bodies are handed to aiohttp as they arrive; responses go to the client chunk
by chunk as aiohttp reads them. Only a response that declares a small
`Content-Length` (and is not an event stream) is read whole first, which lets a
failure inside it still be answered with a clean 502.

While the upstream works, the client is watched (`ferryman.proxy.client`); if it
leaves before the response is complete the handling task is cancelled, which closes
the upstream connection and so cancels the upstream request.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator

import aiohttp
import structlog

from ferryman.errors import GatewayError, ServiceUnavailable, UpstreamError
from ferryman.observability.context import RequestContext
from ferryman.observability.metrics import Metrics
from ferryman.proxy.client import ClientDisconnected, ClientStream, declared_length
from ferryman.proxy.headers import TrustedProxies, request_headers, response_headers
from ferryman.proxy.paths import check_query, join_path, strip_segments
from ferryman.proxy.routing import CompiledRoute
from ferryman.proxy.upstream import UpstreamClient
from ferryman.proxy.upstream_errors import reason, translate
from ferryman.types import Receive, Scope, Send

log = structlog.get_logger("ferryman.proxy")

#: A response declaring at most this many bytes is read whole before it is sent.
SMALL_BODY = 64 * 1024

#: A request body already in memory larger than this is handed to aiohttp as a file.
LARGE_BYTES = 1024 * 1024

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
    ) -> None:
        self._upstreams = upstreams
        self._metrics = metrics
        self._trusted = trusted

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
    ) -> None:
        """Forward, or raise GatewayError before any response byte was sent.

        `drop` names client headers to withhold (credentials the gateway consumed);
        `extra_headers` are added (identity headers, a cleaned Cookie).
        """
        upstream = self._upstreams[route.upstream]
        ctx.upstream = upstream.name
        if upstream.spec.credential.kind == "pool":
            # The key pool is not built yet: never forward without the credential.
            raise ServiceUnavailable(
                f"no upstream key is available for {upstream.name!r}", code="no_upstream_key"
            )
        query: bytes = scope["query_string"]
        if query:
            check_query(query)
        path = join_path(route.target_prefix, strip_segments(raw_path, route.strip_segments))
        url = upstream.url(path, query)
        peer = scope["client"][0] if scope.get("client") else ""
        if upstream.credential_header is not None:
            extra_headers = [*extra_headers, upstream.credential_header]
        headers, length = request_headers(
            scope["headers"],
            peer=peer,
            scheme=scope.get("scheme", "http"),
            request_id=ctx.correlation_id,
            trusted=self._trusted.trusts(peer),
            extra=extra_headers,
            drop=drop,
        )
        declared_length(length, route.max_body_size)
        method: str = scope["method"]
        client = ClientStream(receive, ctx, route.max_body_size)
        response: aiohttp.ClientResponse | None = None
        try:
            try:
                data = await client.first()
            except ClientDisconnected:
                ctx.client_gone = True
                return
            response = await self._exchange(upstream, method, url, headers, data, client, ctx)
            await self._relay(response, send, ctx, method, route.name)
        except asyncio.CancelledError:
            if ctx.client_gone:
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()
                return
            raise
        finally:
            client.close()
            if response is not None:
                if ctx.response_done:
                    response.release()
                else:
                    response.close()

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
                data=_payload(data),
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
        route: str,
    ) -> None:
        status = response.status
        start = {
            "type": "http.response.start",
            "status": status,
            "headers": response_headers(response.raw_headers),
        }
        if method == "HEAD" or status in _NO_BODY_STATUS or status < 200:
            await send(start)
            ctx.response_done = True
            await send({"type": "http.response.body", "body": b""})
            ctx.upstream_ended = time.perf_counter()
            return
        length = response.content_length
        if length is not None and length <= SMALL_BODY and not _is_event_stream(response):
            try:
                whole = await response.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise self._failed_midway(ctx.upstream or "", exc) from exc
            ctx.upstream_ended = time.perf_counter()
            await send(start)
            ctx.response_done = True
            await send({"type": "http.response.body", "body": whole})
            return
        await send(start)
        content = response.content
        try:
            while chunk := await content.readany():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = self._failed_midway(ctx.upstream or "", exc)
            ctx.error = error.code
            log.warning(
                "upstream_stream_aborted",
                upstream=ctx.upstream,
                route=route,
                correlation_id=ctx.correlation_id,
                reason=error.message,
                bytes_sent=ctx.bytes_out,
            )
            raise StreamAborted(error.message) from exc
        ctx.upstream_ended = time.perf_counter()
        ctx.response_done = True
        await send({"type": "http.response.body", "body": b""})

    def _failed_midway(self, upstream: str, exc: BaseException) -> UpstreamError:
        error = translate(exc, upstream)
        self._metrics.upstream_error(upstream, reason(error))
        return error


def _payload(
    data: bytes | AsyncIterator[bytes],
) -> bytes | io.BytesIO | AsyncIterator[bytes] | None:
    if isinstance(data, bytes):
        if not data:
            return None
        if len(data) > LARGE_BYTES:
            # aiohttp writes a large bytes body in one go; a file-like one in pieces.
            return io.BytesIO(data)
    return data


def _is_event_stream(response: aiohttp.ClientResponse) -> bool:
    content_type = response.headers.get("Content-Type", "")
    return content_type.startswith("text/event-stream")
