"""A fake OpenRouter API: a real aiohttp server on loopback whose keys can be told to misbehave.

Every route lives under /api/v1 and needs `Authorization: Bearer <key>` for a registered key
(otherwise 401):

    GET  /api/v1/key               the key's label, usage (in all and today) and limit, as
                                   OpenRouter shows them
    GET  /api/v1/credits           total_credits and total_usage, from `credits`
    POST /api/v1/chat/completions  a JSON completion, or with "stream": true an OpenAI-style
                                   SSE stream (body fields x_chunks=N, x_interval=S; with
                                   x_usage_only_if_asked the stream has no usage chunk
                                   unless stream_options.include_usage is true)
    GET  /api/v1/models            a small model list
    anything else under /api/v1    404

Each key has a behaviour: "ok", "401", "402", "403", "429" (Retry-After when given), "500",
"503", "hang" (never answers), "reset" (drops the connection unanswered), "reset_midway"
(200 headers and part of the body, then drops the connection) or "moderation" (403 for a
chat completion, as OpenRouter answers flagged input; /key still 200). /key and /credits
still answer 200 for 429/500/503 keys, and for a 402 key /key shows limit_remaining 0, as
the real service does. Errors use OpenRouter's shape `{"error": {"code": N, "message":
"..."}}`. Every answer for a registered key carries `X-Fake-Key-Label`, so tests can tell
which key served.

With `charge = True`, each completion served adds its cost to its key's `usage` and
`usage_daily`, as the real service bills it; otherwise usage moves only when a test sets it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

API_PREFIX = "/api/v1"
KEY_PATH = f"{API_PREFIX}/key"
CREDITS_PATH = f"{API_PREFIX}/credits"
CHAT_PATH = f"{API_PREFIX}/chat/completions"
MODELS_PATH = f"{API_PREFIX}/models"
LABEL_HEADER = "X-Fake-Key-Label"

BEHAVIOURS = frozenset(
    {
        "ok",
        "401",
        "402",
        "403",
        "429",
        "500",
        "503",
        "hang",
        "reset",
        "reset_midway",
        "moderation",
    }
)
#: Behaviours that /key and /credits ignore: the key itself is still valid.
_KEY_STILL_VALID = frozenset({"429", "500", "503"})
_MESSAGES = {
    400: "Bad request",
    401: "User not found.",
    402: "Insufficient credits. Add more using https://openrouter.ai/credits",
    403: "Key is disabled",
    404: "Not Found",
    429: "Rate limit exceeded",
    500: "Internal Server Error",
    503: "No available providers for this request",
}
MODELS = [
    {
        "id": "openai/gpt-4o-mini",
        "name": "OpenAI: GPT-4o-mini",
        "context_length": 128000,
        "pricing": {"prompt": "0.00000015", "completion": "0.0000006"},
    },
    {
        "id": "meta-llama/llama-3.1-8b-instruct:free",
        "name": "Meta: Llama 3.1 8B Instruct (free)",
        "context_length": 131072,
        "pricing": {"prompt": "0", "completion": "0"},
    },
]
PROMPT_TOKENS = 5
COST = 0.0001


@dataclass
class FakeKey:
    """A registered key and how it behaves."""

    key: str
    label: str
    usage: float = 0.0
    limit: float | None = None
    behaviour: str = "ok"
    retry_after: str | None = None
    usage_daily: float = 0.0
    """What the key spent in the current UTC day."""


@dataclass
class Call:
    """One request the fake received; `status` is 0 while pending, or when it hung or reset."""

    key: str | None
    method: str
    path: str
    at: float
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


def _check_behaviour(behaviour: str) -> None:
    if behaviour not in BEHAVIOURS:
        raise ValueError(f"unknown behaviour {behaviour!r}; one of {sorted(BEHAVIOURS)}")


def _bearer(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def _sse(payload: object) -> bytes:
    return f"data: {json.dumps(payload)}\n\n".encode()


class FakeOpenRouter:
    """Start with `await fake.start()`; point clients at `fake.base_url`."""

    def __init__(self) -> None:
        self.keys: dict[str, FakeKey] = {}
        self.credits: tuple[float, float] = (100.0, 0.0)
        self.charge = False
        self.requests: list[Call] = []
        self.hang_started = asyncio.Event()
        self.hang_cancelled = asyncio.Event()
        self.hangs_cancelled = 0
        self.port = 0
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.app = web.Application()
        self.app.router.add_route("*", API_PREFIX + "{tail:.*}", self._dispatch)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + API_PREFIX

    async def start(self) -> FakeOpenRouter:
        self._runner = web.AppRunner(
            self.app,
            handle_signals=False,
            access_log=None,
            shutdown_timeout=0.1,
            handler_cancellation=True,  # so a hang sees the client give up
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- configuration -------------------------------------------------------------------

    def add_key(
        self,
        key: str,
        *,
        label: str | None = None,
        usage: float = 0.0,
        limit: float | None = None,
        behaviour: str = "ok",
        retry_after: str | None = None,
    ) -> None:
        """Register (or replace) a key; the label defaults to a masked form of the key."""
        _check_behaviour(behaviour)
        self.keys[key] = FakeKey(
            key=key,
            label=label if label is not None else f"sk-or-v1-...{key[-3:]}",
            usage=usage,
            limit=limit,
            behaviour=behaviour,
            retry_after=retry_after,
        )

    def set_behaviour(self, key: str, behaviour: str, *, retry_after: str | None = None) -> None:
        """Change how a registered key behaves from now on."""
        _check_behaviour(behaviour)
        state = self.keys[key]
        state.behaviour = behaviour
        state.retry_after = retry_after

    # -- inspection ----------------------------------------------------------------------

    def calls_for(self, key: str | None) -> list[Call]:
        return [call for call in self.requests if call.key == key]

    def served_by(self, key: str) -> int:
        """How many chat completions this key answered with 200."""
        return sum(
            1
            for call in self.requests
            if call.key == key and call.path == CHAT_PATH and call.status == 200
        )

    # -- serving -------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        key = _bearer(request)
        call = Call(
            key=key,
            method=request.method,
            path=request.path,
            at=time.monotonic(),
            headers={name.lower(): value for name, value in request.headers.items()},
        )
        self.requests.append(call)
        state = self.keys.get(key) if key is not None else None
        if state is None:
            message = "No auth credentials found" if key is None else _MESSAGES[401]
            return self._error(call, None, 401, message)

        behaviour = state.behaviour
        route = (request.method, request.path)
        if behaviour == "hang":
            return await self._hang()
        if behaviour == "reset":
            return await self._reset(request)
        if behaviour in {"401", "403"}:
            return self._error(call, state, int(behaviour))
        if behaviour == "moderation" and route == ("POST", CHAT_PATH):
            # OpenRouter refuses flagged input with 403; the key itself stays valid.
            return self._error(call, state, 403, "Your input was flagged by moderation")
        key_info = route in {("GET", KEY_PATH), ("GET", CREDITS_PATH)}
        if behaviour in {"402", "429", "500", "503"} and not (
            key_info and (behaviour in _KEY_STILL_VALID or behaviour == "402")
        ):
            return self._error(call, state, int(behaviour))

        if route == ("GET", KEY_PATH):
            return await self._key(request, call, state)
        if route == ("GET", CREDITS_PATH):
            total_credits, total_usage = self.credits
            payload = {"data": {"total_credits": total_credits, "total_usage": total_usage}}
            return await self._json(request, call, state, payload)
        if route == ("GET", MODELS_PATH):
            return await self._json(request, call, state, {"data": MODELS})
        if route == ("POST", CHAT_PATH):
            return await self._chat(request, call, state)
        return self._error(call, state, 404)

    def _error(
        self, call: Call, state: FakeKey | None, status: int, message: str | None = None
    ) -> web.Response:
        call.status = status
        headers: dict[str, str] = {}
        if state is not None:
            headers[LABEL_HEADER] = state.label
            if status == 429 and state.retry_after is not None:
                headers["Retry-After"] = state.retry_after
        body = {"error": {"code": status, "message": message or _MESSAGES[status]}}
        return web.json_response(body, status=status, headers=headers)

    async def _json(
        self, request: web.Request, call: Call, state: FakeKey, payload: object
    ) -> web.StreamResponse:
        if state.behaviour == "reset_midway":
            return await self._cut_json(request, state, json.dumps(payload).encode())
        call.status = 200
        return web.json_response(payload, headers={LABEL_HEADER: state.label})

    async def _key(self, request: web.Request, call: Call, state: FakeKey) -> web.StreamResponse:
        limit = state.limit
        remaining = None if limit is None else max(limit - state.usage, 0.0)
        if state.behaviour == "402":
            limit = state.usage if limit is None else limit
            remaining = 0.0
        data = {
            "label": state.label,
            "usage": state.usage,
            "usage_daily": state.usage_daily,
            "limit": limit,
            "limit_remaining": remaining,
            "is_free_tier": False,
            "rate_limit": {"requests": 10, "interval": "10s"},
        }
        return await self._json(request, call, state, {"data": data})

    async def _chat(self, request: web.Request, call: Call, state: FakeKey) -> web.StreamResponse:
        try:
            call.body = await request.read()
            body = json.loads(call.body)
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
            chunks = int(body.get("x_chunks", 3))
            interval = float(body.get("x_interval", 0))
        except (ValueError, TypeError) as exc:
            return self._error(call, state, 400, f"Invalid request body: {exc}")
        model = str(body.get("model", "openrouter/auto"))
        completion_id = f"gen-fake-{next(self._ids)}"
        usage = {
            "prompt_tokens": PROMPT_TOKENS,
            "completion_tokens": chunks,
            "total_tokens": PROMPT_TOKENS + chunks,
            "cost": COST,
        }
        options = body.get("stream_options")
        asked = isinstance(options, dict) and options.get("include_usage") is True
        if body.get("stream") is True and body.get("x_usage_only_if_asked") and not asked:
            usage = {}  # as OpenAI does: no usage chunk unless asked for
        if self.charge:  # billed whether or not the answer shows its usage
            state.usage += COST
            state.usage_daily += COST
        if body.get("stream") is True:
            return await self._stream(
                request, call, state, completion_id, model, chunks, interval, usage
            )
        payload = {
            "id": completion_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": " ".join(["tok"] * chunks)},
                    "finish_reason": "stop",
                }
            ],
            "usage": usage,
        }
        return await self._json(request, call, state, payload)

    async def _stream(
        self,
        request: web.Request,
        call: Call,
        state: FakeKey,
        completion_id: str,
        model: str,
        chunks: int,
        interval: float,
        usage: dict[str, Any],
    ) -> web.StreamResponse:
        cut = state.behaviour == "reset_midway"
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                LABEL_HEADER: state.label,
            }
        )
        await response.prepare(request)
        if not cut:
            call.status = 200
        base = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }
        for index in range(chunks):
            last = index == chunks - 1
            choice = {
                "index": 0,
                "delta": {"role": "assistant", "content": "tok"},
                "finish_reason": "stop" if last else None,
            }
            await response.write(_sse({**base, "choices": [choice]}))
            if cut:
                await response.drain()
                await asyncio.sleep(0.05)  # let the client read the chunk first
                return await self._reset(request, response)
            if interval > 0 and not last:
                await asyncio.sleep(interval)
        if usage:
            await response.write(_sse({**base, "choices": [], "usage": usage}))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def _hang(self) -> web.Response:
        self.hang_started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            self.hangs_cancelled += 1
            self.hang_cancelled.set()
            raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def _reset(
        self, request: web.Request, response: web.StreamResponse | None = None
    ) -> web.StreamResponse:
        """Drop the connection; aiohttp then finds it closed and sends nothing more."""
        transport = request.transport
        if transport is not None:
            transport.abort()
        return response if response is not None else web.Response()

    async def _cut_json(
        self, request: web.Request, state: FakeKey, body: bytes
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "application/json", LABEL_HEADER: state.label}
        )
        response.content_length = len(body)
        await response.prepare(request)
        await response.write(body[: len(body) // 2])
        await response.drain()
        await asyncio.sleep(0.05)
        return await self._reset(request, response)
