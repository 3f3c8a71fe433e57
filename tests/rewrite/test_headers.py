"""The upstream's own URLs in response headers, made public."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from ferryman.config.settings import Settings
from ferryman.rewrite.headers import rewrite_headers
from ferryman.rewrite.urls import UrlMap
from tests.fakes.upstream import FakeUpstream
from tests.support import client_session, gateway_dict, serve_app

ROOT = UrlMap.of("/api/v1/proxy", True, "http://app.internal:8443", "")
BASE = UrlMap.of("/p", True, "https://app.internal/base", "/base")


@pytest.mark.parametrize(
    ("urls", "given", "public"),
    [
        (ROOT, "/login", "/api/v1/proxy/login"),
        (ROOT, "/", "/api/v1/proxy/"),
        (ROOT, "/?next=/x", "/api/v1/proxy/?next=/x"),
        (ROOT, "http://app.internal:8443/static/a.css", "/api/v1/proxy/static/a.css"),
        (ROOT, "HTTP://APP.INTERNAL:8443/x", "/api/v1/proxy/x"),
        (ROOT, "http://app.internal:8443", "/api/v1/proxy/"),
        (ROOT, "http://app.internal:8443?q=1", "/api/v1/proxy/?q=1"),
        (ROOT, "//app.internal:8443/x", "/api/v1/proxy/x"),
        (ROOT, "http://app.internal:84430/x", "http://app.internal:84430/x"),  # another port
        (ROOT, "https://elsewhere.example/x", "https://elsewhere.example/x"),
        (ROOT, "relative/page", "relative/page"),
        (BASE, "/base/login", "/p/login"),
        (BASE, "/base", "/p/"),
        (BASE, "/basement", "/basement"),  # not inside /base
        (BASE, "/other", "/other"),
        (BASE, "https://app.internal:443/base/x", "/p/x"),
        (BASE, "https://app.internal/base/x", "/p/x"),
        (BASE, "http://app.internal/base/x", "http://app.internal/base/x"),  # other scheme
    ],
)
def test_urls(urls: UrlMap, given: str, public: str) -> None:
    assert urls.url(given) == public


def test_cookies_keep_their_own_line_lose_their_domain_and_move_their_path() -> None:
    headers = [
        (b"set-cookie", b"sid=abc; Path=/; Domain=app.internal; HttpOnly; Secure"),
        (b"set-cookie", b"pref=1; path=/settings; Max-Age=60"),
        (b"set-cookie", b"plain=1"),
        (b"location", b"/login?next=%2F"),
        (b"refresh", b"5; url=/done"),
        (b"content-type", b"text/html"),
    ]
    assert rewrite_headers(headers, ROOT) == [
        (b"set-cookie", b"sid=abc; Path=/api/v1/proxy; HttpOnly; Secure"),
        (b"set-cookie", b"pref=1; Path=/api/v1/proxy/settings; Max-Age=60"),
        (b"set-cookie", b"plain=1"),
        (b"location", b"/api/v1/proxy/login?next=%2F"),
        (b"refresh", b"5; url=/api/v1/proxy/done"),
        (b"content-type", b"text/html"),
    ]
    # A path above the target prefix: the route's whole space.
    assert rewrite_headers([(b"set-cookie", b"x=1; Path=/")], BASE) == [
        (b"set-cookie", b"x=1; Path=/p")
    ]


async def test_through_the_gateway_on_by_default_when_the_prefix_is_stripped(
    settings: Settings, upstream: FakeUpstream
) -> None:
    spec = gateway_dict(upstream.url, path="/app", strip_prefix=True)
    spec["routes"].append(
        {"name": "off", "path": "/off", "upstream": "up", "strip_prefix": True,
         "rewrite": {"headers": False}}
    )  # fmt: skip
    async with serve_app(settings, spec) as gw, client_session() as http:
        async with http.get(gw.url + "/app/redirect?to=/login", allow_redirects=False) as r:
            assert r.headers["Location"] == "/app/login"
        absolute = quote(f"{upstream.url}/echo/x?y=1", safe="")
        async with http.get(gw.url + f"/app/redirect?to={absolute}", allow_redirects=False) as r:
            assert r.headers["Location"] == "/app/echo/x?y=1"
        async with http.get(gw.url + "/app/cookies") as r:
            assert r.headers.getall("Set-Cookie") == ["a=1; Path=/app", "b=2; Path=/app"]
        async with http.get(gw.url + "/off/redirect?to=/login", allow_redirects=False) as r:
            assert r.headers["Location"] == "/login"  # as the upstream said
    # A route that keeps its prefix on an upstream's root has nothing to map: off.
    assert UrlMap.of("/same", False, upstream.url, "").identity
