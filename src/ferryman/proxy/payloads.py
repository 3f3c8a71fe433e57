"""Small pieces of a forwarded exchange: the request body as aiohttp should send it,
headers for a rewritten body, the refusal of a caller the shared pool is not lent to,
the warning about an upstream that tries to set the gateway's own cookie, and a route's
rewriting of an answer."""

from __future__ import annotations

import io
import math
import time
from collections.abc import AsyncIterator

import structlog
from yarl import URL

from ferryman.auth.identity import Identity
from ferryman.config.accounts import pool_permission
from ferryman.errors import Forbidden
from ferryman.observability.context import RequestContext
from ferryman.proxy.headers import TrustedProxies, request_headers
from ferryman.proxy.paths import check_query, join_path, strip_segments
from ferryman.proxy.routing import CompiledRoute
from ferryman.proxy.upstream import UpstreamClient
from ferryman.rewrite.body import BodyRewriter, CachedRewrite, for_response
from ferryman.rewrite.cache import RewriteCache
from ferryman.rewrite.headers import rewrite_headers
from ferryman.types import Headers, Scope

log = structlog.get_logger("ferryman.proxy")

#: A request body already in memory larger than this is handed to aiohttp as a file.
LARGE_BYTES = 1024 * 1024


def not_lent(upstream: str, identity: Identity | None) -> Forbidden:
    """The 403 for a caller who may not spend the shared keys and brings none."""
    if identity is None:
        return Forbidden(
            f"anonymous requests may not spend the shared keys of upstream {upstream!r}",
            code="shared_pool_not_granted",
        )
    return Forbidden(
        f"this account may not spend the shared keys of upstream {upstream!r}: add a "
        f"provider key of your own (POST /api/v1/upstream-keys) or ask an admin for the "
        f"permission {pool_permission(upstream)}",
        code="shared_pool_not_granted",
    )


def payload(
    data: bytes | AsyncIterator[bytes],
) -> bytes | io.BytesIO | AsyncIterator[bytes] | None:
    if isinstance(data, bytes):
        if not data:
            return None
        if len(data) > LARGE_BYTES:
            # aiohttp writes a large bytes body in one go; a file-like one in pieces.
            return io.BytesIO(data)
    return data


def with_length(headers: list[tuple[str, str]], length: int) -> list[tuple[str, str]]:
    """The headers with `Content-Length` for a rewritten body (and no chunked framing)."""
    kept = [(n, v) for n, v in headers if n.lower() not in ("content-length", "transfer-encoding")]
    kept.append(("Content-Length", str(length)))
    return kept


class CookieRefusals:
    """An upstream tried to set or clear the gateway's own cookie (dropped). Told at
    most once a minute per upstream: an app behind the gateway that uses a cookie of
    that name must rename it, and must not flood the log meanwhile."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}

    def __call__(self, upstream: str, cookie: bytes) -> None:
        now = time.monotonic()
        if now - self._last.get(upstream, -math.inf) >= 60.0:
            self._last[upstream] = now
            log.warning(
                "upstream_cookie_refused",
                upstream=upstream,
                cookie_name=cookie.decode("latin-1"),
                reason="the gateway's own cookie: an upstream may neither set nor clear it",
            )


def rewritten(
    route: CompiledRoute,
    method: str,
    status: int,
    headers: Headers,
    cache: RewriteCache,
    resource: str,
) -> tuple[BodyRewriter | CachedRewrite | None, Headers]:
    """The route's rewriting of this answer: its headers' URLs made public, and a body
    rewriter when the route rewrites bodies of this kind (None otherwise)."""
    if route.urls is None:
        return None, headers
    if route.rewrite_headers:
        headers = rewrite_headers(headers, route.urls)
    if not route.rewrite_body or method == "HEAD":
        return None, headers
    spec = route.spec.rewrite
    return for_response(
        route.urls,
        route.rewrite_body,
        spec.max_body,
        status,
        headers,
        spec.runtime,
        cache,
        resource,
    )


def upstream_request(
    scope: Scope,
    ctx: RequestContext,
    route: CompiledRoute,
    upstream: UpstreamClient,
    raw_path: str,
    extra: list[tuple[str, str]],
    drop: frozenset[bytes],
    trusted: TrustedProxies,
) -> tuple[URL, list[tuple[str, str]], bytes | None]:
    """Where a routed request goes upstream and with which headers (HTTP and WebSocket
    alike): the path under the target prefix, the query checked, the upstream's own
    credential instead of any client copy of its header; and the client's length."""
    query: bytes = scope["query_string"]
    if query:
        check_query(query)
    path = join_path(route.target_prefix, strip_segments(raw_path, route.strip_segments))
    peer = scope["client"][0] if scope.get("client") else ""
    if upstream.credential_header is not None:
        extra = [*extra, upstream.credential_header]
        drop = drop | upstream.credential_drop
    scheme = scope.get("scheme", "http")
    headers, length = request_headers(
        scope["headers"],
        peer=peer,
        scheme="https" if scheme == "wss" else "http" if scheme == "ws" else scheme,
        request_id=ctx.correlation_id,
        trusted=trusted.trusts(peer),
        extra=extra,
        drop=drop,
    )
    return upstream.url(path, query), headers, length
