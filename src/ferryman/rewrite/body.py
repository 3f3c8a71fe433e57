"""Rewriting a response body as it streams past.

The body is decoded (`gzip`, `deflate` or `br`, then its charset) chunk by chunk, the
rules of its kind run over the text, and the result goes on as identity-encoded bytes
of the same charset. Text is gathered into batches of `BATCH` characters and held back
from the last boundary (a newline or `>`) of what has arrived, never more than
`LOOK_BEHIND`, so a URL split across two chunks is still whole when it is rewritten and
no body is buffered whole.
Bytes that are not valid in the declared charset pass through unchanged
(surrogate escapes).
"""

from __future__ import annotations

import codecs
import functools
import importlib
import importlib.resources
import re
import zlib
from collections.abc import Hashable
from typing import Any, Protocol

from ferryman.rewrite.cache import RewriteCache, cache_key
from ferryman.rewrite.rules import Absolute, Rule, rules_for
from ferryman.rewrite.urls import UrlMap
from ferryman.types import Headers

_HEAD = re.compile(r"(?i)<head(?:\s[^>]*)?>")
_BODY = re.compile(r"(?i)<body(?:\s[^>]*)?>")

#: The path, under a route's prefix, where the gateway serves its runtime script.
RUNTIME_PATH = "/.ferryman/rewrite.js"

#: Text gathered before the rules run over it (the rest waits for more, or the end).
BATCH = 16 * 1024

#: The most text held back waiting for a boundary (minified files have few newlines).
LOOK_BEHIND = 16 * 1024

_KINDS = {
    "text/html": "html",
    "application/xhtml+xml": "html",
    "text/css": "css",
    "text/javascript": "js",
    "application/javascript": "js",
    "application/ecmascript": "js",
    "text/ecmascript": "js",
    "application/json": "json",
}


class _Decoder(Protocol):
    def decompress(self, data: bytes) -> bytes: ...


def kind_of(content_type: str) -> str | None:
    """`html`, `css`, `js` or `json` for a Content-Type, or None."""
    media = content_type.split(";", 1)[0].strip().lower()
    kind = _KINDS.get(media)
    if kind is None and media.endswith("+json"):
        kind = "json"
    return kind


def charset_of(content_type: str) -> str:
    for parameter in content_type.split(";")[1:]:
        name, _, value = parameter.strip().partition("=")
        if name.lower() == "charset" and value:
            try:
                return codecs.lookup(value.strip("\"'")).name
            except LookupError:
                break
    return "utf-8"


