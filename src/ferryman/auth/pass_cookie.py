"""The cookie a browser carries instead of its access pass (seed 002's web app).

A page opened with `?token=PASS` cannot make its own requests (fetch, XHR, WebSocket,
images) carry the pass; the gateway sets a cookie for the route's prefix instead. The
cookie holds a handle, never the pass: the pass's id, the route, when the handle
stops, and a MAC over those under a key derived from the server's secret. Presenting
it means the pass is checked again by id (revoked, expired, its user disabled: refused
at once), and it admits nothing but the route it was made for.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

from ferryman.auth.hashing import KeyedHash
from ferryman.clock import Clock

_VERSION = "p1"
_HANDLE = re.compile(r"^p1\.([A-Za-z0-9_-]{1,64})\.(\d{1,12})\.([A-Za-z0-9_-]{43})$")


class PassCookies:
    """Makes and opens pass handles; `secret` is the server's secret key."""

    def __init__(self, secret: str, clock: Clock) -> None:
        self._clock = clock
        # A key of its own: a handle's MAC is never a valid JWT signature or digest.
        derived = hashlib.sha256(b"ferryman pass cookie\x00" + secret.encode()).digest()
        self._mac = KeyedHash(derived)

    def _sign(self, pass_id: str, route: str, until: int) -> str:
        digest = self._mac.digest(f"{_VERSION}|{pass_id}|{route}|{until}")
        return base64.urlsafe_b64encode(bytes.fromhex(digest)).decode().rstrip("=")

    def issue(self, pass_id: str, route: str, until: float) -> str:
        """A handle for this pass on this route, good until `until` (epoch seconds)."""
        stop = int(until)
        return f"{_VERSION}.{pass_id}.{stop}.{self._sign(pass_id, route, stop)}"

    def open(self, handle: str, route: str) -> str | None:
        """The pass id a handle names, if it was made here, for this route, and has not
        run out; None otherwise (the caller answers as for a bad credential)."""
        match = _HANDLE.match(handle)
        if match is None:
            return None
        pass_id, until, mac = match.group(1), int(match.group(2)), match.group(3)
        if not hmac.compare_digest(mac, self._sign(pass_id, route, until)):
            return None
        if self._clock.time() >= until:
            return None
        return pass_id


def set_cookie(name: str, handle: str, path: str, max_age: int, secure: bool) -> bytes:
    """The `Set-Cookie` value: HttpOnly (no script reads it), SameSite=Lax (another
    site's page cannot send it with a request that changes anything), scoped to the
    route's prefix, gone when the pass is."""
    parts = [f"{name}={handle}", f"Path={path}", f"Max-Age={max(max_age, 0)}", "HttpOnly"]
    parts.append("SameSite=Lax")
    if secure:
        parts.append("Secure")
    return "; ".join(parts).encode("latin-1")
