"""What the benchmark measures: its targets, scenarios and the upstream's bodies."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
DEFAULT_JSON = BENCH_DIR / "results" / "latest.json"
CONCURRENCIES = (1, 32)
HIGH, LOW = max(CONCURRENCIES), min(CONCURRENCIES)

TARGET_THROUGHPUT_RATIO = 0.70  # ferryman:pass req/s @HIGH / floor, at least
TARGET_P50_RATIO = 1.50  # ferryman:pass p50 @LOW / floor, at most
TARGET_RSS_MB = 100.0  # ferryman resident memory after the run, below
TARGET_IDLE_RSS_MB = 80.0  # ferryman resident memory once started, before any load


# --------------------------------------------------------------------------- scenarios


@dataclass(frozen=True)
class Scenario:
    """One Ferryman route under load, measured as target `ferryman:<name>`.

    `route` is the entry added to the gateway file's `routes:` (its upstream is the
    static nginx, called `static`); `path` is what wrk requests; `headers` are sent
    with every request (`{api_key}` in a value becomes a client key made for the run);
    `gateway` is merged into the gateway file's top level (for sections such as limits
    that a route refers to).
    """

    name: str
    path: str
    route: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    gateway: dict[str, Any] = field(default_factory=dict)
    target: float | None = None
    """Lowest acceptable throughput @32 relative to the pass-through route."""
    body: bytes | None = None
    """Sent as a JSON POST when set (else a GET)."""
    expect: str = "json"
    """The upstream answer the target must relay: `json` or `sse` (nginx's two bodies)."""
    baseline: str = "pass"
    """The scenario its throughput is compared with."""


#: What the LLM scenarios POST: a short chat request.
CHAT_REQUEST = b'{"model":"openai/gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'

#: The baseline is `pass`; every other scenario is also reported relative to it (or to
#: its own `baseline`: the metered LLM routes to the same POST passed through).
SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        name="pass",
        path="/pass/v1/chat/completions",
        route={"name": "pass", "path": "/pass", "upstream": "static", "strip_prefix": True},
    ),
    Scenario(
        name="unmetered",
        path="/unmetered/v1/chat/completions",
        route={
            "name": "unmetered",
            "path": "/unmetered",
            "upstream": "static",
            "strip_prefix": True,
            "meter": "none",
        },
    ),
    Scenario(
        name="api_key",
        path="/keyed/v1/chat/completions",
        route={
            "name": "api_key",
            "path": "/keyed",
            "upstream": "static",
            "strip_prefix": True,
            "auth": ["api_key"],
        },
        headers={"Authorization": "Bearer {api_key}"},
        target=0.9,
    ),
    Scenario(
        name="pooled",
        path="/pooled/v1/chat/completions",
        route={"name": "pooled", "path": "/pooled", "upstream": "pooled", "strip_prefix": True},
        gateway={
            "upstreams": {
                "pooled": {
                    "url": "{upstream}",
                    # An open route: the pool is lent to everyone (the default lends
                    # it only to granted accounts).
                    "credential": {
                        "kind": "pool",
                        "probe_interval": 0,
                        "shared_access": "everyone",
                    },
                }
            }
        },
        target=0.9,
    ),
    Scenario(
        name="limited",
        path="/limited/v1/chat/completions",
        route={
            "name": "limited",
            "path": "/limited",
            "upstream": "static",
            "strip_prefix": True,
            "limits": "LIMITS",
        },
        target=0.9,
    ),
    Scenario(
        name="pass_post",
        path="/passpost/v1/chat/completions",
        route={
            "name": "pass_post",
            "path": "/passpost",
            "upstream": "static",
            "strip_prefix": True,
        },
        body=CHAT_REQUEST,
    ),
    Scenario(
        name="pass_sse",
        path="/passpost/v1/stream/chat/completions",
        route={},  # pass_post's route, asked for the event stream
        body=CHAT_REQUEST.replace(b'{"model"', b'{"stream":true,"model"'),
        expect="sse",
    ),
    Scenario(
        name="llm_json",
        path="/llmjson/v1/chat/completions",
        route={
            "name": "llm_json",
            "path": "/llmjson",
            "upstream": "static",
            "strip_prefix": True,
            "meter": "llm",
        },
        body=CHAT_REQUEST,
        target=0.85,
        baseline="pass_post",
    ),
    Scenario(
        name="llm_sse",
        path="/llmsse/v1/stream/chat/completions",
        route={
            "name": "llm_sse",
            "path": "/llmsse",
            "upstream": "static",
            "strip_prefix": True,
            "meter": "llm",
        },
        body=CHAT_REQUEST.replace(b'{"model"', b'{"stream":true,"model"'),
        expect="sse",
        target=0.85,
        baseline="pass_sse",
    ),
)

