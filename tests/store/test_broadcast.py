"""Broadcasts through the Redis breaker: a publish never waits on a Redis known to be
down, and the message still goes out when Redis is in fact back."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from ferryman.clock import FakeClock
from ferryman.config.limits import RedisBreaker
from ferryman.store.breaker import Breaker
from ferryman.store.broadcast import PUBLISH_TIMEOUT, Broadcast
from ferryman.store.redis import connect_redis


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = connect_redis(redis_url)
    yield client
    await client.aclose()


async def pair(redis: Redis, breaker: Breaker) -> tuple[Broadcast, Broadcast, list[dict[str, Any]]]:
    prefix = f"test-{uuid.uuid4().hex}:"
    got: list[dict[str, Any]] = []
    sender = Broadcast("news", lambda data: None)
    receiver = Broadcast("news", got.append)
    await sender.connect(redis, prefix, breaker)
    await receiver.connect(redis, prefix)
    return sender, receiver, got


async def arrived(got: list[dict[str, Any]], count: int) -> None:
    deadline = time.monotonic() + 2
    while len(got) < count:
        assert time.monotonic() < deadline, f"{len(got)} of {count} messages arrived"
        await asyncio.sleep(0.01)


async def test_a_publish_goes_through_a_closed_breaker(redis: Redis) -> None:
    breaker = Breaker(RedisBreaker(), FakeClock())
    sender, receiver, got = await pair(redis, breaker)
    try:
        await sender.publish({"kind": "user", "value": "u1"})
        await arrived(got, 1)
        assert got[0]["value"] == "u1" and sender.deferred == 0 and breaker.closed
    finally:
        await sender.close()
        await receiver.close()


async def test_with_the_breaker_open_a_publish_returns_at_once_and_is_sent_later(
    redis: Redis,
) -> None:
    breaker = Breaker(RedisBreaker(failures=1), FakeClock())
    ticket = breaker.admit()
    assert ticket is not None
    breaker.failed(ticket, TimeoutError())  # Redis was silent a moment ago
    sender, receiver, got = await pair(redis, breaker)
    try:
        await sender.publish({"kind": "credential", "value": "revoked"})
        assert sender.deferred == 1
        # Redis is in fact back: the revocation reaches the fleet all the same ...
        await arrived(got, 1)
        assert got[0]["value"] == "revoked"
        # ... and the breaker waits for its own probe to say so.
        assert breaker.state == "open"
    finally:
        await sender.close()
        await receiver.close()


async def test_a_frozen_redis_holds_a_publish_for_the_timeout_once_then_not_at_all(
    private_redis: tuple[str, subprocess.Popen[bytes]],
) -> None:
    url, server = private_redis
    client = connect_redis(url)
    breaker = Breaker(RedisBreaker(failures=1), FakeClock())
    sender = Broadcast("news", lambda data: None)
    await sender.connect(client, "t:", breaker)
    server.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        await sender.publish({"kind": "user", "value": "u1"})  # logged, not raised
        first = time.monotonic() - started
        assert breaker.state == "open"
        started = time.monotonic()
        await sender.publish({"kind": "user", "value": "u2"})
        second = time.monotonic() - started
    finally:
        server.send_signal(signal.SIGCONT)
        await sender.close()
        await client.aclose()
    assert PUBLISH_TIMEOUT * 0.9 <= first < PUBLISH_TIMEOUT + 0.5
    assert second < 0.05 and sender.deferred == 1
