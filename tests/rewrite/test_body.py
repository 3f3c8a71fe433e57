"""Body rewriting on a corpus: each kind, each encoding, charsets, URLs split across
chunks, a large page streamed through, JSON with nested URLs."""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import AsyncIterator

import brotli
import pytest
from aiohttp import web

from ferryman.config.settings import Settings
from ferryman.rewrite.body import LOOK_BEHIND, for_response
from ferryman.rewrite.urls import UrlMap
from tests.support import client_session, gateway_dict, serve_app

UP = "http://app.internal:8443"
URLS = UrlMap.of("/p", True, UP, "")
ALL = frozenset({"html", "css", "js", "json"})

HTML = f"""<!doctype html>
<html><head><base href="/">
<meta http-equiv="refresh" content="30; url=/timeout">
<link rel="stylesheet" href="/static/app.css" integrity="sha384-abc" crossorigin>
<script type="module" src='{UP}/static/app.js'></script>
<style>body {{ background: url(/img/bg.png) }}</style>
</head><body>
<a href="/login?next=/home">in</a> <a href="relative/x">rel</a> <a href="https://other.example/x">out</a>
<img srcset="/img/a.png 1x, /img/a@2x.png 2x" src=/img/a.png>
<form action="/submit" method=post></form>
<p>See {UP}/docs for more. Café ☕</p>
</body></html>
"""

HTML_EXPECTED = """<!doctype html>
<html><head><base href="/p/">
<meta http-equiv="refresh" content="30; url=/p/timeout">
<link rel="stylesheet" href="/p/static/app.css" crossorigin>
<script type="module" src='/p/static/app.js'></script>
<style>body { background: url(/p/img/bg.png) }</style>
</head><body>
<a href="/p/login?next=/home">in</a> <a href="relative/x">rel</a> <a href="https://other.example/x">out</a>
<img srcset="/p/img/a.png 1x, /p/img/a@2x.png 2x" src=/p/img/a.png>
<form action="/p/submit" method=post></form>
<p>See /p/docs for more. Café ☕</p>
</body></html>
"""


def run(
    body: bytes, content_type: str, encoding: str = "", chunk: int = 7
) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    headers = [(b"content-type", content_type.encode()), (b"content-length", b"%d" % len(body))]
    if encoding:
        headers.append((b"content-encoding", encoding.encode()))
    headers.append((b"etag", b'"v1"'))
    rewriter, sent = for_response(URLS, ALL, 10 * 1024 * 1024, 200, headers)
    assert rewriter is not None
    out = b"".join(rewriter.feed(body[i : i + chunk]) for i in range(0, len(body), chunk))
    return out + rewriter.end(), sent


@pytest.mark.parametrize("encoding", ["", "gzip", "deflate", "br"])
def test_html_in_every_encoding_comes_out_rewritten_and_identity(encoding: str) -> None:
    raw = HTML.encode()
    body = {
        "": raw,
        "gzip": gzip.compress(raw),
        "deflate": zlib.compress(raw),
        "br": brotli.compress(raw),
    }[encoding]
    out, headers = run(body, "text/html; charset=utf-8", encoding)
    assert out.decode() == HTML_EXPECTED
    # The original bytes' length, encoding and validator no longer describe these.
    assert {n for n, _ in headers} == {b"content-type"}


def test_latin1_stays_latin1_and_invalid_utf8_passes_unchanged() -> None:
    text = '<a href="/caf\xe9">Caf\xe9</a>\n'
    out, _ = run(text.encode("latin-1"), "text/html; charset=ISO-8859-1")
    assert out == '<a href="/p/caf\xe9">Caf\xe9</a>\n'.encode("latin-1")
    broken = b'<a href="/x">\xff\xfe</a>\n'
    out, _ = run(broken, "text/html")
    assert out == b'<a href="/p/x">\xff\xfe</a>\n'


@pytest.mark.parametrize("split", range(1, 40))
def test_a_url_split_anywhere_across_two_chunks_is_still_rewritten(split: int) -> None:
    body = b'<p>x</p>\n<a href="/account/settings">s</a> ' + f"{UP}/api".encode() + b"\n"
    rewriter, _ = for_response(URLS, ALL, 1 << 20, 200, [(b"content-type", b"text/html")])
    assert rewriter is not None
    out = rewriter.feed(body[:split]) + rewriter.feed(body[split:]) + rewriter.end()
    assert out == b'<p>x</p>\n<a href="/p/account/settings">s</a> /p/api\n'


def test_css_and_js_module_imports() -> None:
    css = b"@import '/base.css';\n.a { background: url('/i.png') } .b { src: url(x.woff) }"
    out, _ = run(css, "text/css")
    assert (
        out == b"@import '/p/base.css';\n.a { background: url('/p/i.png') } .b { src: url(x.woff) }"
    )
    js = (
        b'import { a } from "/lib/a.js";\nimport "/lib/side.js";\n'
        b'const m = await import("/lib/lazy.js");\nexport * from "/lib/b.js";\n'
        b'const api = "' + UP.encode() + b'/api/v1"; const path = "/not/a/module";\n'
    )
    out, _ = run(js, "application/javascript")
    assert out == (
        b'import { a } from "/p/lib/a.js";\nimport "/p/lib/side.js";\n'
        b'const m = await import("/p/lib/lazy.js");\nexport * from "/p/lib/b.js";\n'
        b'const api = "/p/api/v1"; const path = "/not/a/module";\n'
    )


