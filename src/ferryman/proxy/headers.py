"""Which headers cross the gateway, in each direction.

Hop-by-hop headers (RFC 9110 §7.6.1) and any header a `Connection` header names stay
on their side. Going up, the client's `Host` is replaced by the upstream's and the
`X-Forwarded-*` family is rebuilt: believed from the client only when the peer is a
trusted proxy, otherwise replaced by what the gateway saw itself.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Sequence

from ferryman.auth.sessions import COOKIE
from ferryman.errors import BadRequest
from ferryman.types import Headers

#: Cookies the gateway sets itself; a `Set-Cookie` for one of them never reaches the
#: client from an upstream (it could plant a session or log the user out).
GATEWAY_COOKIES = frozenset({COOKIE.encode()})

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)

#: Request headers never passed up as the client sent them.
_REQUEST_DROP = HOP_BY_HOP | {
    b"host",
    b"expect",
    b"x-request-id",
}

#: Believed from a trusted proxy only.
_FORWARDING = frozenset(
    {b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"forwarded", b"x-real-ip"}
)

#: Response headers never passed down as the upstream sent them.
_RESPONSE_DROP = HOP_BY_HOP | {b"x-request-id"}


_PLAIN_CONNECTION = frozenset({b"keep-alive", b"close", b"Keep-Alive", b"Close"})


def _connection_listed(value: bytes) -> frozenset[bytes]:
    """The header names a `Connection` value makes hop-by-hop (none for the usual ones)."""
    if value in _PLAIN_CONNECTION:
        return frozenset()
    names = {token.strip().lower() for token in value.split(b",")}
    names -= {b"", b"keep-alive", b"close"}
    return frozenset(names)


class TrustedProxies:
    """The peers whose forwarding headers are believed."""

    def __init__(self, networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> None:
        self._networks = tuple(networks)
        self._cache: dict[str, bool] = {}

    def __bool__(self) -> bool:
        return bool(self._networks)

    def trusts(self, peer: str) -> bool:
        if not self._networks:
            return False
        known = self._cache.get(peer)
        if known is None:
            try:
                address = ipaddress.ip_address(peer)
            except ValueError:
                known = False
            else:
                known = any(address in network for network in self._networks)
            if len(self._cache) < 4096:
                self._cache[peer] = known
        return known

    def client_ip(self, peer: str, forwarded_for: bytes | None) -> str:
        """The client's address: the last `X-Forwarded-For` hop not one of ours."""
        if not forwarded_for or not self.trusts(peer):
            return peer
        hops = [hop.strip() for hop in forwarded_for.decode("latin-1").split(",")]
        for hop in reversed(hops):
            if hop and not self.trusts(hop):
                return hop
        return hops[0] or peer


def request_headers(
    headers: Iterable[tuple[bytes, bytes]],
    *,
    peer: str,
    scheme: str,
    request_id: str,
    trusted: bool,
    extra: Sequence[tuple[str, str]] = (),
    drop: frozenset[bytes] = frozenset(),
) -> tuple[list[tuple[str, str]], bytes | None]:
    """The headers to send upstream, as aiohttp wants them (str pairs), and the
    client's `Content-Length` if it sent one.

    `drop` names further headers to withhold (credentials the gateway consumed);
    `extra` adds headers after the client's, replacing none of them.
    """
    out: list[tuple[str, str]] = []
    host = b""
    length = forwarded_for = proto = forwarded_host = None
    listed: frozenset[bytes] = frozenset()
    values: list[bytes] = []
    for name, value in headers:
        if name in _REQUEST_DROP or name in drop:
            if name == b"host":
                host = value
            elif name == b"connection":
                listed = _connection_listed(value)
            continue
        if name in _FORWARDING:
            if trusted:
                if name == b"x-forwarded-for":
                    forwarded_for = value
                    continue
                if name == b"x-forwarded-proto":
                    proto = value
                elif name == b"x-forwarded-host":
                    forwarded_host = value
                out.append((name.decode("latin-1"), value.decode("latin-1")))
            continue
        if name == b"content-length":
            length = value
        values.append(value)
        out.append((name.decode("latin-1"), value.decode("latin-1")))
    if values:
        joined = b"\x00".join(values)
        if b"\r" in joined or b"\n" in joined:
            raise BadRequest("header values must not contain CR or LF", code="invalid_header")
    if listed:
        out = [(n, v) for n, v in out if n.lower().encode("latin-1") not in listed]
    out.append(
        (
            "X-Forwarded-For",
            f"{forwarded_for.decode('latin-1')}, {peer}" if forwarded_for else peer,
        )
    )
    if proto is None:
        out.append(("X-Forwarded-Proto", scheme))
    if forwarded_host is None and host:
        out.append(("X-Forwarded-Host", host.decode("latin-1")))
    out.append(("X-Request-ID", request_id))
    out.extend(extra)
    return out, length


def response_headers(
    raw: Iterable[tuple[bytes, bytes]],
    upstream: str = "",
    refused: Callable[[str, bytes], None] | None = None,
) -> Headers:
    """The upstream's response headers as ASGI wants them, minus hop-by-hop ones and any
    `Set-Cookie` for the gateway's own cookies (reported to `refused`)."""
    out: Headers = []
    listed: frozenset[bytes] = frozenset()
    for name, value in raw:
        lower = name.lower()
        if lower in _RESPONSE_DROP:
            if lower == b"connection":
                listed = _connection_listed(value)
            continue
        if lower == b"set-cookie" and _cookie_name(value) in GATEWAY_COOKIES:
            if refused is not None:
                refused(upstream, _cookie_name(value))
            continue
        out.append((lower, value))
    if listed:
        out = [(n, v) for n, v in out if n not in listed]
    return out


def _cookie_name(set_cookie: bytes) -> bytes:
    """The name a browser files a `Set-Cookie` under: up to the first `=`, trimmed."""
    name, eq, _ = set_cookie.partition(b"=")
    return name.strip() if eq else b""


def host_of(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The request's host name, lower-case, without a port (`""` when absent)."""
    for name, value in headers:
        if name == b"host":
            host = value.decode("latin-1").lower()
            if host.startswith("["):
                end = host.find("]")
                return host[: end + 1] if end != -1 else host
            return host.partition(":")[0]
    return ""
