"""Upstreams: where requests go, how long to wait, and which credential to add."""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import ByteSize, Field, field_validator

from ferryman.config.base import Model, header_name, normalise_prefix
from ferryman.config.resilience import Breaker, Retries

Provider = Literal["generic", "openai", "openrouter"]
KeyStrategy = Literal["round_robin", "least_used", "weighted", "random"]
UserKeys = Literal["exclusive", "prefer", "ignore"]
SharedAccess = Literal["granted", "everyone"]


class Timeouts(Model):
    """Seconds to wait on an upstream; each ends the request with 504."""

    connect: float = Field(default=10.0, gt=0)
    """Establishing the TCP (and TLS) connection."""
    read: float = Field(default=60.0, gt=0)
    """Between two reads of the response: the wait for headers and for each chunk."""
    total: float | None = Field(default=None, gt=0)
    """The whole exchange, body included; unset for long streams."""


class Pool(Model):
    """The pooled keep-alive connections to one upstream (per process)."""

    size: int = Field(default=100, ge=1, le=10_000)
    """Most connections open at once; further requests wait for one."""
    keepalive: float = Field(default=30.0, gt=0)
    """Seconds an idle pooled connection is kept."""
    acquire_timeout: float = Field(default=30.0, gt=0)
    """Seconds a request may wait for a free pooled connection (504 beyond)."""


class NoCredential(Model):
    """Forward without adding a credential."""

    kind: Literal["none"] = "none"


class PoolCredential(Model):
    """Take a key from the upstream's encrypted key pool, failing over between keys."""

    kind: Literal["pool"] = "pool"
    header: str = "Authorization"
    """Header the key is sent in (the client's own copy is never forwarded)."""
    prefix: str = "Bearer "
    """Put before the key in that header."""
    strategy: KeyStrategy = "round_robin"
    """How a healthy key is chosen: `round_robin`, `least_used` (fewest requests in
    flight), `weighted` (by each key's weight), `random`."""
    shared_access: SharedAccess = "granted"
    """Who may spend the operator's shared keys: `granted` (admins, and accounts an admin
    granted the permission `pool:<upstream>` or `pool:*`) or `everyone` (any caller the
    route admits, anonymous ones included). Callers' own keys are theirs either way."""
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
        return header_name(value)

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


class FixedCredential(Model):
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
        return header_name(value)


class BasicCredential(Model):
    """HTTP Basic credentials for the upstream (seed 002's app behind basic auth): the
    user and password each from an environment variable, encoded by the gateway."""

    kind: Literal["basic"] = "basic"
    user_env: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    password_env: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")


Credential = Annotated[
    NoCredential | PoolCredential | FixedCredential | BasicCredential,
    Field(discriminator="kind"),
]


class Upstream(Model):
    """A base URL and how to reach it."""

    url: str
    """`http(s)://host[:port][/path-prefix]`; requests never leave this prefix."""
    provider: Provider = "generic"
    credential: Credential = NoCredential()
    timeout: Timeouts = Timeouts()
    pool: Pool = Pool()
    tls_verify: bool = True
    """Verify the upstream's TLS certificate (turn off only on a private network)."""
    breaker: Breaker | None = None
    """A circuit breaker in front of the upstream (`true` for the defaults)."""
    retries: Retries = Retries()
    """Retries of failed requests (none by default). Pooled upstreams fail over between
    keys instead (`credential.max_attempts`)."""

    @field_validator("breaker", mode="before")
    @classmethod
    def _breaker_shorthand(cls, value: object) -> object:
        if value is True:
            return {}
        if value is False:
            return None
        return value

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
