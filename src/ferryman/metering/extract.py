"""Tokens, cost and model of an OpenAI-compatible exchange, parsed from its bytes.

The request's model comes from its JSON body. A JSON response's usage is read from the
whole body; event-stream text is fed to `SseUsage` in pieces (`metering.reading` gives
it the events cut from a stream's end): only the current incomplete line is held
(bounded), and the last `usage` object seen wins (OpenAI and OpenRouter send it in a
final chunk; OpenRouter adds `usage.cost`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson

#: A single SSE line longer than this is not parsed (usage chunks are small).
MAX_LINE = 256 * 1024
#: Request bodies larger than this are not parsed for their model.
MAX_REQUEST = 1024 * 1024


class Usage(NamedTuple):
    """What one response said about itself; None where it said nothing."""

    model: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    cost: float | None = None
    """The provider's own cost (OpenRouter's `usage.cost`), in its currency."""

    @property
    def has_tokens(self) -> bool:
        return self.prompt_tokens is not None or self.completion_tokens is not None


def _int(value: Any) -> int | None:
    # type() rather than isinstance: a bool is an int, and not a count.
    return value if type(value) is int and value >= 0 else None


def _float(value: Any) -> float | None:
    kind = type(value)
    return float(value) if (kind is float or kind is int) and value >= 0 else None


def usage_of(document: Any, model: str | None = None) -> Usage:
    """The usage in one parsed response object (or stream chunk)."""
    if type(document) is not dict:
        return Usage(model)
    found = document.get("model")
    if type(found) is str and found:
        model = found
    usage = document.get("usage")
    if type(usage) is not dict:
        return Usage(model)
    prompt = _int(usage["prompt_tokens"] if "prompt_tokens" in usage else usage.get("input_tokens"))
    completion = _int(
        usage["completion_tokens"] if "completion_tokens" in usage else usage.get("output_tokens")
    )
    total = _int(usage.get("total_tokens"))
    if total is None and prompt is not None and completion is not None:
        total = prompt + completion
    return Usage(model, prompt, completion, total, _float(usage.get("cost")))


def _request_object(body: bytes) -> dict[str, Any] | None:
    """A request body parsed, if it is a JSON object of a reasonable size."""
    if not body or len(body) > MAX_REQUEST or body.lstrip()[:1] != b"{":
        return None
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return document if isinstance(document, dict) else None


def request_model(body: bytes) -> str | None:
    """The `model` of a JSON request body, if it has one (never raises)."""
    document = _request_object(body)
    model = document.get("model") if document is not None else None
    return model if isinstance(model, str) and model else None


def with_stream_usage(body: bytes) -> tuple[str | None, bytes | None]:
    """The request's model, and its body asking for the stream's usage chunk
    (`stream_options.include_usage: true`), or None to send it as it is: not a JSON
    object, not a stream, or the client already said what it wants."""
    document = _request_object(body)
    if document is None:
        return None, None
    model = document.get("model")
    if not isinstance(model, str) or not model:
        model = None
    if document.get("stream") is not True:
        return model, None
    options = document.get("stream_options")
    if options is None:
        options = {}
    elif not isinstance(options, dict) or "include_usage" in options:
        return model, None
    document["stream_options"] = {**options, "include_usage": True}
    return model, orjson.dumps(document)


def json_usage(body: bytes, model: str | None = None) -> Usage:
    """The usage of a whole JSON response body (a Usage of nothing if it is not one)."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return Usage(model=model)
    return usage_of(document, model)


class SseUsage:
    """Reads `data:` events of an event stream as its chunks pass by."""

    __slots__ = ("_partial", "_skipping", "model", "usage")

    def __init__(self, model: str | None = None) -> None:
        self.model = model
        self.usage: Usage | None = None
        self._partial = b""
        self._skipping = False

    def feed(self, chunk: bytes) -> None:
        """Take the next chunk (the caller sends it on unchanged)."""
        data = self._partial + chunk if self._partial else chunk
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                break
            if self._skipping:
                self._skipping = False  # the end of an over-long line
            else:
                self._line(data[start:end])
            start = end + 1
        self._keep(data[start:])

    def _keep(self, rest: bytes) -> None:
        """Hold the unfinished last line for the next chunk (drop an over-long one)."""
        if len(rest) > MAX_LINE:
            self._partial = b""
            self._skipping = True
        elif not self._skipping:
            self._partial = rest

    def _line(self, line: bytes) -> None:
        if not line.startswith(b"data:"):
            return
        payload = line[5:].strip()
        if not payload or payload == b"[DONE]" or payload[:1] != b"{":
            return
        # Only chunks that mention usage (or a first model) are worth parsing.
        if b'"usage"' not in payload and (self.model is not None or b'"model"' not in payload):
            return
        try:
            document = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return
        found = usage_of(document, self.model)
        self.model = found.model
        if found.has_tokens or found.cost is not None:
            self.usage = found

    def result(self) -> Usage:
        """What the stream said so far (also for a stream cut short)."""
        if self._partial and not self._skipping:
            self._line(self._partial.rstrip(b"\r"))
            self._partial = b""
        return self.usage if self.usage is not None else Usage(model=self.model)
