"""Usage read from OpenAI-compatible requests, JSON answers and event streams."""

from __future__ import annotations

import itertools
import json

from hypothesis import given
from hypothesis import strategies as st

from ferryman.metering.extract import (
    MAX_LINE,
    SseUsage,
    Usage,
    json_usage,
    request_model,
)


def sse(*events: object, crlf: bool = False) -> bytes:
    end = b"\r\n" if crlf else b"\n"
    out = b""
    for event in events:
        text = event if isinstance(event, str) else json.dumps(event)
        out += b"data: " + text.encode() + end + end
    return out


CHUNK = {"id": "c1", "model": "openai/gpt-4o-mini", "choices": [{"delta": {"content": "hi"}}]}
USAGE = {
    "id": "c1",
    "model": "openai/gpt-4o-mini",
    "choices": [],
    "usage": {"prompt_tokens": 12, "completion_tokens": 30, "total_tokens": 42, "cost": 0.0021},
}
STREAM = b": OPENROUTER PROCESSING\n\n" + sse(CHUNK, CHUNK, USAGE, "[DONE]")
EXPECTED = Usage("openai/gpt-4o-mini", 12, 30, 42, 0.0021)


def test_the_model_of_a_request() -> None:
    assert request_model(b'{"model": "anthropic/claude-3.5", "messages": []}') == (
        "anthropic/claude-3.5"
    )
    for body in (b"", b"not json", b"[1, 2]", b'{"model": 7}', b'{"messages": []}', b'{"model":'):
        assert request_model(body) is None


def test_usage_of_a_json_answer() -> None:
    body = json.dumps({**USAGE, "choices": [{"message": {"content": "x"}}]}).encode()
    assert json_usage(body) == EXPECTED
    without_cost = {**USAGE, "usage": {"prompt_tokens": 1, "completion_tokens": 2}}
    assert json_usage(json.dumps(without_cost).encode()) == Usage(
        "openai/gpt-4o-mini", 1, 2, 3, None
    )
    assert json_usage(b"<html>", model="m") == Usage(model="m")
    assert json_usage(b'{"error": {"code": 429}}', model="m") == Usage(model="m")
    negative = {"usage": {"prompt_tokens": -1, "completion_tokens": True, "cost": "free"}}
    assert json_usage(json.dumps(negative).encode()) == Usage()


def test_usage_of_a_stream_fed_whole() -> None:
    reader = SseUsage()
    reader.feed(STREAM)
    assert reader.result() == EXPECTED


def test_crlf_streams_and_a_final_event_without_a_newline() -> None:
    reader = SseUsage(model="asked-for")
    reader.feed(sse(CHUNK, crlf=True) + b"data: " + json.dumps(USAGE).encode())
    assert reader.result() == EXPECTED


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_any_split_into_chunks_reads_the_same(cuts: list[int]) -> None:
    reader = SseUsage()
    bounds = [0, *sorted(cuts), len(STREAM)]
    for start, end in itertools.pairwise(bounds):
        reader.feed(STREAM[start:end])
    assert reader.result() == EXPECTED


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_any_split_reads_the_same_when_the_model_is_known_from_the_request(
    cuts: list[int],
) -> None:
    # With the model known, lines before the last usage mention are skipped unread.
    reader = SseUsage(model="asked-for")
    bounds = [0, *sorted(cuts), len(STREAM)]
    for start, end in itertools.pairwise(bounds):
        reader.feed(STREAM[start:end])
    assert reader.result() == EXPECTED


def test_the_last_usage_wins_and_a_broken_last_line_keeps_the_one_before() -> None:
    earlier = {**USAGE, "usage": {"prompt_tokens": 1, "completion_tokens": 1}}
    reader = SseUsage(model="asked-for")
    reader.feed(sse(CHUNK, earlier, CHUNK, USAGE))
    assert reader.result() == EXPECTED
    reader = SseUsage(model="asked-for")
    reader.feed(sse(earlier) + b'data: {"usage": broken\n\n')
    assert reader.result() == Usage("openai/gpt-4o-mini", 1, 1, 2, None)


def test_a_stream_cut_before_its_usage_still_tells_the_model() -> None:
    reader = SseUsage()
    reader.feed(sse(CHUNK, CHUNK)[:-5])
    assert reader.result() == Usage(model="openai/gpt-4o-mini")


def test_an_over_long_line_is_skipped_and_the_reader_recovers() -> None:
    reader = SseUsage()
    reader.feed(b"data: " + b"x" * (MAX_LINE + 10))
    reader.feed(b"y" * 100 + b"\n\n")
    assert reader._partial == b""
    reader.feed(sse(USAGE))
    assert reader.result() == EXPECTED


def test_only_the_incomplete_line_is_held() -> None:
    reader = SseUsage()
    for _ in range(1000):
        reader.feed(sse(CHUNK))
    reader.feed(b'data: {"partial')
    assert reader._partial == b'data: {"partial'
