"""Rewritten bodies kept by strong ETag: the same version is rewritten once."""

from __future__ import annotations

from ferryman.rewrite.body import CachedRewrite, for_response
from ferryman.rewrite.cache import RewriteCache, cache_key
from ferryman.rewrite.urls import UrlMap

URLS = UrlMap.of("/p", True, "http://app.internal", "")
PAGE = b'<html><head></head><body><a href="/x">x</a>\n' + b"<p>filler</p>\n" * 2000 + b"</html>\n"


def serve(cache: RewriteCache, etag: bytes | None, resource: str = "/page") -> bytes:
    headers = [(b"content-type", b"text/html")]
    if etag is not None:
        headers.append((b"etag", etag))
    rewriter, _ = for_response(
        URLS, frozenset({"html"}), 1 << 20, 200, headers, True, cache, resource
    )
    assert rewriter is not None
    chunks = [PAGE[i : i + 5000] for i in range(0, len(PAGE), 5000)]
    return b"".join(rewriter.feed(c) for c in chunks) + rewriter.end()


def test_the_same_version_is_rewritten_once_and_served_the_same() -> None:
    cache = RewriteCache()
    first = serve(cache, b'"v1"')
    assert b'href="/p/x"' in first and cache.hits == 0 and cache.size == len(first)
    assert serve(cache, b'"v1"') == first and cache.hits == 1
    assert serve(cache, b'"v2"') == first and cache.hits == 1  # another version: rewritten
    assert serve(cache, b'"v1"', "/other") == first and cache.hits == 1  # another resource


def test_weak_missing_or_private_validators_are_never_kept() -> None:
    assert cache_key([(b"etag", b'W/"v1"')]) is None
    assert cache_key([]) is None
    assert cache_key([(b"etag", b'"v1"'), (b"cache-control", b"private, max-age=60")]) is None
    assert cache_key([(b"etag", b'"v1"'), (b"cache-control", b"no-store")]) is None
    assert cache_key([(b"etag", b'"v1"'), (b"cache-control", b"max-age=60")]) == b'"v1"'
    cache = RewriteCache()
    serve(cache, b'W/"v1"')
    serve(cache, None)
    assert cache.size == 0


def test_the_cache_keeps_to_its_capacity_dropping_the_least_recently_used() -> None:
    cache = RewriteCache(capacity=10 * len(PAGE))
    for n in range(12):
        serve(cache, f'"v{n}"'.encode())
    assert cache.size <= cache.capacity
    assert serve(cache, b'"v11"') and cache.hits == 1  # the newest is still there
    serve(cache, b'"v0"')
    assert cache.hits == 1  # the oldest went


def test_a_body_over_the_routes_limit_is_not_kept() -> None:
    cache = RewriteCache()
    headers = [(b"content-type", b"text/html"), (b"etag", b'"big"')]
    rewriter, _ = for_response(URLS, frozenset({"html"}), 1000, 200, headers, False, cache, "/b")
    assert isinstance(rewriter, CachedRewrite)
    rewriter.feed(PAGE)
    rewriter.end()
    assert cache.size == 0
