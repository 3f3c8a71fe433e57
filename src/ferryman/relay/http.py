"""The relay's plumbing over ASGI: origins and CORS, the body, the cookie, SSE events."""

from __future__ import annotations

from typing import Any

import orjson

from ferryman.auth.sessions import cookie_value
from ferryman.config.relay import Relay
from ferryman.errors import BadRequest, Forbidden, PayloadTooLarge
from ferryman.types import Receive, Scope

Headers = list[tuple[bytes, bytes]]

_EXPOSED = b"X-Request-ID, Retry-After, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset"
_PREFLIGHT_HEADERS = frozenset({"content-type", "accept", "x-request-id", "last-event-id"})


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def checked_origin(scope: Scope, spec: Relay) -> str:
    """The request's `Origin`, when it is one of the relay's; 403 otherwise (a relay call
    is refused outright, not merely answered without CORS headers)."""
    origin = header(scope, b"origin")
    if origin is None:
        raise Forbidden(
            "relay calls come from a web page: the Origin header is missing",
            code="origin_required",
        )
    if origin not in spec.allow_origins:
        raise Forbidden(
            f"the origin {origin[:100]!r} may not use this relay", code="origin_not_allowed"
        )
    return origin


def cors(origin: str) -> Headers:
    return [
        (b"access-control-allow-origin", origin.encode()),
        (b"access-control-allow-credentials", b"true"),
        (b"access-control-expose-headers", _EXPOSED),
        (b"vary", b"Origin"),
    ]


def preflight(scope: Scope, origin: str) -> Headers:
    asked = header(scope, b"access-control-request-headers") or ""
    names = [n.strip().lower() for n in asked.split(",") if n.strip()]
    allowed = ", ".join(n for n in names if n in _PREFLIGHT_HEADERS) or "content-type"
    return [
        *cors(origin),
        (b"access-control-allow-methods", b"GET, POST, DELETE, OPTIONS"),
        (b"access-control-allow-headers", allowed.encode()),
        (b"access-control-max-age", b"600"),
    ]


async def read_json(receive: Receive, limit: int) -> dict[str, Any]:
    """The request body as a JSON object; 413 beyond `limit` bytes, 400 when it is not
    a JSON object."""
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise BadRequest("the client left before its body arrived", code="client_disconnected")
        body += message.get("body", b"")
        if len(body) > limit:
            raise PayloadTooLarge(
                f"the request body is larger than {limit} bytes", code="body_too_large"
            )
        if not message.get("more_body"):
            break
    try:
        value = orjson.loads(bytes(body)) if body else None
    except orjson.JSONDecodeError:
        raise BadRequest("the body is not valid JSON", code="invalid_json") from None
    if not isinstance(value, dict):
        raise BadRequest("the body must be a JSON object", code="invalid_body")
    return value


def text_field(payload: dict[str, Any], name: str, *, required: bool, longest: int) -> str | None:
    value = payload.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value.strip()):
        raise BadRequest(f"`{name}` must be a non-empty string", code="invalid_body")
    if len(value) > longest:
        raise PayloadTooLarge(
            f"`{name}` is longer than {longest} characters", code=f"{name}_too_long"
        )
    return value


def session_token(scope: Scope, spec: Relay) -> str | None:
    cookies = header(scope, b"cookie")
    return cookie_value(cookies, spec.session.cookie) if cookies else None


def set_cookie(spec: Relay, token: str, max_age: int) -> tuple[bytes, bytes]:
    session = spec.session
    parts = [
        f"{session.cookie}={token}",
        f"Path={spec.prefix}",
        f"Max-Age={max_age}",
        "HttpOnly",
        f"SameSite={session.same_site.capitalize()}",
    ]
    if session.secure:
        parts.append("Secure")
    return b"set-cookie", "; ".join(parts).encode()


def event(kind: str, payload: dict[str, Any]) -> bytes:
    """One SSE event: its name and its data as one JSON line."""
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


HEARTBEAT = b": heartbeat\n\n"

SSE_HEADERS: Headers = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache, no-store"),
    (b"x-accel-buffering", b"no"),
]
