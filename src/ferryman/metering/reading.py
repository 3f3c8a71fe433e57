"""An LLM exchange's usage, kept raw as it passes and read later.

Parsing on the request path is costly out of all proportion: done once per request
between two network events, with the caches cold, orjson and the checks around it cost
two to three times what they cost run back to back. So the request path only keeps
references to the bytes that tell the usage (the request body for its model, a JSON
answer, the end of an event stream) in a `Reading`; the usage writer reads a whole batch
of them at once, and a token limit that must charge at once reads its own.

What is kept is bounded: a body larger than `DEFER_LIMIT` is read at once instead, and
of an event stream only its last `TAIL` bytes are held while it passes (`StreamTail`),
from which the events that carry its usage are cut when it ends.
"""

from __future__ import annotations

from collections import deque

import orjson

from ferryman.metering.extract import SseUsage, Usage, json_usage, request_model, usage_of

#: A request or answer body larger than this is read at once rather than kept.
DEFER_LIMIT = 16 * 1024
#: How much of an event stream's end is held to find its usage in. The usage event comes
#: last, before `[DONE]` (OpenAI, OpenRouter: well under 1 KiB).
TAIL = 16 * 1024
#: Usage mentions looked at, from the end, for one whose value is an object.
MAX_MENTIONS = 64

_MENTION = b'"usage"'


class Reading:
    """What one exchange says about its usage, read when first asked (`usage()`)."""

    __slots__ = ("_answer", "_events", "_model", "_request", "_usage")

    def __init__(self, request: bytes | None = None, model: str | None = None) -> None:
        self._model = model
        self._request: bytes | None = None
        self._answer: bytes | None = None
        self._events: StreamTail | None = None
        self._usage: Usage | None = None
        if model is None and request:
            if len(request) > DEFER_LIMIT:
                self._model = request_model(request)
            else:
                self._request = request

    def answer(self, body: bytes) -> None:
        """The whole JSON answer."""
        if len(body) > DEFER_LIMIT:
            self._answer = body
            self.usage()
        else:
            self._answer = body

    def events(self, tail: StreamTail) -> None:
        """The end of an event stream (cut for its usage events when read)."""
        self._events = tail

    def model(self) -> str | None:
        """The model the request asked for."""
        if self._request is not None:
            self._model = request_model(self._request)
            self._request = None
        return self._model

    def usage(self) -> Usage:
        """What the answer said; its model, else the one the request asked for."""
        usage = self._usage
        if usage is None:
            if self._answer is not None:
                usage = json_usage(self._answer)
            elif self._events is not None:
                usage = stream_usage(self._events.usage_events())
            else:
                usage = Usage()
            if usage.model is None:
                usage = usage._replace(model=self.model())
            self._usage, self._answer, self._events = usage, None, None
        return usage


class StreamTail:
    """Holds the last `TAIL` bytes of an event stream as its chunks pass by (references
    to the chunks, no copies) and, once it has ended, cuts out its usage events."""

    __slots__ = ("_chunks", "_size")

    def __init__(self) -> None:
        self._chunks: deque[bytes] = deque()
        self._size = 0

    def feed(self, chunk: bytes) -> None:
        chunks = self._chunks
        chunks.append(chunk)
        self._size += len(chunk)
        while self._size - len(chunks[0]) >= TAIL:
            self._size -= len(chunks.popleft())

    def usage_events(self) -> bytes | None:
        """The stream from the line of its last usage object on, or None if it has none.

        When that line is unfinished (a stream cut short inside it), the line of the
        usage object before it is included too, so that the last whole one still counts.
        `"usage": null` (sent with every chunk when usage is asked for) is passed over.
        """
        chunks = self._chunks
        if not chunks:
            return None
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        start: int | None = None
        end = len(data)
        for _ in range(MAX_MENTIONS):
            mention = data.rfind(_MENTION, 0, end)
            if mention < 0:
                break
            if not _object_follows(data, mention + len(_MENTION)):
                end = mention  # the usage object may still come earlier on its line
                continue
            line = data.rfind(b"\n", 0, mention) + 1
            end = line
            start = line
            if data.find(b"\n", mention) >= 0:
                break  # a whole line (else the one before is taken too)
        return data[start:] if start is not None else None


def stream_usage(events: bytes | None) -> Usage:
    """The usage in the events `StreamTail.usage_events` cut out."""
    if events is None:
        return Usage()
    end = events.find(b"\n")
    if end > 0 and events.startswith(b"data:") and events.find(_MENTION, end) < 0:
        # Mostly the usage event is whole, first and alone: read just that line.
        try:
            usage = usage_of(orjson.loads(events[5:end]))
        except orjson.JSONDecodeError:
            pass
        else:
            if usage.has_tokens or usage.cost is not None:
                return usage
    reader = SseUsage()
    reader.feed(events)
    return reader.result()


def _object_follows(data: bytes, at: int) -> bool:
    """Whether `"usage"` at `at` is a key whose value is an object, not an empty one."""
    after = data[at : at + 32].lstrip()
    if after[:1] != b":":
        return False
    value = after[1:].lstrip()
    return value[:1] == b"{" and value[1:].lstrip()[:1] != b"}"