def decompressor(encoding: str) -> _Decoder | None:
    """A streaming decoder for a Content-Encoding; None for identity. ValueError for an
    encoding this gateway cannot decode (the body is then relayed unchanged)."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return _Deflate()
    if encoding == "br":
        brotli: Any = importlib.import_module("brotli")  # untyped; a dependency
        return _Brotli(brotli.Decompressor())
    raise ValueError(encoding)


def brotli_error() -> type[Exception]:
    """What a broken `br` body raises (for the relay to treat like a broken stream)."""
    error: type[Exception] = importlib.import_module("brotli").error
    return error


class _Deflate:
    """`deflate` as servers send it: zlib-wrapped, or (some) raw."""

    def __init__(self) -> None:
        self._inner: Any = None

    def decompress(self, data: bytes) -> bytes:
        if self._inner is None:
            raw = bool(data) and (data[0] & 0x0F) != 8
            self._inner = zlib.decompressobj(-zlib.MAX_WBITS if raw else zlib.MAX_WBITS)
        out: bytes = self._inner.decompress(data)
        return out


class _Brotli:
    def __init__(self, decoder: Any) -> None:
        self._decoder = decoder

    def decompress(self, data: bytes) -> bytes:
        out: bytes = self._decoder.process(data)
        return out


class BodyRewriter:
    """One response body: `feed` each chunk, then `end`; each returns what to send."""

    def __init__(
        self,
        urls: UrlMap,
        kind: str,
        charset: str,
        decoder: _Decoder | None,
        absolute: Absolute,
        inject: str | None = None,
    ) -> None:
        self._urls = urls
        self._inject = inject if kind == "html" else None
        self._rules: tuple[Rule, ...] = (*rules_for(kind), absolute)
        self._charset = charset
        # Bytes invalid in the charset become lone surrogates and back: unchanged.
        self._errors = "surrogateescape"
        self._text = codecs.getincrementaldecoder(charset)(errors=self._errors)
        self._decoder = decoder
        self._carry = ""

    def feed(self, chunk: bytes) -> bytes:
        if self._decoder is not None:
            chunk = self._decoder.decompress(chunk)
        text = self._carry + self._text.decode(chunk)
        if len(text) < BATCH:
            # Small chunks are gathered first: each pass of the rules has a fixed cost,
            # which a page arriving in 4 KB pieces would pay many times over.
            self._carry = text
            return b""
        cut = _boundary(text)
        self._carry = text[cut:]
        return self._rewrite(text[:cut])

    def end(self) -> bytes:
        text = self._carry + self._text.decode(b"", final=True)
        self._carry = ""
        return self._rewrite(text)

    def _rewrite(self, text: str) -> bytes:
        if not text:
            return b""
        for rule in self._rules:
            text = rule(text, self._urls)
        if self._inject is not None:
            # After the opening <head> (else <body>), once: before the page's own scripts.
            match = _HEAD.search(text) or _BODY.search(text)
            if match is not None:
                text = text[: match.end()] + self._inject + text[match.end() :]
                self._inject = None
        return text.encode(self._charset, errors=self._errors)


def _boundary(text: str) -> int:
    """Where the text may be cut: before its last newline or after its last `>` (the
    rules need the whitespace before an attribute, so it stays with what follows),
    unless that holds back more than LOOK_BEHIND (then before the last space, or
    anywhere)."""
    cut = max(text.rfind("\n"), text.rfind(">") + 1, 0)
    if len(text) - cut <= LOOK_BEHIND:
        return cut
    space = text.rfind(" ", 0, len(text) - 256)
    return space if space > 0 and len(text) - space <= LOOK_BEHIND else len(text) - LOOK_BEHIND


#: Headers that describe the bytes as the upstream sent them, untrue once rewritten.
_STALE = frozenset({b"content-length", b"content-encoding", b"etag", b"content-md5"})


@functools.cache
def _absolute(urls: UrlMap) -> Absolute:
    return Absolute.of(urls)


def for_response(
    urls: UrlMap,
    kinds: frozenset[str],
    max_body: int,
    status: int,
    headers: Headers,
    runtime: bool = False,
    cache: RewriteCache | None = None,
    resource: str = "",
) -> tuple[BodyRewriter | CachedRewrite | None, Headers]:
    """A rewriter for this response if its body is one of `kinds`, not partial, not
    declared larger than `max_body` and in an encoding the gateway can decode; and the
    headers to send with it (framing and validators of the original bytes removed)."""
    if status < 200 or status in (204, 206, 304):
        return None, headers
    content_type = encoding = b""
    length = None
    for name, value in headers:
        if name == b"content-type":
            content_type = value
        elif name == b"content-encoding":
            encoding = value
        elif name == b"content-length":
            length = value
    kind = kind_of(content_type.decode("latin-1"))
    if kind is None or kind not in kinds:
        return None, headers
    if length is not None and (not length.isdigit() or int(length) > max_body):
        return None, headers
    try:
        decoder = decompressor(encoding.decode("latin-1"))
    except ValueError:
        return None, headers
    charset = charset_of(content_type.decode("latin-1"))
    inject = None
    if runtime and kind == "html":
        prefix = urls.public_prefix
        inject = f'<script src="{prefix}{RUNTIME_PATH}" data-prefix="{prefix}"></script>'
    rewriter = BodyRewriter(urls, kind, charset, decoder, _absolute(urls), inject)
    sent = [(n, v) for n, v in headers if n not in _STALE]
    etag = cache_key(headers) if cache is not None and status == 200 else None
    if cache is not None and etag is not None:
        key = (urls, kind, resource, etag, encoding, charset, inject)
        return CachedRewrite(rewriter, cache, key, max_body), sent
    return rewriter, sent


class CachedRewrite:
    """A rewriter whose output is kept by `RewriteCache`; on a hit, the kept bytes go
    out with the first chunk and the upstream's body is read and dropped."""

    def __init__(
        self, rewriter: BodyRewriter, cache: RewriteCache, key: Hashable, limit: int
    ) -> None:
        self._kept = cache.get(key)
        self._rewriter = rewriter if self._kept is None else None
        self._cache, self._key, self._limit = cache, key, limit
        self._out: list[bytes] | None = [] if self._kept is None else None
        self._size = 0

    def feed(self, chunk: bytes) -> bytes:
        if self._rewriter is None:
            kept, self._kept = self._kept or b"", b""
            return kept
        out = self._rewriter.feed(chunk)
        self._keep(out)
        return out

    def end(self) -> bytes:
        if self._rewriter is None:
            kept, self._kept = self._kept or b"", b""
            return kept
        out = self._rewriter.end()
        self._keep(out)
        if self._out is not None:
            self._cache.put(self._key, b"".join(self._out))
        return out

    def _keep(self, out: bytes) -> None:
        if self._out is None or not out:
            return
        self._size += len(out)
        if self._size > self._limit:
            self._out = None  # larger than a body the route rewrites: not kept
        else:
            self._out.append(out)


@functools.cache
def runtime_script() -> bytes:
    """The runtime script's bytes (shipped in the package, read once)."""
    return importlib.resources.files("ferryman.rewrite").joinpath("static/rewrite.js").read_bytes()
