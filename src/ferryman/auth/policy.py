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
from urllib.parse import unquote_to_bytes

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
    query: bytes | None = None
    """The query string to forward instead of the client's (a pass taken out of it)."""
    handle: str | None = None
    """A pass came in the query and the route gives browsers a cookie: its handle."""
    handle_age: int = 0
    """Seconds the handle is good for (the pass's time left)."""


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
        browser = route.browser_pass if "access_pass" in self.kinds else None
        self._query = (browser.query_param or "").encode() + b"=" if browser else b""
        self.pass_cookie = browser.cookie if browser is not None else None
        self.secure_cookie = browser is not None and browser.secure_cookie
        self._route = route.label
        self._missing_status = route.missing_credential_status

    def _challenge(self, message: str, code: str) -> Unauthorized:
        return Unauthorized(message, code=code, challenge=CHALLENGE)

    async def admit(self, headers: list[tuple[bytes, bytes]], query: bytes = b"") -> Admitted:
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
        session = handle = None
        cookie_text = cookie.decode("latin-1") if cookie is not None else None
        if cookie_text is not None and self._wants_cookie:
            session = cookie_value(cookie_text, COOKIE)
        forwarded_query = None
        from_query = False
        if self._query and query and access is None:
            access, forwarded_query = take_param(query, self._query)
            from_query = access is not None
        if cookie_text is not None and self.pass_cookie is not None and access is None:
            handle = cookie_value(cookie_text, self.pass_cookie)
        identity = await self._verify(token, key, access, session, handle)
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
        if cookie_text is not None and (session is not None or self.pass_cookie is not None):
            # The gateway's own cookies are its business, never the upstream's.
            rest = without_cookie(cookie_text, COOKIE) if session is not None else cookie_text
            if self.pass_cookie is not None:
                rest = without_cookie(rest, self.pass_cookie)
            if rest != cookie_text:
                drop = drop | {b"cookie"}
                if rest:
                    add.append(("Cookie", rest))
        issued, age = None, 0
        if from_query and self.pass_cookie is not None and identity.kind == "access_pass":
            until = identity.expires_at.timestamp() if identity.expires_at else 0.0
            issued = self._auth.pass_cookies.issue(identity.credential_id, self._route, until)
            age = int(until - self._auth.clock.time())
        return Admitted(identity, drop, add, forwarded_query, issued, age)

    async def _verify(
        self,
        token: str | None,
        key: bytes | None,
        access: bytes | None,
        session: str | None,
        handle: str | None = None,
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
                if handle:
                    pass_id = auth.pass_cookies.open(handle, self._route)
                    if pass_id is None:
                        raise self._challenge("the pass cookie is not valid", "invalid_credential")
                    return await auth.passes.verify_id(pass_id)
            elif kind == "session" and session:
                return (await auth.sessions.verify(session)).identity
        accepted = ", ".join(self.kinds)
        message = f"this route requires a credential ({accepted})"
        if self._missing_status == 403:
            raise Forbidden(message, code="missing_credential")
        raise self._challenge(message, "missing_credential")


def take_param(query: bytes, prefix: bytes) -> tuple[bytes | None, bytes]:
    """The value of the first `name=value` pair starting with `prefix` (`name=`),
    percent-decoded, and the query without every such pair."""
    if prefix not in query:
        return None, query
    value = None
    kept = []
    for pair in query.split(b"&"):
        if pair.startswith(prefix):
            if value is None:
                value = unquote_to_bytes(pair[len(prefix) :].replace(b"+", b" "))
            continue
        kept.append(pair)
    return value, b"&".join(kept)
