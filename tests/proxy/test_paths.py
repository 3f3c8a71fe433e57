"""Safe joining: whatever the client sends, the upstream URL keeps its host and prefix."""

from __future__ import annotations

import posixpath
import unicodedata
from urllib.parse import unquote_to_bytes

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ferryman.config.upstreams import Upstream
from ferryman.errors import BadRequest
from ferryman.proxy.paths import check_path, check_query, join_path, strip_segments
from ferryman.proxy.upstream import UpstreamClient

UPSTREAM = UpstreamClient("up", Upstream(url="https://api.example.com:8443/base/v1"))

_ATOMS = [
    "a", "v1", "chat", ".", "..", "%2e", "%2E", "%2e%2e", ".%2e", "%2f", "%2F", "%5c", "%5C",
    "\\", "/", "//", "%00", "%0d%0a", "%25", "%252e", "%252f", "@", ":", "evil.example",
    "http:", "?", "#", ";", "%", "%zz", "~", "%C3%A9", " ", "\t", "\r\n", "é",
    # What Java servers and normalising upstreams read as dots or separators:
    "..;", ".;", ";x=1", "%3b", "%3B", "%c0%ae", "%C0%AE", "%e0%80%ae", "%c0%af", "%c1%9c",
    "%ef%bc%8e", "%EF%BC%8E", "%ef%bc%8f", "%ef%bc%bc", "%e2%80%a4", "%ef%b9%92", "\uff0e",
]  # fmt: skip


def _segments() -> st.SearchStrategy[str]:
    atom = st.sampled_from(_ATOMS) | st.text(
        alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=4
    )
    return st.lists(atom, min_size=0, max_size=8).map("".join)


raw_paths = st.lists(_segments(), min_size=0, max_size=6).map(lambda parts: "/" + "/".join(parts))


def _lenient_utf8(data: bytes) -> str:
    """Bytes as an old or careless decoder reads them: overlong two- and three-byte
    forms are taken for the character they spell (`c0 ae` → '.')."""
    out: list[str] = []
    i = 0
    while i < len(data):
        byte = data[i]
        if byte in (0xC0, 0xC1) and i + 1 < len(data):
            out.append(chr(((byte & 0x1F) << 6) | (data[i + 1] & 0x3F)))
            i += 2
        elif byte == 0xE0 and i + 2 < len(data) and data[i + 1] < 0xA0:
            out.append(chr(((data[i + 1] & 0x3F) << 6) | (data[i + 2] & 0x3F)))
            i += 3
        else:
            end = i + 1
            while end < len(data) and 0x80 <= data[end] < 0xC0:
                end += 1
            out.append(data[i:end].decode("utf-8", "replace"))
            i = end
    return "".join(out)


