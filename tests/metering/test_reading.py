"""Usage kept raw on the request path and read later: the end of an event stream held by
`StreamTail` and cut down to its usage events, and a `Reading` of request and answer."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferryman.metering.extract import MAX_REQUEST, SseUsage, Usage, json_usage
from ferryman.metering.reading import (
    DEFER_LIMIT,
    MAX_MENTIONS,
    TAIL,
    Reading,
    StreamTail,
    stream_usage,
)

ASKED = "gpt-4o-mini"
MODEL = "gpt-4o-mini-2024-07-18"
REQUEST = json.dumps(
    {
        "model": ASKED,
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "hi"}],
    }
).encode()


def sse(*events: object, crlf: bool = False) -> bytes:
    """Events as OpenAI sends them: compact JSON, one `data:` line each."""
    end = b"\r\n" if crlf else b"\n"
    out = b""
    for event in events:
        text = event if isinstance(event, str) else json.dumps(event, separators=(",", ":"))
        out += b"data: " + text.encode() + end + end
    return out


def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    """A chat.completion.chunk (with `"usage": null`, as with include_usage)."""
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": MODEL,
        "system_fingerprint": "fp_1",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        "usage": None,
        **extra,
    }


def usage_chunk(prompt: int = 12, completion: int = 30, **extra: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": MODEL,
        "system_fingerprint": "fp_1",
        "choices": [],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        },
        **extra,
    }


def openai_stream(contents: list[str], usage: dict[str, Any] | None = None) -> bytes:
    """A whole stream: role, content deltas, finish, the usage chunk, `[DONE]`."""
    return sse(
        chunk({"role": "assistant", "content": "", "refusal": None}),
        *(chunk({"content": text}) for text in contents),
        chunk({}, finish="stop"),
        usage if usage is not None else usage_chunk(),
        "[DONE]",
    )


EXPECTED = Usage(MODEL, 12, 30, 42, None)
USAGE_LINE = sse(usage_chunk())
DONE = sse("[DONE]")
LONG = openai_stream([f"token {i} " for i in range(2000)])


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(cuts), len(data)]
    return [data[start:end] for start, end in itertools.pairwise(bounds)]


def tail_of(chunks: list[bytes]) -> StreamTail:
    tail = StreamTail()
    for piece in chunks:
        tail.feed(piece)
    return tail


def read_tail(chunks: list[bytes], request: bytes | None = REQUEST) -> Usage:
    """What the usage writer reads of a stream passed through a `StreamTail`."""
    reading = Reading(request)
    reading.events(tail_of(chunks))
    return reading.usage()


def fed_whole(stream: bytes) -> Usage:
    reader = SseUsage()
    reader.feed(stream)
    return reader.result()


def tokens(usage: Usage) -> Usage:
    """The usage without its model (a stream cut short is read for its tokens)."""
    return usage._replace(model=None)


# -- StreamTail -----------------------------------------------------------------------------


@given(st.lists(st.text(max_size=12), max_size=8), st.data())
def test_any_split_of_a_stream_reads_from_its_tail_as_from_the_whole(
    contents: list[str], data: st.DataObject
) -> None:
    stream = openai_stream(contents)
    cuts = data.draw(st.lists(st.integers(min_value=0, max_value=len(stream)), max_size=12))
    assert fed_whole(stream) == EXPECTED
    assert read_tail(split(stream, cuts)) == EXPECTED


@given(st.lists(st.integers(min_value=0, max_value=len(LONG)), max_size=12))
def test_any_split_of_a_long_stream_reads_from_its_tail_as_from_the_whole(
    cuts: list[int],
) -> None:
    assert len(LONG) > 4 * TAIL
    assert fed_whole(LONG) == EXPECTED
    assert read_tail(split(LONG, cuts)) == EXPECTED


def test_a_long_stream_holds_only_its_tail_and_still_finds_its_usage() -> None:
    # 2,000 content events fed as they come, one per chunk.
    pieces = [piece + b"\n\n" for piece in LONG.split(b"\n\n") if piece]
    assert b"".join(pieces) == LONG and len(pieces) > 2000
    tail = StreamTail()
    largest = 0
    for piece in pieces:
        tail.feed(piece)
        largest = max(largest, len(piece))
        assert tail._size < TAIL + largest
    assert len(LONG) > 10 * TAIL
    assert tail.usage_events() == USAGE_LINE + DONE
    assert read_tail(pieces) == EXPECTED


def test_the_tail_is_the_last_tail_bytes_and_what_came_before_is_forgotten() -> None:
    def padding(size: int) -> list[bytes]:
        """`size` bytes of SSE comment lines, in chunks of at most 1,000 bytes."""
        lines = b"".join(b": " + b"." * 997 + b"\n" for _ in range(size // 1000 + 1))
        return split(lines[:size], list(range(1000, size, 1000)))

    def after_usage(size: int) -> list[bytes]:
        return [sse(chunk({"content": "hi"})), USAGE_LINE, *padding(size)]

    assert sum(map(len, padding(TAIL))) == TAIL
    # The usage event is held while fewer than TAIL bytes follow it...
    assert tail_of(after_usage(TAIL - 1)).usage_events() == USAGE_LINE + b"".join(padding(TAIL - 1))
    assert read_tail(after_usage(TAIL - 1)) == EXPECTED
    # ...and let go of once TAIL bytes have followed it.
    assert tail_of(after_usage(TAIL)).usage_events() is None
    assert read_tail(after_usage(TAIL)) == Usage(model=ASKED)


def test_an_include_usage_stream_is_cut_down_to_its_usage_event() -> None:
    # Every chunk says `"usage":null` (hundreds of mentions, far more than the tail's
    # worth); only the last one carries the usage.
    stream = openai_stream([f"word{i} " for i in range(300)])
    assert stream.count(b'"usage":null') > 300 and len(stream) > 4 * TAIL
    pieces = split(stream, list(range(512, len(stream), 512)))
    events = tail_of(pieces).usage_events()
    assert events == USAGE_LINE + DONE
    assert len(events) < 1024
    assert read_tail(pieces) == EXPECTED


def test_null_usage_with_spaces_and_crlf_lines_is_passed_over_too() -> None:
    stream = b"".join(
        [
            sse(usage_chunk(), crlf=True),
            b'data: {"model": "x", "usage" : null}\r\n\r\n',
            b'data: {"model": "x", "usage":\tnull }\r\n\r\n',
            sse("[DONE]", crlf=True),
        ]
    )
    assert tail_of([stream]).usage_events() == stream
    assert read_tail([stream]) == EXPECTED


def test_whitespace_around_the_colon_is_still_a_usage_object() -> None:
    line = b'data: {"model": "m", "usage" :  {"prompt_tokens": 3, "completion_tokens": 4}}\n\n'
    stream = sse(chunk({"content": "hi"})) + line + DONE
    assert tail_of([stream]).usage_events() == line + DONE
    assert read_tail([stream]) == Usage("m", 3, 4, 7, None)


def test_a_stream_cut_inside_its_last_usage_keeps_the_usage_before_it() -> None:
    earlier = sse(usage_chunk(12, 10))
    last = sse(usage_chunk(12, 30))
    middle = sse(chunk({"content": "more"}), chunk({"content": "words"}))
    cut = last[: last.index(b'"completion_tokens"')]  # inside the usage object
    stream = sse(chunk({"content": "hi"})) + earlier + middle + cut
    events = tail_of([stream]).usage_events()
    assert events == earlier + middle + cut
    assert read_tail(split(stream, [100, 300])) == Usage(MODEL, 12, 10, 22, None)
    assert fed_whole(stream) == Usage(MODEL, 12, 10, 22, None)


def test_a_stream_cut_anywhere_keeps_the_tokens_the_whole_of_it_says() -> None:
    # Usage in every chunk, running totals (vLLM's continuous usage stats): cut anywhere,
    # the last whole usage object counts, as it does for SseUsage fed all of it.
    running = [
        chunk({"content": f"w{i}"}, usage={"prompt_tokens": 5, "completion_tokens": i})
        for i in range(1, 8)
    ]
    stream = sse(*running, usage_chunk(5, 7), "[DONE]")
    for end in range(len(stream) + 1):
        prefix = stream[:end]
        assert tokens(read_tail([prefix])) == tokens(fed_whole(prefix)), prefix[-80:]
        assert tokens(read_tail(split(prefix, [end // 3, end // 2]))) == tokens(fed_whole(prefix))
    assert read_tail([stream]) == Usage(MODEL, 5, 7, 12, None)


def test_an_include_usage_stream_cut_inside_its_only_usage_has_no_tokens() -> None:
    stream = openai_stream(["hi"])
    cut = stream[: stream.index(b'"total_tokens"')]
    events = tail_of([cut]).usage_events()
    assert events is not None and events.startswith(b"data: ") and b'"usage":{' in events
    assert read_tail([cut]) == Usage(model=ASKED)


def test_a_stream_without_usage_has_no_usage_events() -> None:
    plain = sse(
        {"id": "c1", "model": MODEL, "choices": [{"delta": {"content": "hi"}}]},
        {"id": "c1", "model": MODEL, "choices": [{"delta": {}, "finish_reason": "stop"}]},
        "[DONE]",
    )
    # With include_usage asked for but the stream cut before its usage chunk.
    nulls = openai_stream(["a", "b"])
    nulls = nulls[: nulls.index(USAGE_LINE)]
    # ...after more `"usage":null` mentions than are looked at (MAX_MENTIONS).
    many = openai_stream([f"w{i}" for i in range(MAX_MENTIONS * 2)])
    many = many[: many.index(USAGE_LINE)]
    assert many.count(b'"usage":null') > 2 * MAX_MENTIONS
    for stream in (plain, nulls, many):
        assert tail_of(split(stream, [10, 50])).usage_events() is None
        assert read_tail([stream]) == Usage(model=ASKED)
    assert StreamTail().usage_events() is None
    assert tail_of([b""]).usage_events() is None


def test_usage_in_content_or_as_a_value_does_not_hide_the_usage_object() -> None:
    stream = b": OPENROUTER PROCESSING\n\n" + sse(
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": 'say "usage"'}),  # sent as say \"usage\"
        chunk({"content": '"usage": {"prompt_tokens": 999, "completion_tokens": 999}'}),
        chunk({"content": "usage"}),
        chunk({}, finish="stop"),
        usage_chunk(),
        {"type": "usage", "note": "usage"},
        {"id": "x", "choices": [{"delta": {"content": "usage"}}]},
        "[DONE]",
    )
    assert b'say \\"usage\\"' in stream
    assert tail_of([stream]).usage_events() == stream[stream.index(USAGE_LINE) :]
    assert read_tail(split(stream, [40, 400, 900])) == EXPECTED


USAGE_FIRST = {
    "id": "chatcmpl-1",
    "model": MODEL,
    "usage": {"prompt_tokens": 12, "completion_tokens": 30, "total_tokens": 42},
}


@pytest.mark.parametrize(
    "last",
    [
        {**USAGE_FIRST, "type": "usage"},
        {**USAGE_FIRST, "choices": [{"index": 0, "delta": {"content": "usage"}}]},
    ],
    ids=["type-tag", "content"],
)
def test_usage_as_a_value_after_the_usage_object_on_its_line_does_not_hide_it(
    last: dict[str, Any],
) -> None:
    # The same chunk carries the usage object and, after it, "usage" as a value (a type
    # tag, or a last content delta). SseUsage reads it; the tail must cut it out too.
    stream = sse(chunk({"content": "hi"}), last, "[DONE]")
    assert fed_whole(stream) == EXPECTED
    assert tail_of([stream]).usage_events() == sse(last, "[DONE]")
    assert read_tail([stream]) == EXPECTED


EARLIER = sse(usage_chunk(12, 10))


@pytest.mark.parametrize(
    "events",
    [
        USAGE_LINE + DONE,  # the usual: the usage event whole, first and alone
        USAGE_LINE,
        sse(usage_chunk(), "[DONE]", crlf=True),
        USAGE_LINE.rstrip(b"\n"),  # a last event without its newline
        b"data:" + USAGE_LINE[len(b"data: ") :],
        EARLIER + sse(chunk({"content": "x"})) + USAGE_LINE[:-30],  # cut in the last
        EARLIER + USAGE_LINE[: USAGE_LINE.index(b'"usa') + 4],  # cut in the word
        EARLIER + USAGE_LINE + DONE,
        USAGE_LINE + sse({"type": "usage"}),
        b'data: {"usage": {broken\n\n' + USAGE_LINE,
        b'data: {"model": "m", "usage": {}}\n\n' + DONE,
        b'data: {"model": "m", "usage": {"prompt_tokens": -1}}\n\n',
        b'data: {"model": "m", "usage": {"cost": 0.25}}\n\n',
        b'data: ["usage", {"prompt_tokens": 1}]\n\n',
        b'data: {"usage": {"prompt_tokens": 1, "completion_tokens": 2}} trailing\n\n',
        b'event: usage\ndata: {"usage": {"prompt_tokens": 1, "completion_tokens": 2}}\n\n',
        b'ge": {"prompt_tokens": 1}}\n\n' + USAGE_LINE,  # a tail starting mid-line
        b'data: {"usage": {}}\n\ndata: {"model": "late", "choices": []}\n\n',
        b': hi {"usage": {"prompt_tokens": 1, "completion_tokens": 2}}\n\n',  # a comment
    ],
)
def test_the_cut_out_events_read_as_sse_usage_reads_them(events: bytes) -> None:
    # stream_usage reads a lone whole usage event straight; whatever it reads must be
    # what SseUsage reads of the same bytes.
    reader = SseUsage()
    reader.feed(events)
    assert stream_usage(events) == reader.result()


def test_stream_usage_of_no_events_is_a_usage_of_nothing() -> None:
    assert stream_usage(None) == Usage()
    assert stream_usage(b"") == Usage()
    assert stream_usage(USAGE_LINE + DONE) == EXPECTED


# -- Reading --------------------------------------------------------------------------------

ANSWER = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "model": MODEL,
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 30, "total_tokens": 42, "cost": 0.5},
}


def answered(request: bytes | None, answer: bytes, model: str | None = None) -> Reading:
    reading = Reading(request, model=model)
    reading.answer(answer)
    return reading


def test_the_answers_model_wins_over_the_requests() -> None:
    reading = answered(REQUEST, json.dumps(ANSWER).encode())
    assert reading.usage() == Usage(MODEL, 12, 30, 42, 0.5)
    assert reading.model() == ASKED
    given_model = answered(None, json.dumps(ANSWER).encode(), model="given")
    assert given_model.usage() == Usage(MODEL, 12, 30, 42, 0.5)


def test_the_requests_model_stands_in_when_the_answer_has_none_or_is_not_json() -> None:
    no_model = {key: value for key, value in ANSWER.items() if key != "model"}
    assert answered(REQUEST, json.dumps(no_model).encode()).usage() == Usage(ASKED, 12, 30, 42, 0.5)
    for answer in (b"<html>bad gateway</html>", b"", b"[1, 2]", b'{"error": {"code": 429}}'):
        assert answered(REQUEST, answer).usage() == Usage(model=ASKED), answer
    assert answered(REQUEST, json.dumps({**ANSWER, "model": ""}).encode()).usage() == Usage(
        ASKED, 12, 30, 42, 0.5
    )


def test_a_model_given_up_front_stands_in_for_the_request() -> None:
    # A `stream_usage` route parses the request itself and passes its model on.
    reading = Reading(REQUEST, model="given")
    assert reading.model() == "given"
    reading.events(StreamTail())  # a stream that said nothing
    assert reading.usage() == Usage(model="given")
    no_model = {key: value for key, value in ANSWER.items() if key != "model"}
    assert answered(None, json.dumps(no_model).encode(), model="given").usage() == Usage(
        "given", 12, 30, 42, 0.5
    )


def test_bodies_over_the_defer_limit_read_the_same_as_small_ones() -> None:
    padding = "x" * DEFER_LIMIT
    large_request = json.dumps(
        {"model": ASKED, "messages": [{"role": "user", "content": padding}]}
    ).encode()
    large_answer_document = {
        **ANSWER,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": padding}}],
    }
    large_answer = json.dumps(large_answer_document).encode()
    small_answer = json.dumps(ANSWER).encode()
    assert len(large_request) > DEFER_LIMIT and len(large_answer) > DEFER_LIMIT
    assert len(REQUEST) <= DEFER_LIMIT and len(small_answer) <= DEFER_LIMIT

    for request in (REQUEST, large_request):
        for answer in (small_answer, large_answer):
            assert answered(request, answer).usage() == Usage(MODEL, 12, 30, 42, 0.5)
        no_model = json.dumps({**large_answer_document, "model": None}).encode()
        assert answered(request, no_model).usage() == Usage(ASKED, 12, 30, 42, 0.5)
        assert answered(request, b"x" * (DEFER_LIMIT + 1)).usage() == Usage(model=ASKED)
        assert Reading(request).model() == ASKED

    # Larger ones are read at once, not kept.
    assert Reading(large_request)._request is None
    assert Reading(REQUEST)._request is REQUEST
    reading = answered(REQUEST, large_answer)
    assert reading._answer is None and reading._usage == Usage(MODEL, 12, 30, 42, 0.5)
    assert answered(REQUEST, small_answer)._answer is small_answer


def test_a_request_too_large_to_parse_has_no_model() -> None:
    huge = json.dumps({"model": ASKED, "messages": [{"content": "x" * MAX_REQUEST}]}).encode()
    assert Reading(huge).model() is None
    assert answered(huge, b"not json").usage() == Usage()


def test_a_reading_of_nothing_is_a_usage_of_nothing() -> None:
    assert Reading().usage() == Usage()
    assert Reading().model() is None
    assert Reading(b"").usage() == Usage()
    nothing = Reading()
    nothing.events(StreamTail())
    assert nothing.usage() == Usage()
    assert Reading(REQUEST).usage() == Usage(model=ASKED)
    assert Reading(b"not json").usage() == Usage()


def test_events_are_read_for_the_usage_and_the_requests_model_fills_in() -> None:
    reading = Reading(REQUEST)
    reading.events(tail_of([USAGE_LINE, DONE]))
    assert reading.usage() == EXPECTED
    # A usage chunk without a model: the request's (the stream's earlier chunks, which
    # name it, are not part of the usage events).
    no_model = {key: value for key, value in usage_chunk().items() if key != "model"}
    reading = Reading(REQUEST)
    reading.events(tail_of([openai_stream(["hi"], usage=no_model)]))
    assert reading.usage() == Usage(ASKED, 12, 30, 42, None)


def test_the_usage_is_read_once_and_kept() -> None:
    reading = answered(REQUEST, json.dumps(ANSWER).encode())
    first = reading.usage()
    assert reading.usage() is first
    assert reading._answer is None and reading._events is None  # the bytes are let go
    assert reading.model() == ASKED
    # What comes after the usage was read changes nothing.
    reading.events(tail_of([USAGE_LINE]))
    reading.answer(b"{}")
    assert reading.usage() is first


def test_the_answer_is_preferred_over_events() -> None:
    reading = Reading(REQUEST)
    reading.events(tail_of([sse(usage_chunk(1, 1))]))
    reading.answer(json.dumps(ANSWER).encode())
    assert reading.usage() == json_usage(json.dumps(ANSWER).encode())


def test_a_later_empty_usage_object_does_not_hide_the_real_one() -> None:
    stream = sse(usage_chunk(), {**chunk({}), "usage": {}}).replace(b'"usage":{}', b'"usage": { }')
    stream += DONE
    assert read_tail([stream]) == EXPECTED == fed_whole(stream)
