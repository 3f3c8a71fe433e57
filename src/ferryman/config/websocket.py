"""How a route relays WebSocket connections."""

from __future__ import annotations

from pydantic import ByteSize, Field, field_validator, model_validator

from ferryman.config.base import Model
from ferryman.config.security import check_origins

DEFAULT_MAX_MESSAGE = 4 * 1024 * 1024


class WebSocket(Model):
    """Every route relays WebSocket handshakes to its upstream unless `websocket: false`.

    A connection passes the route's guards once, at its handshake (auth, rate limits,
    `max_parallel`, whose slot it holds while it is open), then relays frames both ways
    until either side closes or a timeout below ends it.
    """

    enabled: bool = True
    max_message: ByteSize = Field(default=ByteSize(DEFAULT_MAX_MESSAGE), ge=1, le=1 << 30)
    """The largest message either side may send; beyond it the connection is closed
    with 1009 on both legs."""
    idle_timeout: float | None = Field(default=900.0, gt=0)
    """Seconds without a message either way (pings do not count) before the connection
    is closed with 1001; null for none."""
    max_duration: float | None = Field(default=None, gt=0)
    """Seconds a connection may last at most, however busy (1001 when reached)."""
    ping_interval: float | None = Field(default=20.0, gt=0)
    """Keep-alive pings to the upstream every so many seconds; an upstream that does
    not answer one is taken as gone (the client's leg is pinged by the server)."""
    allow_origins: tuple[str, ...] | None = None
    """Origins whose pages may open connections here (`https://app.example.com`, or `*`
    for any). Unset: the route's CORS origins if it has a CORS policy, else the page's
    own origin only (its `Origin` names the host it asked). A handshake without
    `Origin` (not from a browser) is always let through to the route's auth."""

    @model_validator(mode="before")
    @classmethod
    def _bool_shorthand(cls, value: object) -> object:
        return {"enabled": value} if isinstance(value, bool) else value

    @field_validator("allow_origins")
    @classmethod
    def _check_origins(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return None if value is None else check_origins(value)