def _fully_decoded(path: str) -> str:
    # What the most naive upstream could make of it: decode until stable (overlong
    # forms too), fold fullwidth and other compatibility forms, `\` as `/`, and drop
    # `;parameters` from each segment, as Tomcat, Jetty and Spring do.
    for _ in range(4):
        decoded = _lenient_utf8(unquote_to_bytes(path))
        if decoded == path:
            break
        path = decoded
    path = unicodedata.normalize("NFKC", path).replace("\\", "/")
    return "/".join(segment.partition(";")[0] for segment in path.split("/"))


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow])
@given(
    raw=raw_paths, strip=st.integers(min_value=0, max_value=2), extra=st.sampled_from(["", "/x"])
)
@example(raw="/..", strip=0, extra="")
@example(raw="/..?", strip=0, extra="")  # found by this test: '?' ended the path upstream
@example(raw="/%2e%2e/%2e%2e/etc", strip=0, extra="")
@example(raw="//evil.example/x", strip=0, extra="")
@example(raw="/a/..%2f..%2fx", strip=1, extra="")
@example(raw="/%252e%252e/x", strip=0, extra="")
@example(raw="/..;/x", strip=0, extra="")
@example(raw="/a/%2e%2e;/x", strip=1, extra="")
@example(raw="/%c0%ae%c0%ae/x", strip=0, extra="")
@example(raw="/%ef%bc%8e%ef%bc%8e/x", strip=0, extra="")
@example(raw="/..%3bjsessionid=1/x", strip=0, extra="")
def test_a_joined_url_never_leaves_the_upstream_or_its_prefix(
    raw: str, strip: int, extra: str
) -> None:
    try:
        raw_bytes = raw.encode("ascii")
    except UnicodeEncodeError:
        with pytest.raises(BadRequest):
            check_path(raw.encode("utf-8"))
        return
    try:
        decoded = check_path(raw_bytes)
    except BadRequest as error:
        assert error.code == "invalid_path"
        return
    prefix = UPSTREAM.path_prefix + extra
    path = join_path(prefix, strip_segments(raw, strip))
    url = UPSTREAM.url(path, b"q=1")
    assert url.scheme == "https"
    assert url.host == "api.example.com"
    assert url.port == 8443
    assert url.raw_path.startswith(prefix)
    # Even an upstream that decodes repeatedly and resolves dot segments stays inside.
    resolved = posixpath.normpath(_fully_decoded(url.raw_path))
    assert resolved == prefix or resolved.startswith(prefix + "/")
    # The routing view has one segment per raw segment.
    assert decoded.count("/") == raw.count("/")


@given(raw=st.binary(max_size=64))
def test_check_path_accepts_or_refuses_any_bytes_cleanly(raw: bytes) -> None:
    try:
        decoded = check_path(raw)
    except BadRequest:
        return
    assert decoded.startswith("/")


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        (b"/", "/"),
        (b"/v1/chat/completions", "/v1/chat/completions"),
        (b"/a%20b/%C3%A9", "/a b/\u00e9"),
        (b"/.well-known/x", "/.well-known/x"),
        (b"/a/b.c/..d", "/a/b.c/..d"),
        (b"/v%31/x", "/v1/x"),
        (b"/a;b=1/c", "/a;b=1/c"),  # matrix parameters on ordinary segments pass
        (b"/files/..name", "/files/..name"),
        (b"/%E2%82%AC/x", "/\u20ac/x"),
    ],
)
def test_ordinary_paths_pass(raw: bytes, decoded: str) -> None:
    assert check_path(raw) == decoded


@pytest.mark.parametrize(
    "raw",
    [b"", b"relative", b"/a/../b", b"/a/%2e%2e/b", b"/a%2fb", b"/a%5cb", b"/a\\b", b"//x",
     b"/a#b", b"/a b", b"/a\r\nb", b"/%252e%252e", b"/%", b"/\xff",
     b"/api/..;/secret", b"/api/%2e%2e;/secret", b"/api/..%3b/x", b"/api/.;x=1/y",
     b"/api/%c0%ae%c0%ae/x", b"/api/%e0%80%ae/x", b"/api/%ef%bc%8e%ef%bc%8e/x",
     b"/api/%ef%bc%8f", b"/api/%e2%80%a4%e2%80%a4/x", b"/api/%ff"],
)  # fmt: skip
def test_dangerous_paths_are_refused(raw: bytes) -> None:
    with pytest.raises(BadRequest) as info:
        check_path(raw)
    assert info.value.status == 400


def test_query_strings_with_spaces_or_fragments_are_refused() -> None:
    check_query(b"a=1&b=%20")
    for bad in (b"a=1 2", b"a=1#frag", b"a=\r\n"):
        with pytest.raises(BadRequest):
            check_query(bad)


@pytest.mark.parametrize(
    ("raw", "count", "rest"),
    [("/v1/x/y", 1, "/x/y"), ("/v1", 1, ""), ("/v1/", 1, "/"), ("/a/b/c", 2, "/c"),
     ("/v%31/x", 1, "/x"), ("/a", 0, "/a"), ("/a", 3, "")],
)  # fmt: skip
def test_strip_segments(raw: str, count: int, rest: str) -> None:
    assert strip_segments(raw, count) == rest
