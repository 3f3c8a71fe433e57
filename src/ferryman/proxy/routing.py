"""The precompiled route table.

A request goes to the route with the longest path prefix that matches it on whole
segments; at the same prefix a route bound to the request's host beats one bound to
none. If that prefix's routes do not allow the method the answer is 405: a shorter
prefix is never tried instead, so what a path reaches never depends on its method.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from ferryman.config.gateway import Gateway
from ferryman.config.routes import Route
from ferryman.config.security import Cors, ResponseHeaders, Security
from ferryman.errors import MethodNotAllowed, NotFound
from ferryman.proxy.client import BodyRules
from ferryman.proxy.paths import segment_count
from ferryman.proxy.watchdog import ticks
from ferryman.rewrite.body import RUNTIME_PATH
from ferryman.rewrite.urls import UrlMap


@dataclass(frozen=True, slots=True)
class CompiledRoute:
    """A route with everything the hot path needs worked out in advance."""

    name: str
    prefix: str
    methods: frozenset[str] | None
    host: str | None
    host_suffix: str | None
    upstream: str
    strip_segments: int
    target_prefix: str
    """The upstream URL's path prefix and the route's `upstream_path`, joined."""
    auth: tuple[str, ...]
    max_body_size: int
    spec: Route
    cors: Cors | None
    """The CORS policy in force here: the route's own, else `security.cors`."""
    added_headers: tuple[tuple[bytes, bytes], ...]
    """Security headers put on every proxied answer, replacing the upstream's copies."""
    replaced_headers: frozenset[bytes]
    body: BodyRules
    """How request bodies are taken: limit, buffer and timeouts."""
    urls: UrlMap | None = None
    """How the upstream's own URLs become public ones (None: they are the same)."""
    rewrite_headers: bool = False
    rewrite_body: frozenset[str] = frozenset()
    """Kinds of body (`html`, `css`, `js`, `json`) whose URLs are rewritten."""
    runtime_path: str | None = None
    """Where the gateway serves its runtime script for this route's pages (or None)."""

    def matches_host(self, host: str) -> bool:
        if self.host is None:
            return True
        if self.host_suffix is not None:
            return host.endswith(self.host_suffix) and len(host) > len(self.host_suffix)
        return host == self.host


def compile_route(
    route: Route, default_max_body: int, upstream_url: str, security: Security | None = None
) -> CompiledRoute:
    security = security or Security()
    host_suffix = route.host[1:] if route.host and route.host.startswith("*.") else None
    upstream_prefix = urlsplit(upstream_url).path.rstrip("/")
    extra = "" if route.upstream_path == "/" else route.upstream_path
    given = route.model_fields_set
    cors = route.cors if "cors" in given else security.cors
    headers = security.response_headers
    if route.response_headers is not None:
        headers = route.response_headers.over(headers)
    elif "response_headers" in given:  # `response_headers: null`: none on this route
        headers = ResponseHeaders()
    added = headers.pairs()
    max_body = int(route.max_body_size or default_max_body)
    taking = security.request_body
    if route.request_body is not None:
        taking = route.request_body.over(taking)
    body = BodyRules(
        limit=max_body,
        buffer=min(int(taking.buffer), max_body),
        total_ticks=ticks(taking.timeout),
        idle_ticks=ticks(taking.idle_timeout),
    )
    urls = UrlMap.of(route.path, route.strip_prefix, upstream_url, upstream_prefix + extra)
    rewrite_headers = route.rewrite.headers
    if rewrite_headers is None:
        rewrite_headers = not urls.identity
    return CompiledRoute(
        name=route.label,
        prefix=route.path,
        methods=frozenset(route.methods) if route.methods else None,
        host=route.host,
        host_suffix=host_suffix,
        upstream=route.upstream,
        strip_segments=segment_count(route.path) if route.strip_prefix else 0,
        target_prefix=upstream_prefix + extra,
        auth=route.auth,
        max_body_size=max_body,
        spec=route,
        cors=cors,
        added_headers=added,
        replaced_headers=frozenset(name for name, _ in added),
        body=body,
        urls=None if urls.identity else urls,
        rewrite_headers=rewrite_headers and not urls.identity,
        rewrite_body=frozenset(route.rewrite.body) if not urls.identity else frozenset(),
        runtime_path=(
            route.path.rstrip("/") + RUNTIME_PATH
            if "html" in route.rewrite.body and route.rewrite.runtime and not urls.identity
            else None
        ),
    )


class RouteTable:
    """Finds the route for a method, host and decoded path."""

    def __init__(self, routes: list[CompiledRoute]) -> None:
        by_prefix: dict[str, list[CompiledRoute]] = {}
        for route in routes:
            by_prefix.setdefault(route.prefix, []).append(route)
        # Host-bound routes are tried before host-less ones at the same prefix.
        self._by_prefix = {
            prefix: tuple(sorted(group, key=lambda r: r.host is None))
            for prefix, group in by_prefix.items()
        }
        self.routes = tuple(routes)

    @classmethod
    def from_gateway(cls, gateway: Gateway) -> RouteTable:
        default = int(gateway.security.max_body_size)
        return cls(
            [
                compile_route(
                    route, default, gateway.upstreams[route.upstream].url, gateway.security
                )
                for route in gateway.routes
            ]
        )

    def match(self, method: str, host: str, path: str) -> CompiledRoute:
        """The route for this request, or NotFound / MethodNotAllowed."""
        by_prefix = self._by_prefix
        candidate = path
        while True:
            group = by_prefix.get(candidate)
            if group is not None:
                found = self._pick(group, method, host)
                if found is not None:
                    return found
            if candidate == "/":
                raise NotFound(f"no route for {path}", code="no_route")
            cut = candidate.rfind("/")
            candidate = candidate[:cut] or "/"

    @staticmethod
    def _pick(group: tuple[CompiledRoute, ...], method: str, host: str) -> CompiledRoute | None:
        allowed: list[str] = []
        host_matched = False
        for route in group:
            if not route.matches_host(host):
                continue
            if host_matched and route.host is None:
                break  # a host-bound route owns this prefix for this host
            host_matched = host_matched or route.host is not None
            if route.methods is None or method in route.methods:
                return route
            allowed.extend(route.methods)
        if allowed:
            allow = tuple(sorted(set(allowed)))
            raise MethodNotAllowed(f"{method} is not allowed here", allow=allow)
        return None
