"""Chat widget relays (`relays:`): anonymous widget sessions bound to a page's origin,
and each message relayed to a workflow (n8n first) and streamed back as SSE.

    relays:
      - name: chat
        prefix: /api/v1             # session/create, session/validate, chat/message,
                                    # chat/stream, chat/history/{session_id}
        upstream: n8n               # its URL is the workflow's webhook
        allow_origins: ${ALLOWED_ORIGINS}
        workflow: {token: {secret_env: SESSION_SECRET_KEY}}
        limits: {session: ["60/minute", "1000/hour"], origin_daily: 5000}
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import ByteSize, Field, field_validator, model_validator

from ferryman.config.base import NAME, Model, header_name, normalise_prefix
from ferryman.config.limits import LimitTier
from ferryman.config.security import check_origins

ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class WidgetSession(Model):
    """The widget's session cookie: HttpOnly always; the session's token, never its id."""

    cookie: str = Field(default="chat_session_id", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    max_age: int = Field(default=86_400, ge=60, le=30 * 86_400)
    """Seconds a session lasts from its creation."""
    same_site: Literal["none", "lax", "strict"] = "none"
    """`none`: the widget runs on the customer's site and calls the gateway cross-site
    (the cookie is then always `Secure`); `lax`/`strict` when both share a site."""
    secure: bool = True
    """Only false for local HTTP testing (and only with `same_site` lax or strict)."""

    @model_validator(mode="after")
    def _none_needs_secure(self) -> WidgetSession:
        if self.same_site == "none" and not self.secure:
            raise ValueError("same_site: none needs secure: true (browsers drop it otherwise)")
        return self


class WorkflowToken(Model):
    """A short-lived JWT (HS256) the workflow can verify, naming the session, origin and
    expiry; n8n's webhook node checks it with its "JWT Auth" option."""

    secret_env: str = Field(pattern=ENV_NAME)
    """The environment variable with the signing secret (seed 004's SESSION_SECRET_KEY),
    kept apart from the gateway's own secret."""
    ttl: int = Field(default=30, ge=5, le=3600)
    header: str = "Authorization"
    scheme: str = "Bearer "
    issuer: str = "ferryman"

    @field_validator("header")
    @classmethod
    def _header(cls, value: str) -> str:
        return header_name(value)


class WorkflowSignature(Model):
    """A signed webhook: `t=<unix time>,v1=<hex HMAC-SHA256 of "t.body">` in `header`,
    for engines that check a signature instead of a JWT."""

    secret_env: str = Field(pattern=ENV_NAME)
    header: str = "X-Ferryman-Signature"

    @field_validator("header")
    @classmethod
    def _header(cls, value: str) -> str:
        return header_name(value)


class Workflow(Model):
    """How a message is sent to the workflow, and how long it may take."""

    engine: Literal["n8n", "template"] = "n8n"
    """`n8n`: the `@n8n/chat` webhook body (`action: sendMessage`, `sessionId`,
    `chatInput`, `metadata`); `template`: `template` with `{{session_id}}`,
    `{{message}}`, `{{origin}}`, `{{page_url}}` put into its string values."""
    template: dict[str, Any] | None = None
    token: WorkflowToken | None = None
    signature: WorkflowSignature | None = None
    heartbeat: float = Field(default=15.0, gt=0, le=300)
    """Seconds between SSE comments sent to the widget while the workflow thinks."""
    max_answer: ByteSize = ByteSize(1024 * 1024)
    """The most of one answer kept for history and for a non-streamed JSON answer."""

    @model_validator(mode="after")
    def _template_for_template(self) -> Workflow:
        if self.engine == "template" and not self.template:
            raise ValueError("engine: template needs a `template`")
        return self


class RelayLimits(Model):
    """Sliding-window limits per session, per client IP and per page origin, and a daily
    message budget per origin (every message is a paid workflow run)."""

    session: tuple[str, ...] = ("60/minute", "1000/hour")
    ip: tuple[str, ...] = ("120/minute",)
    origin: tuple[str, ...] = ()
    origin_daily: int | None = Field(default=None, ge=1)
    """Messages from one origin's pages in any 24 hours."""
    sessions_per_ip: str | None = "20/hour"
    """New sessions one address may create."""

    @field_validator("session", "ip", "origin", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return (value,) if isinstance(value, str) else value

    @field_validator("session", "ip", "origin")
    @classmethod
    def _rates(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for rate in value:
            LimitTier(rate=rate)
        return value


class History(Model):
    enabled: bool = True
    page_size: int = Field(default=50, ge=1, le=500)
    keep_days: int = Field(default=30, ge=1)
    """Messages of sessions that ended longer ago are pruned."""


class Relay(Model):
    """One chat widget relay."""

    name: str = Field(default="chat", pattern=NAME)
    prefix: str = "/api/v1"
    upstream: str
    """The upstream whose URL is the workflow's webhook (its credential, timeouts and
    breaker apply)."""
    allow_origins: tuple[str, ...]
    """Pages allowed to use the relay (`https://shop.example`); a comma-separated
    string is split, so `${ALLOWED_ORIGINS}` works as seed 004 writes it."""
    session: WidgetSession = WidgetSession()
    workflow: Workflow = Workflow()
    message_max: int = Field(default=4000, ge=1, le=1_000_000)
    """Longest message, in characters."""
    limits: RelayLimits = RelayLimits()
    history: History = History()

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        return normalise_prefix(value, what="prefix")

    @field_validator("allow_origins", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        items = [value] if isinstance(value, str) else value
        if isinstance(items, list | tuple) and all(isinstance(i, str) for i in items):
            return tuple(part for item in items for part in re.split(r"[,\s]+", item) if part)
        return value

    @field_validator("allow_origins")
    @classmethod
    def _origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("name at least one origin the widget's pages are served from")
        if "*" in value:
            raise ValueError("'*' would let any site spend the workflow; list the origins")
        return check_origins(value)

    def path(self, tail: str) -> str:
        return ("" if self.prefix == "/" else self.prefix) + tail
