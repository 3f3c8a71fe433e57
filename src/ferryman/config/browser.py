"""How a browser carries an access pass on a route that takes them (seed 002)."""

from __future__ import annotations

from pydantic import Field, model_validator

from ferryman.config.base import Model

DEFAULT_COOKIE = "ferryman_pass"
_NAME = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$"


class BrowserPass(Model):
    """Besides `X-Access-Token`, a pass may come in the query (a page's first URL, a
    WebSocket's, which can carry no header) and, after that, in a cookie the gateway
    sets for the route's prefix; `browser_pass: false` accepts the header only."""

    query_param: str | None = Field(default="token", pattern=_NAME)
    """The query parameter that may carry a pass; it is removed before the request goes
    upstream. null: passes in the query are not looked at."""
    cookie: str | None = Field(default=DEFAULT_COOKIE, pattern=_NAME)
    """A browser that opens the route with a pass in the query is sent to the same URL
    without it, with this cookie (a handle bound to the pass, never the pass). null:
    no cookie; every request must carry the pass itself."""
    secure_cookie: bool = True
    """Mark the cookie `Secure` (sent over HTTPS only); false for plain-HTTP testing."""

    @model_validator(mode="before")
    @classmethod
    def _bool_shorthand(cls, value: object) -> object:
        if value is False:
            return {"query_param": None, "cookie": None}
        return {} if value is True else value