def test_json_string_values_that_are_the_upstreams_urls() -> None:
    data = {
        "self": f"{UP}/items/1",
        "nested": {"links": [f"{UP}/items/2?x=1", "https://other.example/y", "/plain/path"]},
        "text": "no url here",
        "count": 3,
    }
    out, _ = run(json.dumps(data).encode(), "application/vnd.api+json")
    assert json.loads(out) == {
        "self": "/p/items/1",
        "nested": {"links": ["/p/items/2?x=1", "https://other.example/y", "/plain/path"]},
        "text": "no url here",
        "count": 3,
    }


def test_a_large_page_streams_through_with_bounded_look_behind() -> None:
    line = b'<li><a href="/item">item</a></li>\n'
    rows = 5 * 1024 * 1024 // len(line)
    rewriter, _ = for_response(URLS, ALL, 10 << 20, 200, [(b"content-type", b"text/html")])
    assert rewriter is not None
    total = held = 0
    for _ in range(rows // 1000):
        chunk = line * 1000
        out = rewriter.feed(chunk)
        total += len(out)
        held = max(held, len(chunk) - len(out))
    total += len(rewriter.end())
    assert total == rows // 1000 * 1000 * (len(line) + 2)
    assert held <= len(line)  # each chunk goes on at once, less its last line
    # A line with no boundary at all is held back at most LOOK_BEHIND characters.
    rewriter, _ = for_response(URLS, ALL, 10 << 20, 200, [(b"content-type", b"text/css")])
    assert rewriter is not None
    out = rewriter.feed(b"a" * (LOOK_BEHIND * 4))
    assert len(out) >= LOOK_BEHIND * 3


def test_what_is_not_rewritten() -> None:
    def chosen(status: int, headers: list[tuple[bytes, bytes]]) -> bool:
        return for_response(URLS, ALL, 1000, status, headers)[0] is not None

    html = (b"content-type", b"text/html")
    assert chosen(200, [html])
    assert not chosen(200, [(b"content-type", b"text/event-stream")])
    assert not chosen(200, [(b"content-type", b"image/png")])
    assert not chosen(206, [html])
    assert not chosen(200, [html, (b"content-length", b"1001")])  # over max_body
    assert not chosen(200, [html, (b"content-encoding", b"zstd")])  # cannot decode
    only_css = for_response(URLS, frozenset({"css"}), 1000, 200, [html])[0]
    assert only_css is None


@pytest.fixture
async def app_upstream() -> AsyncIterator[str]:
    async def page(request: web.Request) -> web.Response:
        body = gzip.compress(HTML.encode())
        return web.Response(
            body=body,
            headers={"Content-Type": "text/html; charset=utf-8", "Content-Encoding": "gzip"},
        )

    app = web.Application()
    app.router.add_get("/index.html", page)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    assert site._server is not None
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_through_the_gateway(settings: Settings, app_upstream: str) -> None:
    spec = gateway_dict(
        app_upstream, path="/p", strip_prefix=True, rewrite={"body": ["html", "css"]}
    )
    async with serve_app(settings, spec) as gw, client_session() as http:
        async with http.get(gw.url + "/p/index.html") as r:
            assert r.status == 200
            assert "Content-Encoding" not in r.headers and "Content-Length" not in r.headers
            page = (await r.read()).decode()
        async with http.get(gw.url + "/p/.ferryman/rewrite.js") as r:
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/javascript")
            assert b"__ferrymanPrefix" in await r.read()
    # Its own origin is the fake's (127.0.0.1:port), not app.internal: only that differs;
    # and the runtime script comes first in the <head>.
    expected = HTML_EXPECTED.replace("/p/static/app.js", UP + "/static/app.js")
    expected = expected.replace("See /p/docs", f"See {UP}/docs")
    runtime = '<script src="/p/.ferryman/rewrite.js" data-prefix="/p"></script>'
    assert page == expected.replace("<head>", "<head>" + runtime, 1)


def test_attributes_in_capitals_or_with_space_around_the_equals_sign() -> None:
    body = (
        b'<A HREF="/a">a</A>\n<img src = "/b.png">\n<form action= \'/c\'></form>\n'
        b'<a href ="/d">d</a> <a href="//cdn.example/x">cdn</a>\n'
    )
    out, _ = run(body, "text/html")
    assert out == (
        b'<A HREF="/p/a">a</A>\n<img src = "/p/b.png">\n<form action= \'/p/c\'></form>\n'
        b'<a href ="/p/d">d</a> <a href="//cdn.example/x">cdn</a>\n'
    )
