"""Checking a request's path and joining it to an upstream without ever leaving it.

Policy is decided on the decoded path (what the upstream will understand) while the
bytes forwarded are the raw ones the client sent. The two can only disagree in ways
that let a request escape its route or its upstream's prefix when a segment hides a
separator or a dot segment behind percent-encoding, so those are refused:

- the path must start with `/` and be printable ASCII, with no `\\`, `#`, `?` (a raw
  path never holds one: the query is split off before) or `//`;
- no segment may be `.` or `..`, raw or decoded, also followed by `;parameters`
  (`..;`, `%2e%2e;x`: Java servers drop them and see `..`), nor become one once
  Unicode-normalised (fullwidth dots, `%ef%bc%8e`);
- escapes must decode to valid UTF-8 (no overlong `%c0%ae` for '.');
- no segment may decode to something holding `/`, `\\` or a control character
  (`%2f`, `%5c`, `%00`, a fullwidth solidus), or still holding an encoded dot or
  separator after one decoding (`%252e`), which a second decoding upstream would turn
  into one.

What passes is joined by concatenation after the upstream's fixed origin, so the
host, port and path prefix of the upstream cannot change.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import unquote_to_bytes

from ferryman.errors import BadRequest

_DOUBLE_ENCODED = re.compile(r"%(?:2e|2f|5c)", re.IGNORECASE)
_BAD_QUERY = re.compile(rb"[^\x21-\x7e]|#")
_VALID_ESCAPES = re.compile(r"%(?![0-9A-Fa-f]{2})")


def _invalid(reason: str) -> BadRequest:
    return BadRequest(f"invalid request path: {reason}", code="invalid_path")


def check_path(raw: bytes) -> str:
    """Return the decoded path for routing, or raise BadRequest(invalid_path).

    `raw` is the path as sent (ASGI `raw_path`, no query string).
    """
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise _invalid("non-ASCII bytes must be percent-encoded") from None
    if not text.startswith("/"):
        raise _invalid("must start with '/'")
    if not text.isprintable() or " " in text:
        raise _invalid("control characters or spaces")
    if "\\" in text or "#" in text or "?" in text:
        raise _invalid("backslash, '#' or '?'")
    if "//" in text:
        raise _invalid("empty path segment ('//')")
    if "%" not in text:
        if "/." in text:
            for segment in text.split("/"):
                if _dots(segment):
                    raise _invalid("dot segment")
        return text
    if _VALID_ESCAPES.search(text):
        raise _invalid("malformed percent-escape")
    decoded_segments = []
    for segment in text.split("/"):
        if _dots(segment):
            raise _invalid("dot segment")
        if "%" in segment:
            try:
                plain = unquote_to_bytes(segment).decode("utf-8")
            except UnicodeDecodeError:
                # Overlong forms (`%c0%ae` for '.') included: some servers still read them.
                raise _invalid("percent-escapes that are not valid UTF-8") from None
            if _dots(plain):
                raise _invalid("encoded dot segment")
            if "/" in plain or "\\" in plain or not plain.isprintable():
                raise _invalid("encoded separator or control character")
            if _DOUBLE_ENCODED.search(plain):
                raise _invalid("double-encoded dot or separator")
            if not plain.isascii():
                # What a normalising upstream makes of it: a fullwidth dot (U+FF0E) or
                # solidus (U+FF0F) becomes '.' or '/'.
                folded = unicodedata.normalize("NFKC", plain)
                if _dots(folded) or "/" in folded or "\\" in folded:
                    raise _invalid("a dot or separator in another form (fullwidth, ...)")
            decoded_segments.append(plain)
        else:
            decoded_segments.append(segment)
    return "/".join(decoded_segments)


def _dots(segment: str) -> bool:
    """Is this segment `.` or `..`, also with `;parameters` after it (`..;x=1`, which
    Tomcat, Jetty and Spring read as `..`)?"""
    if ";" in segment:
        segment = segment.partition(";")[0]
    return segment in (".", "..")


def check_query(raw: bytes) -> None:
    """Refuse a query string with spaces, control characters or a fragment."""
    if raw and _BAD_QUERY.search(raw):
        raise BadRequest("invalid query string", code="invalid_query")


def segment_count(prefix: str) -> int:
    """How many path segments a route prefix spans (`/` → 0, `/v1/chat` → 2)."""
    return 0 if prefix == "/" else prefix.count("/")


def strip_segments(raw_path: str, count: int) -> str:
    """Remove the first `count` segments of a checked raw path (`/v1/x`, 1 → `/x`).

    Works on segments, not characters, so an encoded prefix (`/v%31/x`) is stripped
    exactly like the plain one.
    """
    if count == 0:
        return raw_path
    index = 0
    for _ in range(count):
        index = raw_path.find("/", index + 1)
        if index == -1:
            return ""
    return raw_path[index:]


def join_path(target_prefix: str, remainder: str) -> str:
    """The upstream path: its fixed prefix (`""` for none) and what the route forwards."""
    if not remainder:
        return target_prefix or "/"
    return target_prefix + remainder
