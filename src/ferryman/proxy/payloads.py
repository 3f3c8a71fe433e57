"""Small pieces of a forwarded exchange: the request body as aiohttp should send it,
headers for a rewritten body, and the refusal of a caller the shared pool is not lent to."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

from ferryman.auth.identity import Identity
from ferryman.config.accounts import pool_permission
from ferryman.errors import Forbidden

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
