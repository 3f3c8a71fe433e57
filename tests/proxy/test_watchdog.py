"""The watchdog's ticks, driven by hand: what a request pays and when it is ended."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ferryman.errors import RequestTimeout
from ferryman.observability.context import RequestContext
from ferryman.proxy.client import BodyRules, ClientStream
from ferryman.proxy.watchdog import Watchdog

RULES = BodyRules(limit=1000, buffer=100, total_ticks=10, idle_ticks=3)


class Client:
    """An ASGI receive fed by the test."""

    def __init__(self) -> None:
        self.messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def send(self, body: bytes, more: bool = True) -> None:
        self.messages.put_nowait({"type": "http.request", "body": body, "more_body": more})

    async def receive(self) -> dict[str, Any]:
        return await self.messages.get()


async def test_a_quick_request_is_never_watched() -> None:
    watchdog, client = Watchdog(), Client()
    client.send(b"{}", more=False)
    stream = ClientStream(client.receive, RequestContext("id", "ip"), RULES, watchdog)
    assert await stream.first() == b"{}"
    watchdog.tick()  # the answer is still being made: not yet worth a watcher task
    stream.close()
    assert watchdog.streams == set()


async def test_a_long_request_gets_a_watcher_and_leaves_the_ticks() -> None:
    watchdog, client = Watchdog(), Client()
    client.send(b"", more=False)
    stream = ClientStream(client.receive, RequestContext("id", "ip"), RULES, watchdog)
    await stream.first()
    watchdog.tick()
    assert stream in watchdog.streams
    watchdog.tick()  # still running a tick later: watched from now on, not looked at
    assert stream not in watchdog.streams
    assert stream._watcher is not None
    stream.close()
    await asyncio.sleep(0)
    assert stream._watcher.cancelled() or stream._watcher.done()


async def test_a_stalled_body_is_timed_out_after_its_idle_ticks() -> None:
    watchdog, client = Watchdog(), Client()
    client.send(b"a" * 10)
    task = asyncio.ensure_future(
        ClientStream(client.receive, RequestContext("id", "ip"), RULES, watchdog).first()
    )
    await asyncio.sleep(0)  # it has the first piece and waits for the next
    for _ in range(RULES.idle_ticks - 1):
        watchdog.tick()
        assert not task.done()
    (stream,) = watchdog.streams
    watchdog.tick()
    assert stream.timed_out and isinstance(stream.error, RequestTimeout)
    assert "nothing for 0.15 s" in stream.error.message
    assert watchdog.timeouts == 1 and watchdog.streams == set()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_body_that_keeps_coming_still_has_a_total_limit() -> None:
    watchdog, client = Watchdog(), Client()
    stream = ClientStream(client.receive, RequestContext("id", "ip"), RULES, watchdog)
    task = asyncio.ensure_future(stream.first())
    for _ in range(RULES.total_ticks - 1):
        client.send(b"a")  # a byte a tick: never idle
        await asyncio.sleep(0)
        watchdog.tick()
    assert not stream.timed_out
    watchdog.tick()
    assert stream.timed_out and "not whole after 0.5 s" in str(stream.error)
    with pytest.raises(asyncio.CancelledError):
        await task
