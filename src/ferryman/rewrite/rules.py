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

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass

from ferryman.rewrite.urls import UrlMap

#: An attribute's value, found from its `=` (a literal the regex engine can skip to;
#: patterns that start at the attribute's name try every letter of the page instead).
#: Only values that start like a URL to rewrite (`/`, `http`): most attribute values
#: (classes, sizes, text) never reach Python.
_VALUE = re.compile(r"""=[ \t\r\n]*(?:(["'])((?:/|[hH][tT][tT][pP])[^"'<>]*)\1|(/[^\s"'<>=`]*))""")
_REFRESH_ATTRIBUTE = re.compile(
    r"""(?i)(\scontent\s*=\s*)(["'])(\s*\d+\s*;\s*url\s*=\s*)([^"'<>]*)\2"""
)
#: The attribute's name, just before its `=`.
_NAME = re.compile(r"""\s([A-Za-z][A-Za-z0-9_-]*)[ \t\r\n]*\Z""")
_URL_ATTRIBUTES = frozenset({"href", "src", "action", "formaction", "poster", "data", "background"})
#: What the fast pass does not see: names in capitals, or space around `=`. A batch
#: holding any of these goes through the slow pass, which looks at every `=`.
_SLOW_SIGNS = (
    "HREF", "Href", "SRC=", "Src=", "ACTION", "Action", "SRCSET", "Srcset",
    '= "/', "= '/", "href =", "src =", "action =",
)  # fmt: skip
_SRCSET = re.compile(r"""(?i)(\ssrcset\s*=\s*)(["'])([^"'<>]*)\2""")
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


@functools.cache
def _root_paths(urls: UrlMap) -> tuple[tuple[re.Pattern[str], str], ...]:
    """The fast pass, one per quoting (`"`, `'`, none): a root-relative value inside the
    target prefix of a URL attribute written as pages write them (a lower-case name,
    no space around `=`). Each pattern starts with a literal the regex engine skips to,
    checks the attribute's name behind it, and splits the text there; joining the
    pieces with the public prefix rewrites every such value without a Python call per
    link (a 50 KB page of links: ~0.15 ms, against ~1.2 ms with one call each)."""
    target = urls.target_prefix or ""
    public = urls.public_prefix
    # Empty target: `/x` but not `//host`; else `/base` followed by the end of a segment.
    after = r"(?!/)" if not target else r"(?=[/?#\"'\s>])"
    passes = []
    for quote in ('"', "'", ""):
        literal = f"={quote}{target or '/'}"
        behind = "|".join(f"(?<=\\s{name}{re.escape(literal)})" for name in sorted(_URL_ATTRIBUTES))
        pattern = re.compile(re.escape(literal) + after + f"(?:{behind})")
        passes.append((pattern, f"={quote}{public}{'/' if not target else ''}"))
    return tuple(passes)


def _attributes(text: str, urls: UrlMap) -> str:
    def replace(match: re.Match[str]) -> str:
        at = match.start()
        named = _NAME.search(match.string, max(0, at - 40), at)
        if named is None:
            return match.group(0)
        name = named.group(1).lower()
        quote, value, bare = match.group(1), match.group(2), match.group(3)
        whole = match.group(0)
        if bare is not None:
            if name not in _URL_ATTRIBUTES:
                return whole
            return whole[: match.start(3) - at] + urls.url(bare)
        if name in _URL_ATTRIBUTES:
            new = _root_relative(value, urls)
        elif name == "srcset":
            new = _srcset(value, urls)
        else:
            return whole
        return whole[: match.start(2) - at] + new + quote

    if any(sign in text for sign in _SLOW_SIGNS):
        # Names in capitals or space around `=`: every `=` looked at, each name checked.
        text = _VALUE.sub(replace, text)
    else:
        for pattern, joiner in _root_paths(urls):
            text = joiner.join(pattern.split(text))
        if "srcset" in text:
            text = _SRCSET.sub(
                lambda m: f"{m.group(1)}{m.group(2)}{_srcset(m.group(3), urls)}{m.group(2)}",
                text,
            )
    if "url=" in text or "URL=" in text or "Url=" in text:  # <meta http-equiv=refresh>
        text = _REFRESH_ATTRIBUTE.sub(
            lambda m: (
                f"{m.group(1)}{m.group(2)}{m.group(3)}"
                f"{_root_relative(m.group(4), urls)}{m.group(2)}"
            ),
            text,
        )
    if "integrity" in text or "INTEGRITY" in text or "Integrity" in text:
        text = _INTEGRITY.sub("", text)
    return text


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
    lowered = "url(" in text or "URL(" in text or "Url(" in text
    if not lowered and "@import" not in text and "@IMPORT" not in text:
        return text
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
    if "import" not in text and "export" not in text:
        return text
    return _JS_MODULE.sub(
        lambda m: f"{m.group(1)}{m.group(2)}{urls.url(m.group(3))}{m.group(2)}", text
    )


@dataclass(frozen=True)
class Absolute:
    """Absolute URLs to the upstream's own origins, anywhere in the text."""

    pattern: re.Pattern[str]
    hosts: tuple[str, ...]

    @classmethod
    def of(cls, urls: UrlMap) -> Absolute:
        hosts = sorted({o.split("://", 1)[1] for o in urls.origins}, key=len, reverse=True)
        schemes = sorted({o.split("://", 1)[0] for o in urls.origins})
        pattern = (
            rf"(?i)(?:(?:{'|'.join(schemes)}):)?//(?:{'|'.join(re.escape(h) for h in hosts)})"
            r"(?![\w.:-])[^\s\"'<>`)\\]*"
        )
        return cls(re.compile(pattern), tuple(hosts))

    def __call__(self, text: str, urls: UrlMap) -> str:
        # A plain substring search first: most text names none of the upstream's hosts,
        # and this pattern, which may start with a scheme, cannot be skipped to.
        lowered = text.lower()  # hosts are kept lower-cased
        if any(host in lowered for host in self.hosts):
            return self.pattern.sub(lambda m: urls.url(m.group(0)), text)
        return text


def rules_for(kind: str) -> tuple[Rule, ...]:
    """The rules of a kind of body (`html`, `css`, `js`, `json`), absolute URLs last."""
    if kind == "html":
        return (_attributes, _css)
    if kind == "css":
        return (_css,)
    if kind == "js":
        return (_js,)
    return ()
