"""Responses the gateway makes itself: errors, health, metrics.

They all carry the security headers; proxied responses carry the upstream's own.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from email.utils import formatdate

import orjson

from ferryman.config.security import Security
from ferryman.errors import GatewayError
from ferryman.types import Headers, Send

_JSON = (b"content-type", b"application/json")

_date_cache: tuple[int, bytes] = (0, b"")


def http_date() -> bytes:
    """The `Date` header value, formatted at most once a second."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, formatdate(now, usegmt=True).encode())
    return _date_cache[1]


def error_body(code: str, message: str, correlation_id: str) -> bytes:
    """The JSON error format every gateway-made error uses."""
    timestamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return orjson.dumps(
        {
            "error": code,
            "message": message,
            "correlation_id": correlation_id,
            "timestamp": timestamp,
        }
    )


class Responder:
    """Builds gateway-made responses with the configured security headers."""

    def __init__(self, security: Security) -> None:
        headers: Headers = [
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", security.frame_options.encode()),
            (b"content-security-policy", security.content_security_policy.encode()),
            (b"referrer-policy", b"no-referrer"),
            (b"cache-control", b"no-store"),
        ]
        if security.hsts is not None:
            headers.append((b"strict-transport-security", security.hsts.header_value.encode()))
        self.security_headers: tuple[tuple[bytes, bytes], ...] = tuple(headers)

    async def send(
        self,
        send: Send,
        status: int,
        body: bytes,
        *,
        content_type: bytes,
        headers: Headers | None = None,
        head: bool = False,
    ) -> None:
        out: Headers = [(b"date", http_date()), *self.security_headers]
        if status != 204:
            out.append((b"content-type", content_type))
            out.append((b"content-length", str(len(body)).encode()))
        if headers:
            out.extend(headers)
        await send({"type": "http.response.start", "status": status, "headers": out})
        await send({"type": "http.response.body", "body": b"" if head else body})

    async def json(
        self,
        send: Send,
        status: int,
        payload: object,
        *,
        headers: Headers | None = None,
        head: bool = False,
    ) -> None:
        await self.send(
            send, status, orjson.dumps(payload), content_type=_JSON[1], headers=headers, head=head
        )

    async def error(self, send: Send, error: GatewayError, correlation_id: str) -> None:
        body = error_body(error.code, error.message, correlation_id)
        await self.send(send, error.status, body, content_type=_JSON[1], headers=error.headers)
