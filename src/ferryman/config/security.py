"""Security: the guards in front of every route (body size, hosts, CORS) and the headers
the gateway adds to what it answers."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import ByteSize, Field, field_validator, model_validator

from ferryman.config.base import HOST, Model


def check_origins(value: tuple[str, ...]) -> tuple[str, ...]:
    """Exact origins (`https://app.example.com`) or `*`, for every list of origins."""
    for origin in value:
        if origin == "*":
            continue
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path:
            raise ValueError(f"{origin!r} is not an origin like https://app.example.com")
    return value


class Cors(Model):
    """Cross-origin requests from browsers; only the listed origins are answered."""

    allow_origins: tuple[str, ...]
    """Exact origins (`https://app.example.com`), or `*` for any origin without credentials."""
    allow_methods: tuple[str, ...] = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
    allow_headers: tuple[str, ...] = ("*",)
    """Request headers a page may send; `*` allows whatever the preflight asks for."""
    expose_headers: tuple[str, ...] = ("X-Request-ID",)
    allow_credentials: bool = False
    max_age: int = Field(default=600, ge=0)
    enforce: bool = False
    """Refuse (`403 origin_not_allowed`) a request whose `Origin` is not allowed, instead
    of forwarding it without CORS headers (which stops a browser from reading the answer
    but not the request from having its effect)."""

    @field_validator("allow_origins")
    @classmethod
    def _check_origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return check_origins(value)

    @model_validator(mode="after")
    def _no_wildcard_with_credentials(self) -> Cors:
        if self.allow_credentials and "*" in self.allow_origins:
            raise ValueError("allow_origins '*' cannot be used with allow_credentials")
        return self


class Hsts(Model):
    """`Strict-Transport-Security`."""

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


ReferrerPolicy = Literal[
    "no-referrer",
    "no-referrer-when-downgrade",
    "origin",
    "origin-when-cross-origin",
    "same-origin",
    "strict-origin",
    "strict-origin-when-cross-origin",
    "unsafe-url",
]


class ResponseHeaders(Model):
    """Security headers added to proxied responses; each replaces the upstream's own
    header of that name. Unset fields add nothing."""

    hsts: Hsts | None = None
    """`Strict-Transport-Security`. Browsers heed it only over HTTPS: set it where TLS is
    terminated in front of Ferryman."""
    content_type_options: Literal["nosniff"] | None = None
    """`X-Content-Type-Options: nosniff`: no guessing a script out of a text answer."""
    frame_options: Literal["DENY", "SAMEORIGIN"] | None = None
    """`X-Frame-Options`: whether other sites may frame the answer."""
    referrer_policy: ReferrerPolicy | None = None
    """`Referrer-Policy`, e.g. `strict-origin-when-cross-origin`."""
    content_security_policy: str | None = None
    """`Content-Security-Policy`, as given."""

    @field_validator("content_security_policy")
    @classmethod
    def _printable(cls, value: str | None) -> str | None:
        if value is not None and (not value.isprintable() or not value.isascii()):
            raise ValueError("must be printable ASCII on one line")
        return value

    def over(self, base: ResponseHeaders) -> ResponseHeaders:
        """These headers laid over `base`, field by field: a field set here (even to
        null, which removes it) wins."""
        return base.model_copy(update={name: getattr(self, name) for name in self.model_fields_set})

    def pairs(self) -> tuple[tuple[bytes, bytes], ...]:
        """The headers, as the proxy sends them."""
        out: list[tuple[bytes, bytes]] = []
        if self.hsts is not None:
            out.append((b"strict-transport-security", self.hsts.header_value.encode()))
        if self.content_type_options is not None:
            out.append((b"x-content-type-options", self.content_type_options.encode()))
        if self.frame_options is not None:
            out.append((b"x-frame-options", self.frame_options.encode()))
        if self.referrer_policy is not None:
            out.append((b"referrer-policy", self.referrer_policy.encode()))
        if self.content_security_policy is not None:
            out.append((b"content-security-policy", self.content_security_policy.encode()))
        return tuple(out)


class RequestBody(Model):
    """How a request's body is taken from the client before it goes upstream."""

    buffer: ByteSize = ByteSize(1024 * 1024)
    """A body up to this size is read whole before an upstream connection is taken (a
    client that sends slowly holds no connection to the upstream); a larger one streams
    through as it arrives."""
    timeout: float = Field(default=30.0, gt=0, le=3600)
    """Seconds a buffered body may take in all (408 beyond)."""
    idle_timeout: float = Field(default=10.0, gt=0, le=3600)
    """Seconds between two pieces of any body, buffered or streamed (408 beyond)."""

    def over(self, base: RequestBody) -> RequestBody:
        """These settings laid over `base`, field by field."""
        return base.model_copy(update={name: getattr(self, name) for name in self.model_fields_set})


class Security(Model):
    """Guards in front of every route."""

    max_body_size: ByteSize = ByteSize(10 * 1024 * 1024)
    """Largest request body accepted (413 beyond); `10MiB`, `512KB` or bytes."""
    request_body: RequestBody = RequestBody()
    """Buffering and timeouts of request bodies (a route's own are laid over these)."""
    trusted_hosts: tuple[str, ...] = ("*",)
    """Host headers accepted (`api.example.com`, `*.example.com`); `*` accepts any."""
    cors: Cors | None = None
    """CORS for the management API and for every route without a `cors` of its own."""
    hsts: Hsts | None = None
    """`Strict-Transport-Security` on gateway-made responses (errors, health, the API)."""
    frame_options: Literal["DENY", "SAMEORIGIN"] = "DENY"
    content_security_policy: str = "default-src 'none'; frame-ancestors 'none'"
    """CSP sent on gateway-made responses (errors, health, metrics)."""
    response_headers: ResponseHeaders = ResponseHeaders()
    """Security headers added to every proxied response (a route's own
    `response_headers` are laid over these, field by field)."""

    @field_validator("trusted_hosts")
    @classmethod
    def _check_hosts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        hosts = tuple(h.lower() for h in value)
        for host in hosts:
            if host != "*" and not HOST.match(host):
                raise ValueError(f"{host!r} is not a host name such as api.example.com")
        return hosts
