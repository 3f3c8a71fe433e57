"""Per-route auth in the gateway: find the credential, verify it, check rights.

One pass over the request's headers finds every credential the route accepts. The
route's kinds are tried in their configured order; the first kind whose credential
is present decides (a bad credential is a 401, not a reason to try the next kind).
Whatever the outcome, credentials the client sent never reach the upstream: their
headers are dropped (only the session cookie is cut out of `Cookie`), and so are
client-sent copies of the identity headers the route adds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from ferryman.auth.hashing import API_KEY_PREFIX
from ferryman.auth.identity import Identity
from ferryman.auth.sessions import COOKIE, cookie_value, without_cookie
from ferryman.config.routes import Route
from ferryman.errors import Forbidden, Unauthorized

if TYPE_CHECKING:
    from ferryman.auth.services import Auth

CHALLENGE = 'Bearer realm="ferryman"'


class Admitted(NamedTuple):
    """A request that passed: who it is, and how its headers change going upstream."""

    identity: Identity
    drop: frozenset[bytes]
    add: list[tuple[str, str]]


def _field(identity: Identity, name: str) -> str:
    value: str = getattr(identity, name)
    return value


class RoutePolicy:
    """The compiled auth policy of one route."""

    def __init__(self, auth: Auth, route: Route) -> None:
        self._auth = auth
        self.kinds = route.auth
        self.scopes = route.required_scopes
        self.permissions = route.permissions
        self._key_headers = frozenset(
            {b"x-api-key", *(h.lower().encode() for h in route.api_key_headers)}
        )
        self._identity = tuple(route.forwarded_identity.items())
        drop = {name.lower().encode() for name, _ in self._identity}
        if "api_key" in self.kinds:
            drop |= self._key_headers | {b"authorization"}
        if "jwt" in self.kinds:
            drop.add(b"authorization")
        if "access_pass" in self.kinds:
            drop.add(b"x-access-token")
        self._drop = frozenset(drop)
        self._wants_cookie = "session" in self.kinds

    def _challenge(self, message: str, code: str) -> Unauthorized:
        return Unauthorized(message, code=code, challenge=CHALLENGE)

    async def admit(self, headers: list[tuple[bytes, bytes]]) -> Admitted:
        """The caller's identity and header changes, or Unauthorized / Forbidden."""
        bearer = key = access = cookie = None
        key_headers = self._key_headers
        for name, value in headers:
            if name == b"authorization":
                bearer = value
            elif name in key_headers:
                key = value
            elif name == b"x-access-token":
                access = value
            elif name == b"cookie":
                cookie = value
        token = None
        if bearer is not None:
            scheme, _, rest = bearer.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer":
                token = rest.strip()
        session = None
        if cookie is not None and self._wants_cookie:
            session = cookie_value(cookie.decode("latin-1"), COOKIE)
        identity = await self._verify(token, key, access, session)
        if self.scopes and identity.kind == "api_key" and not identity.has_scopes(self.scopes):
            raise Forbidden(
                f"the API key lacks the scope {', '.join(self.scopes)} this route needs",
                code="insufficient_scope",
            )
        if self.permissions and not identity.has_permissions(self.permissions):
            missing = sorted(set(self.permissions) - identity.permissions)
            raise Forbidden(
                f"this route needs the permission {', '.join(missing)}",
                code="insufficient_permissions",
            )
        drop = self._drop
        add = [(header, _field(identity, field)) for header, field in self._identity]
        if session is not None and cookie is not None:
            drop = drop | {b"cookie"}
            rest = without_cookie(cookie.decode("latin-1"), COOKIE)
            if rest:
                add.append(("Cookie", rest))
        return Admitted(identity, drop, add)

    async def _verify(
        self,
        token: str | None,
        key: bytes | None,
        access: bytes | None,
        session: str | None,
    ) -> Identity:
        auth = self._auth
        for kind in self.kinds:
            if kind == "api_key":
                raw = key.decode("latin-1").strip() if key is not None else None
                if raw is None and token is not None and token.startswith(API_KEY_PREFIX):
                    raw = token
                if raw:
                    return await auth.api_keys.verify(raw)
            elif kind == "jwt":
                if token is not None and not token.startswith(API_KEY_PREFIX) and token:
                    return await auth.jwt.verify(token)
            elif kind == "access_pass":
                if access is not None and access.strip():
                    return await auth.passes.verify(access.decode("latin-1").strip())
            elif kind == "session" and session:
                return (await auth.sessions.verify(session)).identity
        accepted = ", ".join(self.kinds)
        raise self._challenge(
            f"this route requires a credential ({accepted})", "missing_credential"
        )
