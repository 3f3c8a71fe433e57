"""Security: the guards in front of every route (body size, hosts, CORS) and the headers
the gateway adds to what it answers."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import ByteSize, Field, field_validator, model_validator

from ferryman.config.base import HOST, Model


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


class Hsts(Model):
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


class Security(Model):
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
            if host != "*" and not HOST.match(host):
                raise ValueError(f"{host!r} is not a host name such as api.example.com")
        return hosts