SCENARIOS += (
    Scenario(
        name="html_plain",
        path="/plainhtml/site/page.html",
        route={"name": "html_plain", "path": "/plainhtml", "upstream": "static",
               "strip_prefix": True},
        expect="html",
    ),
    Scenario(
        name="html_rewrite",
        path="/rw/site/page.html",
        route={"name": "html_rewrite", "path": "/rw", "upstream": "static",
               "strip_prefix": True, "rewrite": {"body": ["html"]}},
        expect="html_rewritten",
        target=0.6,
        baseline="html_plain",
    ),
    Scenario(  # the same page without an ETag: rewritten on every request, no cache
        name="html_rewrite_each",
        path="/rw/dyn/page.html",
        route={},  # html_rewrite's route
        expect="html_rewritten",
        baseline="html_plain",
    ),
)  # fmt: skip

#: Two tiers far above what the load reaches: the cost of checking, never a refusal.
LIMITS = ["10000000/hour", {"rate": "1000000/minute", "by": ["ip", "route"]}]

#: Provider keys put into the pool of the `pooled` scenario's upstream before the run.
POOL_KEYS = 3
BASELINE = "pass"


# --------------------------------------------------------------------------- upstream body


def completion_body() -> bytes:
    """A fixed ~500-byte JSON body shaped like an OpenAI chat completion."""
    content = (
        "Ferryman is a self-hosted access gateway for HTTP APIs. This fixed answer stands "
        "in for the reply of a model so that the benchmark measures the proxy, not the model."
    )
    body = {
        "id": "chatcmpl-bench0000000000000000000000000",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 24, "completion_tokens": 48, "total_tokens": 72},
        "system_fingerprint": "fp_bench",
    }
    return json.dumps(body, separators=(",", ":")).encode()


def stream_body() -> bytes:
    """An OpenAI-style event stream: eight content chunks, then the usage chunk."""
    base = {
        "id": "chatcmpl-bench0000000000000000000000000",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "gpt-4o-mini-2024-07-18",
    }
    delta = {"index": 0, "finish_reason": None}
    events: list[dict[str, Any]] = [
        {**base, "choices": [{**delta, "delta": {"content": f"word{n} "}}]} for n in range(8)
    ]
    usage = {"prompt_tokens": 24, "completion_tokens": 8, "total_tokens": 32}
    events.append({**base, "choices": [], "usage": usage})
    lines = [b"data: " + json.dumps(e, separators=(",", ":")).encode() + b"\n\n" for e in events]
    return b"".join(lines) + b"data: [DONE]\n\n"


def html_page(size: int = 50 * 1024) -> bytes:
    """A ~50 KB page of an app written for its host's root: links, images, scripts."""
    head = (
        '<!doctype html>\n<html><head><meta charset="utf-8"><title>Bench</title>\n'
        '<link rel="stylesheet" href="/static/app.css">\n'
        '<script type="module" src="/static/app.js"></script>\n</head><body>\n'
    )
    rows = []
    n = 0
    while len(head) + sum(map(len, rows)) < size:
        rows.append(
            f'<div class="row"><a href="/items/{n}">Item {n}</a> '
            f'<img src="/img/{n % 40}.png" alt="" width="16" height="16"> '
            f"<span>Some text of item {n}, as a list page would show it.</span></div>\n"
        )
        n += 1
    return (head + "".join(rows) + "</body></html>\n").encode()


BODY = completion_body()
SSE_BODY = stream_body()
PAGE = html_page()
BODIES = {"json": BODY, "sse": SSE_BODY, "html": PAGE}


def body_matches(expect: str, body: bytes) -> bool:
    if expect == "html_rewritten":  # the page, its links moved under the route's prefix
        return b'<a href="/rw/items/0">' in body and b'href="/items/' not in body
    return body == BODIES[expect]
