"""Rewriting an upstream's URLs into a route's public prefix (opt-in for bodies)."""

from __future__ import annotations

from typing import Literal

from pydantic import ByteSize, Field

from ferryman.config.base import Model

BodyKind = Literal["html", "css", "js", "json"]


class Rewrite(Model):
    """`rewrite: {headers: true, body: [html, css, js, json]}`."""

    headers: bool | None = None
    """`Location`, `Content-Location`, `Refresh` and `Set-Cookie` (`Path` mapped,
    `Domain` dropped) from the upstream's URL space into the route's. Unset: on for
    routes whose public paths differ from the upstream's (`strip_prefix`, an
    `upstream_path` or an upstream URL with a path)."""
    body: tuple[BodyKind, ...] = ()
    """Response bodies whose URLs are rewritten too, by content type."""
    runtime: bool = True
    """With `html`: put the gateway's small script first in each page's `<head>`, which
    maps the URLs the page builds while it runs (fetch, XHR, WebSocket, EventSource,
    history) into the prefix. Served by the gateway at `<prefix>/.ferryman/rewrite.js`."""
    max_body: ByteSize = Field(default=ByteSize(5 * 1024 * 1024), ge=0)
    """Bodies declared larger than this are relayed unchanged."""
