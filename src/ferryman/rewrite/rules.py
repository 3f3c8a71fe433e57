"""What is rewritten in each kind of body: the places a URL to the upstream can sit.

Regular expressions, deliberately: they run over decoded text chunk by chunk with a
bounded look-behind (see `body.py`), keep every byte they do not rewrite exactly as it
was, and cost a fraction of parsing and re-serialising a document. What they look for:

- HTML: `href`, `src`, `action`, `formaction`, `poster`, `data`, `background`,
  `srcset` (each candidate), `<meta http-equiv=refresh content="N; url=…">`, and
  `integrity` attributes dropped (a rewritten resource no longer has that hash); the
  CSS and absolute-URL rules below also run over inline styles and scripts.
- CSS: `url(…)` and `@import "…"`.
- JS: module specifiers (`import … from "/x"`, `import("/x")`, `export … from "/x"`).
- Everywhere (JSON string values, JS string literals, inline text): absolute URLs to
  the upstream's own origin.

Root-relative strings that scripts combine at run time (`fetch("/api/" + id)`) are out
of reach here; the injected runtime script maps those (`runtime.py`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from ferryman.rewrite.urls import UrlMap

_ATTRIBUTE = re.compile(
    r"""(?i)(\s(?:href|src|action|formaction|poster|data|background)\s*=\s*)(["'])([^"'<>]*)\2"""
)
_UNQUOTED = re.compile(r"""(?i)(\s(?:href|src|action)\s*=\s*)(/[^\s"'<>=`]*)""")
_SRCSET = re.compile(r"""(?i)(\ssrcset\s*=\s*)(["'])([^"'<>]*)\2""")
_REFRESH = re.compile(r"""(?i)(\scontent\s*=\s*)(["'])(\s*\d+\s*;\s*url\s*=\s*)([^"'<>]*)\2""")
_INTEGRITY = re.compile(r"""(?i)\s+integrity\s*=\s*(["'])[^"'<>]*\1""")
_CSS_URL = re.compile(r"""(?i)(url\(\s*)(["']?)([^"')\s]*)\2(\s*\))""")
_CSS_IMPORT = re.compile(r"""(?i)(@import\s+)(["'])([^"']*)\2""")
_JS_MODULE = re.compile(
    r"""((?:\bimport|\bexport)\b[^;"'`()]*?\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)(["'])(/[^"'\s]*)\2"""
)

Rule = Callable[[str, UrlMap], str]


def _root_relative(value: str, urls: UrlMap) -> str:
    """A URL attribute's value made public when it is root-relative or the upstream's."""
    if value.startswith("/") or "://" in value[:12]:
        return urls.url(value)
    return value


def _attributes(text: str, urls: UrlMap) -> str:
    text = _ATTRIBUTE.sub(
        lambda m: f"{m.group(1)}{m.group(2)}{_root_relative(m.group(3), urls)}{m.group(2)}",
        text,
    )
    text = _UNQUOTED.sub(lambda m: f"{m.group(1)}{urls.url(m.group(2))}", text)
    text = _SRCSET.sub(
        lambda m: f"{m.group(1)}{m.group(2)}{_srcset(m.group(3), urls)}{m.group(2)}", text
    )
    text = _REFRESH.sub(
        lambda m: (
            f"{m.group(1)}{m.group(2)}{m.group(3)}{_root_relative(m.group(4), urls)}{m.group(2)}"
        ),
        text,
    )
    return _INTEGRITY.sub("", text)


def _srcset(value: str, urls: UrlMap) -> str:
    out = []
    for candidate in value.split(","):
        stripped = candidate.strip()
        url, _, descriptor = stripped.partition(" ")
        lead = candidate[: len(candidate) - len(candidate.lstrip())]
        rewritten = _root_relative(url, urls) + (f" {descriptor}" if descriptor else "")
        out.append(lead + rewritten)
    return ",".join(out)


def _css(text: str, urls: UrlMap) -> str:
    text = _CSS_URL.sub(
        lambda m: (
            f"{m.group(1)}{m.group(2)}{_root_relative(m.group(3), urls)}{m.group(2)}{m.group(4)}"
        ),
        text,
    )
    return _CSS_IMPORT.sub(
        lambda m: f"{m.group(1)}{m.group(2)}{_root_relative(m.group(3), urls)}{m.group(2)}",
        text,
    )


def _js(text: str, urls: UrlMap) -> str:
    return _JS_MODULE.sub(
        lambda m: f"{m.group(1)}{m.group(2)}{urls.url(m.group(3))}{m.group(2)}", text
    )


@dataclass(frozen=True)
class Absolute:
    """Absolute URLs to the upstream's own origins, anywhere in the text."""

    pattern: re.Pattern[str]

    @classmethod
    def of(cls, urls: UrlMap) -> Absolute:
        hosts = sorted({o.split("://", 1)[1] for o in urls.origins}, key=len, reverse=True)
        schemes = sorted({o.split("://", 1)[0] for o in urls.origins})
        pattern = (
            rf"(?i)(?:(?:{'|'.join(schemes)}):)?//(?:{'|'.join(re.escape(h) for h in hosts)})"
            r"(?![\w.:-])[^\s\"'<>`)\\]*"
        )
        return cls(re.compile(pattern))

    def __call__(self, text: str, urls: UrlMap) -> str:
        return self.pattern.sub(lambda m: urls.url(m.group(0)), text)


def rules_for(kind: str) -> tuple[Rule, ...]:
    """The rules of a kind of body (`html`, `css`, `js`, `json`), absolute URLs last."""
    if kind == "html":
        return (_attributes, _css)
    if kind == "css":
        return (_css,)
    if kind == "js":
        return (_js,)
    return ()
