"""Routes: which requests they match, where they go and under which policy."""

from __future__ import annotations

from typing import Literal

from pydantic import ByteSize, Field, field_validator, model_validator

from ferryman.config.base import HOST, NAME, TOKEN, Model, normalise_prefix
from ferryman.config.browser import BrowserPass
from ferryman.config.limits import LimitTier, Parallel
from ferryman.config.rewrite import Rewrite
from ferryman.config.security import Cors, RequestBody, ResponseHeaders
from ferryman.config.websocket import WebSocket

AuthKind = Literal["none", "api_key", "access_pass", "jwt", "session"]
IdentityField = Literal["user_id", "username", "role", "credential_id", "kind"]

#: Paths the gateway answers itself; a route cannot take them.
RESERVED_PATHS = frozenset(
    {"/health", "/health/live", "/health/ready", "/liveness", "/readiness", "/metrics"}
)

#: Prefixes of the management API; a route can neither take them nor sit inside them.
MANAGEMENT_PREFIXES = (
    "/api/v1/auth",
    "/api/v1/users",
    "/api/v1/keys",
    "/api/v1/tokens",
    "/api/v1/admin",
    "/api/v1/upstream-keys",
    "/api/v1/credits",
    "/api/v1/stats",
    "/api/v1/usage",
    "/api/v1/usage.csv",
    "/docs",
    "/openapi.json",
)

#: Headers an access pass route forwards unless told otherwise (seed 002).
PASS_IDENTITY_HEADERS: dict[str, IdentityField] = {
    "X-User-Id": "user_id",
    "X-Token-Id": "credential_id",
}


