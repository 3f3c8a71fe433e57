"""Response headers that carry the upstream's URLs: `Location`, `Content-Location`,
`Refresh` and `Set-Cookie` (its `Path` mapped into the route's prefix, its `Domain`
dropped so the cookie belongs to the gateway's host; each cookie stays a header of its
own)."""

from __future__ import annotations

import re

from ferryman.rewrite.urls import UrlMap
from ferryman.types import Headers

_URL_HEADERS = frozenset({b"location", b"content-location"})
_REFRESH_URL = re.compile(r"(?i)(url\s*=\s*)(['\"]?)([^'\"]*)\2")


def rewrite_headers(headers: Headers, urls: UrlMap) -> Headers:
    """The headers with the upstream's own URLs made public (a new list)."""
    out: Headers = []
    for name, value in headers:
        if name in _URL_HEADERS:
            value = urls.url(value.decode("latin-1")).encode("latin-1")
        elif name == b"set-cookie":
            value = _cookie(value.decode("latin-1"), urls).encode("latin-1")
        elif name == b"refresh":
            value = _refresh(value.decode("latin-1"), urls).encode("latin-1")
        out.append((name, value))
    return out


def _cookie(line: str, urls: UrlMap) -> str:
    parts = line.split(";")
    kept = [parts[0]]
    for attribute in parts[1:]:
        name, _, value = attribute.strip().partition("=")
        lowered = name.lower()
        if lowered == "domain":
            continue  # the cookie is the gateway host's now
        if lowered == "path":
            # A path outside the route's space (the upstream's root, above its target
            # prefix) becomes the route's whole space: the nearest the browser can send
            # the cookie back through this route.
            mapped = urls.path(value.strip() or "/")
            root = urls.public_prefix or "/"
            if mapped is None or mapped == urls.public_prefix + "/":
                mapped = root
            attribute = f" Path={mapped}"
        kept.append(" " + attribute.strip())
    # No Path: the browser takes the public URL's directory, which maps the upstream's
    # own default; nothing to add.
    return ";".join(kept)


def _refresh(value: str, urls: UrlMap) -> str:
    def replace(match: re.Match[str]) -> str:
        return f"{match.group(1)}{match.group(2)}{urls.url(match.group(3))}{match.group(2)}"

    return _REFRESH_URL.sub(replace, value, count=1)
