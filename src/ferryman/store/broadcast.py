"""A Redis pub/sub channel between the instances of a fleet.

Each instance publishes small JSON messages and applies those of the others (its own
come back and are skipped by origin). Without Redis, publishing does nothing: a single
process has already applied its change. A lost subscription is reported to `on_lost`
(so a cache can forget what it may have missed) and retried every second.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson
import structlog

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.client import PubSub

log = structlog.get_logger("ferryman.broadcast")

Handler = Callable[[dict[str, Any]], None]


class Broadcast:
    """One named channel: `publish()` to the fleet, `handler` for what others send."""

    def __init__(self, name: str, handler: Handler, on_lost: Callable[[], None] | None = None):
        self.name = name
        self._handler = handler
        self._on_lost = on_lost
        self._origin = uuid.uuid4().hex
        self._redis: Redis | None = None
        self._channel = ""
        self._listener: asyncio.Task[None] | None = None
        self.received = 0

    @property
    def connected(self) -> bool:
        return self._redis is not None

    async def connect(self, redis: Redis, prefix: str) -> None:
        """Subscribe (returns once subscribed, so nothing published later is missed)."""
        self._redis = redis
        self._channel = f"{prefix}{self.name}"
        pubsub = redis.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(self._channel)
        self._listener = asyncio.create_task(self._listen(pubsub), name=f"broadcast:{self.name}")

    async def publish(self, payload: dict[str, Any]) -> None:
        if self._redis is None:
            return
        message = orjson.dumps({"origin": self._origin, **payload})
        try:
            await self._redis.publish(self._channel, message)
        except Exception as exc:
            log.warning("broadcast_publish_failed", channel=self.name, error=str(exc))

    async def _listen(self, pubsub: PubSub) -> None:
        while True:
            try:
                message = await pubsub.get_message(timeout=1.0)
                if message is None:
                    continue
                data = orjson.loads(message["data"])
                if data.get("origin") != self._origin:
                    self.received += 1
                    self._handler(data)
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                raise
            except Exception as exc:
                log.warning("broadcast_listener_error", channel=self.name, error=str(exc))
                if self._on_lost is not None:
                    self._on_lost()
                await asyncio.sleep(1.0)

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        self._redis = None