class Route(Model):
    """Matches requests and says where and under which policy they go."""

    name: str | None = Field(default=None, pattern=NAME)
    """Label in logs and metrics; defaults to the path."""
    path: str
    """Path prefix, matched on whole segments: `/v1` matches `/v1` and `/v1/x`, not `/v10`."""
    methods: tuple[str, ...] | None = None
    """Allowed methods; any method when unset."""
    host: str | None = None
    """Only requests for this host (`api.example.com` or `*.example.com`)."""
    upstream: str
    strip_prefix: bool = False
    """Remove `path` from the forwarded path."""
    upstream_path: str = "/"
    """Put in front of the forwarded path, after the upstream URL's own prefix."""
    auth: tuple[AuthKind, ...] = ("none",)
    """Credential kinds accepted, tried in this order; `none` lets anyone through."""
    missing_credential_status: Literal[401, 403] = 401
    """The status of a request that brings no credential at all (seed 002 uses 403);
    a credential that is bad, revoked or expired is always 401."""
    browser_pass: BrowserPass = BrowserPass()
    """Routes that take access passes: a pass in the query (`?token=`) and the cookie a
    browser gets for it; `false` for the `X-Access-Token` header only."""
    api_key_headers: tuple[str, ...] = ()
    """Headers that may carry a client key besides `Authorization: Bearer` and
    `X-API-Key` (seed 000 uses `X-Client-API-Key`)."""
    scopes: tuple[str, ...] | None = None
    """Scopes a client key needs here; default `[proxy]` when `api_key` is accepted."""
    permissions: tuple[str, ...] = ()
    """Permissions the caller's account needs (`read:users`); admins have all."""
    identity_headers: dict[str, IdentityField] | None = None
    """Headers to tell the upstream who called (`{X-User-Id: user_id}`); by default
    `X-User-Id` and `X-Token-Id` on routes that accept access passes, none elsewhere.
    Copies the client sent are always removed."""
    max_body_size: ByteSize | None = None
    """Overrides `security.max_body_size` for this route."""
    request_body: RequestBody | None = None
    """Overrides `security.request_body` for this route, field by field (`{buffer: 0}`
    streams every body as it arrives; `{idle_timeout: 60}` for slow uploaders)."""
    limits: tuple[LimitTier, ...] = ()
    """Rate limits, all checked together: `["60/minute", {rate: "1000/hour", by: [ip]}]`;
    a request refused by one tier consumes none."""
    max_parallel: Parallel | None = None
    """Requests in flight at once (`4`, or `{limit: 4, by: [user]}`); 429 beyond."""
    cors: Cors | None = None
    """This route's own CORS policy, instead of `security.cors` (`null` turns CORS off
    here); with `enforce: true`, requests from other origins are refused with 403."""
    response_headers: ResponseHeaders | None = None
    """Security headers for this route's answers, laid over `security.response_headers`
    field by field (a field set to null removes that header here)."""
    meter: Literal["none", "http", "llm"] = "http"
    """Usage records: `http` (the default: one per request: who, status, timings,
    bytes), `llm` (also the model, tokens and cost of OpenAI-compatible JSON and SSE
    answers), or `none` (no record)."""
    retry: bool = False
    """Let the upstream's `retries` repeat this route's non-idempotent requests too (say,
    a POST the upstream deduplicates)."""
    rewrite: Rewrite = Rewrite()
    """Map the upstream's own URLs in response headers (and, if asked, bodies) into the
    route's public prefix, for web apps served under a prefix."""
    websocket: WebSocket = WebSocket()
    """WebSocket connections on this route (relayed unless `websocket: false`): message
    size, idle and total timeouts, keep-alive pings and the origins allowed."""
    stream_usage: bool = False
    """With `meter: llm`: ask for the usage chunk of streamed completions by adding
    `stream_options.include_usage: true` to JSON requests that set `stream: true`
    (OpenAI-compatible upstreams send no usage in a stream unless asked)."""

    @model_validator(mode="after")
    def _check_stream_usage(self) -> Route:
        if self.stream_usage and self.meter != "llm":
            raise ValueError("stream_usage needs meter: llm")
        return self

    @field_validator("limits", mode="before")
    @classmethod
    def _limit_shorthand(cls, value: object) -> object:
        if isinstance(value, list | tuple):
            return [{"rate": item} if isinstance(item, str) else item for item in value]
        return value

    @field_validator("max_parallel", mode="before")
    @classmethod
    def _parallel_shorthand(cls, value: object) -> object:
        return {"limit": value} if isinstance(value, int) else value

    @field_validator("path")
    @classmethod
    def _check_path(cls, value: str) -> str:
        prefix = normalise_prefix(value)
        if prefix in RESERVED_PATHS:
            raise ValueError(f"{prefix} is answered by the gateway itself")
        for reserved in MANAGEMENT_PREFIXES:
            if prefix == reserved or prefix.startswith(reserved + "/"):
                raise ValueError(f"{prefix} is inside the management API ({reserved})")
        return prefix

    @field_validator("upstream_path")
    @classmethod
    def _check_upstream_path(cls, value: str) -> str:
        return normalise_prefix(value)

    @field_validator("methods")
    @classmethod
    def _check_methods(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("must list at least one method, or be left out")
        methods = tuple(dict.fromkeys(m.upper() for m in value))
        for method in methods:
            if not TOKEN.match(method):
                raise ValueError(f"{method!r} is not an HTTP method")
        return methods

    @field_validator("host")
    @classmethod
    def _check_host(cls, value: str | None) -> str | None:
        if value is None:
            return None
        host = value.lower()
        if not HOST.match(host):
            raise ValueError("must be a host name such as api.example.com or *.example.com")
        return host

    @field_validator("auth")
    @classmethod
    def _check_auth(cls, value: tuple[AuthKind, ...]) -> tuple[AuthKind, ...]:
        if not value:
            raise ValueError("must list at least one kind (use [none] for an open route)")
        if "none" in value and len(value) > 1:
            raise ValueError("'none' cannot be combined with other kinds")
        return tuple(dict.fromkeys(value))

    @field_validator("api_key_headers")
    @classmethod
    def _check_key_headers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for header in value:
            if not TOKEN.match(header):
                raise ValueError(f"{header!r} is not a valid header name")
        return value

    @field_validator("identity_headers")
    @classmethod
    def _check_identity_headers(
        cls, value: dict[str, IdentityField] | None
    ) -> dict[str, IdentityField] | None:
        for header in value or {}:
            if not TOKEN.match(header):
                raise ValueError(f"{header!r} is not a valid header name")
        return value

    @model_validator(mode="after")
    def _auth_fits_kinds(self) -> Route:
        open_route = self.auth == ("none",)
        for name in ("permissions", "api_key_headers", "identity_headers"):
            if open_route and getattr(self, name):
                raise ValueError(f"{name} needs a credential kind in auth")
        if self.scopes is not None and "api_key" not in self.auth:
            raise ValueError("scopes apply to client keys: add api_key to auth")
        if self.api_key_headers and "api_key" not in self.auth:
            raise ValueError("api_key_headers apply to client keys: add api_key to auth")
        return self

    @property
    def label(self) -> str:
        return self.name or self.path

    @property
    def required_scopes(self) -> tuple[str, ...]:
        if "api_key" not in self.auth:
            return ()
        return self.scopes if self.scopes is not None else ("proxy",)

    @property
    def forwarded_identity(self) -> dict[str, IdentityField]:
        if self.identity_headers is not None:
            return self.identity_headers
        return dict(PASS_IDENTITY_HEADERS) if "access_pass" in self.auth else {}
