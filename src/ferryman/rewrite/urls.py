"""The map from an upstream's URL space to a route's public prefix.

A route sends `<prefix>/rest` to `<upstream origin><target prefix>/rest` (with
`strip_prefix`; without it the prefix stays in the path). An upstream that names its
own URLs (a redirect to `/login`, a cookie for `Path=/`, a link to
`http://app.internal:8443/static/x.css`) names them in its own space; the map turns
each into the URL the client must use. URLs outside that space (another host, a path
outside the target prefix) and relative ones (resolved by the client against the
public URL it already has) are left as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True, slots=True)
class UrlMap:
    public_prefix: str
    """What the public path starts with for the upstream's target prefix: the route's
    prefix when it strips it, else nothing."""
    target_prefix: str
    """The upstream's own path prefix the route sends to (`""` for its root)."""
    origins: tuple[str, ...]
    """The upstream's origins as it may write them (`http://app:8443`), lower case."""

    @classmethod
    def of(cls, route_prefix: str, strip: bool, upstream_url: str, target: str) -> UrlMap:
        parts = urlsplit(upstream_url)
        scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
        default = {"http": 80, "https": 443}.get(scheme)
        origins = {f"{scheme}://{host}" + (f":{parts.port}" if parts.port else "")}
        if parts.port in (None, default):
            origins |= {f"{scheme}://{host}", f"{scheme}://{host}:{default}"}
        public = route_prefix.rstrip("/") if strip else ""
        return cls(public, target.rstrip("/"), tuple(sorted(origins)))

    @property
    def identity(self) -> bool:
        """Nothing to map: the public path is the upstream's path."""
        return self.public_prefix == self.target_prefix

    def path(self, path: str) -> str | None:
        """The public path for a root-relative upstream path, or None when it lies
        outside the route's target prefix."""
        target = self.target_prefix
        if target:
            if path == target:
                rest = "/"
            elif path.startswith(target + "/") or path.startswith(target + "?"):
                rest = path[len(target) :]
            else:
                return None
        else:
            rest = path
        if rest.startswith("?"):
            rest = "/" + rest
        return self.public_prefix + rest

    def url(self, url: str) -> str:
        """Any URL the upstream wrote, made public where it is one of the upstream's own;
        otherwise unchanged."""
        if url.startswith("/"):
            if url.startswith("//"):
                return self._absolute(url, scheme_relative=True)
            mapped = self.path(url)
            return url if mapped is None else mapped
        if "://" in url[:12]:
            return self._absolute(url)
        return url

    def _absolute(self, url: str, scheme_relative: bool = False) -> str:
        lowered = url.lower()
        for origin in self.origins:
            candidate = origin.split(":", 1)[1] if scheme_relative else origin
            if lowered.startswith(candidate) and url[len(candidate) : len(candidate) + 1] in (
                "/",
                "?",
                "#",
                "",
            ):
                rest = url[len(candidate) :] or "/"
                if rest[0] in "?#":
                    rest = "/" + rest
                mapped = self.path(rest)
                return url if mapped is None else mapped
        return url
