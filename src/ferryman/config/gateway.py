"""The gateway file: upstreams, routes and the guards in front of them.

Every model is frozen and refuses unknown fields, so a typo in the YAML is an error with
the path of the field rather than a setting silently ignored.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ByteSize,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from ferryman.limits.allowance import Budget, check_period
from ferryman.limits.rates import Rate, parse_rate

AuthKind = Literal["none", "api_key", "access_pass", "jwt", "session"]
IdentityField = Literal["user_id", "username", "role", "credential_id", "kind"]
Provider = Literal["generic", "openai", "openrouter"]
KeyStrategy = Literal["round_robin", "least_used", "weighted", "random"]
UserKeys = Literal["exclusive", "prefer", "ignore"]
LimitKey = Literal["ip", "user", "credential", "route", "session", "origin"]
Algorithm = Literal["gcra", "sliding_window"]

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 token
_HOST = re.compile(r"^(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")

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


def _header_name(value: str) -> str:
    if not _TOKEN.match(value):
        raise ValueError("must be a valid HTTP header name")
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def normalise_prefix(value: str, *, what: str = "") -> str:
    """Check a configured path prefix and drop a trailing slash (`/v1/` → `/v1`)."""
    subject = f"{what} " if what else ""
    if not value.startswith("/"):
        raise ValueError(f"{subject}must start with '/'")
    if any(c in value for c in "?#%\\") or any(ord(c) < 0x21 or ord(c) == 0x7F for c in value):
        raise ValueError(f"{subject}must be a plain path: no '?', '#', '%', '\\' or spaces")
    if "//" in value:
        raise ValueError(f"{subject}must not contain '//'")
    if any(segment in (".", "..") for segment in value.split("/")):
        raise ValueError(f"{subject}must not contain '.' or '..' segments")
    return value.rstrip("/") or "/"


class Timeouts(_Model):
    """Seconds to wait on an upstream; each ends the request with 504."""

    connect: float = Field(default=10.0, gt=0)
    """Establishing the TCP (and TLS) connection."""
    read: float = Field(default=60.0, gt=0)
    """Between two reads of the response: the wait for headers and for each chunk."""
    total: float | None = Field(default=None, gt=0)
    """The whole exchange, body included; unset for long streams."""


class Pool(_Model):
    """The pooled keep-alive connections to one upstream (per process)."""

    size: int = Field(default=100, ge=1, le=10_000)
    """Most connections open at once; further requests wait for one."""
    keepalive: float = Field(default=30.0, gt=0)
    """Seconds an idle pooled connection is kept."""
    acquire_timeout: float = Field(default=30.0, gt=0)
    """Seconds a request may wait for a free pooled connection (504 beyond)."""


class NoCredential(_Model):
    """Forward without adding a credential."""

    kind: Literal["none"] = "none"


class PoolCredential(_Model):
    """Take a key from the upstream's encrypted key pool, failing over between keys."""

    kind: Literal["pool"] = "pool"
    header: str = "Authorization"
    """Header the key is sent in (the client's own copy is never forwarded)."""
    prefix: str = "Bearer "
    """Put before the key in that header."""
    strategy: KeyStrategy = "round_robin"
    """How a healthy key is chosen: `round_robin`, `least_used` (fewest requests in
    flight), `weighted` (by each key's weight), `random`."""
    user_keys: UserKeys = "exclusive"
    """Callers who added their own keys for this upstream: `exclusive` uses only theirs,
    `prefer` uses theirs while one is healthy and then the shared pool, `ignore` always
    uses the shared pool."""
    max_attempts: int = Field(default=3, ge=1, le=20)
    """Keys tried for one request before giving up (each failure before the first
    response byte moves on to the next healthy key)."""
    replay_limit: ByteSize = ByteSize(1024 * 1024)
    """Request bodies up to this size are kept so a failed attempt can be replayed on the
    next key; a larger body streams through once, without failover."""
    cooldown: float = Field(default=60.0, gt=0)
    """Seconds a key rests after a 429 that carries no `Retry-After`."""
    max_cooldown: float = Field(default=3600.0, gt=0)
    """Longest rest a `Retry-After` can impose."""
    failure_threshold: int = Field(default=3, ge=1)
    """Consecutive 5xx answers or timeouts that open a key's circuit breaker."""
    backoff: float = Field(default=5.0, gt=0)
    """First rest of an opened breaker; doubled each time it opens again."""
    max_backoff: float = Field(default=300.0, gt=0)
    invalid_statuses: tuple[int, ...] = (401, 403)
    """Upstream statuses that mark a key invalid (out until a probe or an operator
    restores it)."""
    probe_interval: float = Field(default=300.0, ge=0)
    """Seconds between health probes of each key; 0 turns probing off."""
    probe_path: str | None = None
    """Path probed with the key (`/key` for OpenRouter, required for other providers
    when probing is wanted)."""

    @field_validator("header")
    @classmethod
    def _header_is_token(cls, value: str) -> str:
        return _header_name(value)

    @field_validator("invalid_statuses")
    @classmethod
    def _client_errors(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        for status in value:
            if not 400 <= status <= 499 or status in (402, 429):
                raise ValueError(f"{status} is not a 4xx status that can mean a bad key")
        return value

    @field_validator("probe_path")
    @classmethod
    def _check_probe_path(cls, value: str | None) -> str | None:
        return None if value is None else normalise_prefix(value, what="probe_path")


class FixedCredential(_Model):
    """One fixed secret, read from an environment variable, sent in a header."""

    kind: Literal["fixed"] = "fixed"
    header: str = "Authorization"
    value_env: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """The environment variable holding the secret."""
    prefix: str = ""
    """Put before the secret, e.g. `"Bearer "`."""

    @field_validator("header")
    @classmethod
    def _header_is_token(cls, value: str) -> str:
        return _header_name(value)


Credential = Annotated[NoCredential | PoolCredential | FixedCredential, Field(discriminator="kind")]


class Upstream(_Model):
    """A base URL and how to reach it."""

    url: str
    """`http(s)://host[:port][/path-prefix]`; requests never leave this prefix."""
    provider: Provider = "generic"
    credential: Credential = NoCredential()
    timeout: Timeouts = Timeouts()
    pool: Pool = Pool()
    tls_verify: bool = True
    """Verify the upstream's TLS certificate (turn off only on a private network)."""

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https"):
            raise ValueError("must start with http:// or https://")
        if not parts.hostname:
            raise ValueError("must name a host")
        if parts.username or parts.password:
            raise ValueError("must not carry credentials; use `credential:` instead")
        if parts.query or parts.fragment:
            raise ValueError("must not have a query string or fragment")
        try:
            parts.port  # noqa: B018 - raises on an invalid port
        except ValueError as exc:
            raise ValueError(f"has an invalid port: {exc}") from None
        if parts.path:
            prefix = normalise_prefix(parts.path, what="the URL's path")
            return f"{parts.scheme}://{parts.netloc}{'' if prefix == '/' else prefix}"
        return f"{parts.scheme}://{parts.netloc}"

    @field_validator("credential", mode="before")
    @classmethod
    def _credential_shorthand(cls, value: object) -> object:
        if isinstance(value, str):
            if value not in ("none", "pool"):
                raise ValueError("must be 'none', 'pool' or {header, value_env}")
            return {"kind": value}
        if isinstance(value, dict) and "kind" not in value:
            return {"kind": "fixed", **value}
        return value


class LimitTier(_Model):
    """One rate limit of a route: `{rate: "60/minute", by: [credential]}`."""

    rate: str
    """`N/unit` (second, minute, hour, day; `N/M units` too), optionally `burst B`."""
    by: tuple[LimitKey, ...] | None = None
    """What the count is kept per; by default the caller: its credential on routes
    that require one, its IP address on open routes."""
    algorithm: Algorithm = "gcra"
    """`gcra` (token bucket: the burst at once, then the sustained rate) or
    `sliding_window` (at most N in any window of the period)."""

    @field_validator("rate")
    @classmethod
    def _check_rate(cls, value: str) -> str:
        parse_rate(value)
        return value

    @field_validator("by")
    @classmethod
    def _check_by(cls, value: tuple[LimitKey, ...] | None) -> tuple[LimitKey, ...] | None:
        if value is not None and not value:
            raise ValueError("must name at least one of ip, user, credential, route, ...")
        return None if value is None else tuple(dict.fromkeys(value))

    @property
    def parsed(self) -> Rate:
        return parse_rate(self.rate)


class Parallel(_Model):
    """At most `limit` requests in flight at once, per `by` (default: the caller)."""

    limit: int = Field(ge=1)
    by: tuple[LimitKey, ...] | None = None


class Route(_Model):
    """Matches requests and says where and under which policy they go."""

    name: str | None = Field(default=None, pattern=_NAME)
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
    limits: tuple[LimitTier, ...] = ()
    """Rate limits, all checked together: `["60/minute", {rate: "1000/hour", by: [ip]}]`;
    a request refused by one tier consumes none."""
    max_parallel: Parallel | None = None
    """Requests in flight at once (`4`, or `{limit: 4, by: [user]}`); 429 beyond."""
    meter: Literal["none", "http", "llm"] = "none"
    """Usage records: `http` (one per request: who, status, timings, bytes), `llm` (also
    the model, tokens and cost of OpenAI-compatible JSON and SSE answers), or `none`
    (the default while the batched writer is being made cheaper: see the README)."""
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
            if not _TOKEN.match(method):
                raise ValueError(f"{method!r} is not an HTTP method")
        return methods

    @field_validator("host")
    @classmethod
    def _check_host(cls, value: str | None) -> str | None:
        if value is None:
            return None
        host = value.lower()
        if not _HOST.match(host):
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
            if not _TOKEN.match(header):
                raise ValueError(f"{header!r} is not a valid header name")
        return value

    @field_validator("identity_headers")
    @classmethod
    def _check_identity_headers(
        cls, value: dict[str, IdentityField] | None
    ) -> dict[str, IdentityField] | None:
        for header in value or {}:
            if not _TOKEN.match(header):
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


class Cors(_Model):
    """Cross-origin requests from browsers; only the listed origins are answered."""

    allow_origins: tuple[str, ...]
    """Exact origins (`https://app.example.com`), or `*` for any origin without credentials."""
    allow_methods: tuple[str, ...] = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
    allow_headers: tuple[str, ...] = ("*",)
    """Request headers a page may send; `*` allows whatever the preflight asks for."""
    expose_headers: tuple[str, ...] = ("X-Request-ID",)
    allow_credentials: bool = False
    max_age: int = Field(default=600, ge=0)

    @field_validator("allow_origins")
    @classmethod
    def _check_origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for origin in value:
            if origin == "*":
                continue
            parts = urlsplit(origin)
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.path:
                raise ValueError(f"{origin!r} is not an origin like https://app.example.com")
        return value

    @model_validator(mode="after")
    def _no_wildcard_with_credentials(self) -> Cors:
        if self.allow_credentials and "*" in self.allow_origins:
            raise ValueError("allow_origins '*' cannot be used with allow_credentials")
        return self


class Hsts(_Model):
    """`Strict-Transport-Security` on gateway-made responses."""

    max_age: int = Field(default=31_536_000, ge=0)
    include_subdomains: bool = True
    preload: bool = False

    @property
    def header_value(self) -> str:
        value = f"max-age={self.max_age}"
        if self.include_subdomains:
            value += "; includeSubDomains"
        if self.preload:
            value += "; preload"
        return value


class Security(_Model):
    """Guards in front of every route."""

    max_body_size: ByteSize = ByteSize(10 * 1024 * 1024)
    """Largest request body accepted (413 beyond); `10MiB`, `512KB` or bytes."""
    trusted_hosts: tuple[str, ...] = ("*",)
    """Host headers accepted (`api.example.com`, `*.example.com`); `*` accepts any."""
    cors: Cors | None = None
    hsts: Hsts | None = None
    frame_options: Literal["DENY", "SAMEORIGIN"] = "DENY"
    content_security_policy: str = "default-src 'none'; frame-ancestors 'none'"
    """CSP sent on gateway-made responses (errors, health, metrics)."""

    @field_validator("trusted_hosts")
    @classmethod
    def _check_hosts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        hosts = tuple(h.lower() for h in value)
        for host in hosts:
            if host != "*" and not _HOST.match(host):
                raise ValueError(f"{host!r} is not a host name such as api.example.com")
        return hosts


class Limiter(_Model):
    """Where rate limits are counted."""

    backend: Literal["memory", "redis"] = "memory"
    """`memory` (this process) or `redis` (shared by every instance; needs
    FERRYMAN_REDIS_URL); one atomic script call per request checks every tier."""
    on_error: Literal["fail_open", "fail_closed"] = "fail_open"
    """Redis unreachable or slower than `timeout`: count in this process instead
    (`fail_open`, logged once a minute) or refuse with 503 (`fail_closed`)."""
    timeout: float = Field(default=0.05, gt=0, le=5)
    """Seconds to wait for Redis."""
    defaults: dict[Literal["api_key", "access_pass", "jwt", "session"], str] = Field(
        default_factory=dict
    )
    """A rate every credential of a kind gets across all routes, e.g.
    `{api_key: "600/minute"}`; a key's own `rpm` (management API) replaces it."""
    token_defaults: dict[
        Literal["api_key", "access_pass", "jwt", "session"], Annotated[int, Field(ge=1)]
    ] = Field(default_factory=dict)
    """Tokens a minute every credential of a kind may use on LLM routes (`meter: llm`),
    e.g. `{api_key: 100000}`; a key's own `tpm` replaces it."""

    @field_validator("defaults")
    @classmethod
    def _check_defaults(cls, value: dict[str, str]) -> dict[str, str]:
        for rate in value.values():
            parse_rate(rate)
        return value


class BudgetRule(_Model):
    """A spending limit: `{amount: 5, period: day}`."""

    amount: Annotated[float, Field(gt=0)]
    """In the price table's currency."""
    period: str
    """`day`, `week` (from Monday), `month` (calendar) or `N days` (rolling); UTC days."""

    @field_validator("period")
    @classmethod
    def _check_period(cls, value: str) -> str:
        return check_period(value)

    @property
    def budget(self) -> Budget:
        return Budget(self.amount, self.period)


class Budgets(_Model):
    """Spending limits on LLM routes (`meter: llm`), summed from metered cost."""

    defaults: dict[Literal["api_key", "access_pass", "jwt", "session"], BudgetRule] = Field(
        default_factory=dict
    )
    """A budget every credential of a kind gets, e.g. `{api_key: {amount: 5, period:
    day}}`; a key's own budget (management API) replaces it."""
    alerts: tuple[Annotated[int, Field(ge=1, le=1000)], ...] = (50, 80, 100)
    """Percentages of a budget at which an alert goes out (once per budget and period)."""
    webhook: str | None = None
    """An http(s) URL that receives each alert as a JSON POST."""
    refresh: Annotated[float, Field(ge=0.5, le=3600)] = 10.0
    """Seconds between re-reading spend from the database (what other instances spent)."""

    @field_validator("alerts")
    @classmethod
    def _sort_alerts(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(sorted(set(value)))

    @field_validator("webhook")
    @classmethod
    def _check_webhook(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"{value!r} is not an http(s) URL")
        return value


class Gateway(_Model):
    """The whole gateway file."""

    upstreams: dict[str, Upstream]
    routes: tuple[Route, ...]
    security: Security = Security()
    limiter: Limiter = Limiter()
    budgets: Budgets = Budgets()

    @field_validator("upstreams")
    @classmethod
    def _check_upstream_names(cls, value: dict[str, Upstream]) -> dict[str, Upstream]:
        for name in value:
            if not re.match(_NAME, name):
                raise ValueError(f"upstream name {name!r} must match {_NAME}")
        return value

    @model_validator(mode="after")
    def _check_references(self) -> Gateway:
        # Raised as ValueError, the loader rewrites these into field paths.
        problems: list[str] = []
        seen_names: dict[str, int] = {}
        seen_matches: dict[tuple[str | None, str, tuple[str, ...] | None], int] = {}
        for index, route in enumerate(self.routes):
            if route.upstream not in self.upstreams:
                known = ", ".join(sorted(self.upstreams)) or "none defined"
                problems.append(
                    f"routes[{index}].upstream: unknown upstream {route.upstream!r} "
                    f"(known: {known})"
                )
            if route.label in seen_names:
                problems.append(
                    f"routes[{index}].name: {route.label!r} is already used by "
                    f"routes[{seen_names[route.label]}]"
                )
            seen_names.setdefault(route.label, index)
            match = (route.host, route.path, route.methods)
            if match in seen_matches:
                problems.append(
                    f"routes[{index}].path: {route.path!r} is matched the same way by "
                    f"routes[{seen_matches[match]}]"
                )
            seen_matches.setdefault(match, index)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def warnings(self) -> list[str]:
        """Things that are valid but probably not what the operator meant."""
        notes = []
        for index, route in enumerate(self.routes):
            upstream = self.upstreams.get(route.upstream)
            if route.auth == ("none",) and upstream and upstream.credential.kind != "none":
                notes.append(
                    f"routes[{index}] ({route.label}): open to anyone (auth: [none]) while "
                    f"upstream {route.upstream!r} adds a {upstream.credential.kind} credential"
                )
        return notes
