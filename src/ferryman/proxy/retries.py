"""Retrying a failed exchange with an upstream (`upstreams.<name>.retries`).

Only before anything was relayed (an exchange ends at the response's headers), only
for a body the gateway holds whole (a streamed body cannot be sent twice), and only for
an idempotent method or a route marked `retry: true`. A retry waits with exponential
backoff and full jitter, so clients that failed together do not come back together,
and stops early when the upstream's breaker has opened meanwhile.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import structlog

from ferryman.config.resilience import IDEMPOTENT
from ferryman.errors import UpstreamError, UpstreamTimeout
from ferryman.observability.context import RequestContext
from ferryman.proxy.client import ClientStream
from ferryman.proxy.routing import CompiledRoute
from ferryman.proxy.upstream import UpstreamClient

log = structlog.get_logger("ferryman.proxy")

Body = bytes | AsyncIterator[bytes]
Exchange = Callable[
    [UpstreamClient, str, object, list[tuple[str, str]], Body, ClientStream, RequestContext],
    Awaitable[aiohttp.ClientResponse],
]

_IDEMPOTENT = frozenset(IDEMPOTENT)


async def retrying(
    exchange: Exchange,
    route: CompiledRoute,
    upstream: UpstreamClient,
    method: str,
    url: object,
    headers: list[tuple[str, str]],
    data: Body,
    body: ClientStream,
    ctx: RequestContext,
) -> aiohttp.ClientResponse:
    """`exchange(...)`, tried again as the upstream's `retries` allow."""
    spec = upstream.spec.retries
    if (
        not spec.attempts
        or not isinstance(data, bytes)
        or (method not in _IDEMPOTENT and not route.spec.retry)
    ):
        return await exchange(upstream, method, url, headers, data, body, ctx)
    when = spec.when
    tries = spec.attempts + 1
    for n in range(tries):
        ctx.attempts += 1
        last = n == tries - 1 or (upstream.breaker is not None and not upstream.breaker.closed)
        try:
            response = await exchange(upstream, method, url, headers, data, body, ctx)
        except UpstreamError as error:
            kind = "timeout" if isinstance(error, UpstreamTimeout) else "connect"
            if last or kind not in when:
                raise
            why = error.code
        else:
            if last or response.status not in when:
                return response
            why = f"status {response.status}"
            response.close()
        wait = min(spec.max_backoff, spec.backoff * 2**n) * random.random()  # noqa: S311 - jitter
        log.info(
            "upstream_retry",
            upstream=upstream.name,
            correlation_id=ctx.correlation_id,
            attempt=n + 1,
            reason=why,
            wait=round(wait, 3),
        )
        await asyncio.sleep(wait)
    raise AssertionError("unreachable: the last try returns or raises")  # pragma: no cover
