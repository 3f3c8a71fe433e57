"""A Redis pub/sub channel between the instances of a fleet.

Each instance publishes small JSON messages and applies those of the others (its own
come back and are skipped by origin). Without Redis, publishing does nothing: a single
process has already applied its change. A lost subscription is reported to `on_lost`
(so a cache can forget what it may have missed) and retried every second.

Publishing waits at most `PUBLISH_TIMEOUT` (a silent server would otherwise hold the
caller for the client's 2 s socket timeout), and not at all while the Redis breaker is
open: the message is then sent in the background, so a revocation still reaches the
fleet if Redis is back before the breaker has probed it, and the caller (a management
API request) never waits on a Redis that is known to be down.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson
import structlog

from ferryman.store.breaker import Breaker, BreakerOpen

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.client import PubSub

log = structlog.get_logger("ferryman.broadcast")

Handler = Callable[[dict[str, Any]], None]

#: Seconds a publish may take.
PUBLISH_TIMEOUT = 1.0


class Broadcast:
    """One named channel: `publish()` to the fleet, `handler` for what others send."""

    def __init__(self, name: str, handler: Handler, on_lost: Callable[[], None] | None = None):
        self.name = name
        self._handler = handler
        self._on_lost = on_lost
        self._origin = uuid.uuid4().hex
        self._redis: Redis | None = None
        self._breaker: Breaker | None = None
        self._channel = ""
        self._listener: asyncio.Task[None] | None = None
        self._late: set[asyncio.Task[None]] = set()
        self.received = 0
        self.deferred = 0
        """Messages sent in the background because the breaker was open."""

    @property
    def connected(self) -> bool:
        return self._redis is not None

    async def connect(self, redis: Redis, prefix: str, breaker: Breaker | None = None) -> None:
        """Subscribe (returns once subscribed, so nothing published later is missed);
        publish through `breaker` when given."""
        self._redis = redis
        self._breaker = breaker
        self._channel = f"{prefix}{self.name}"
        pubsub = redis.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(self._channel)
        self._listener = asyncio.create_task(self._listen(pubsub), name=f"broadcast:{self.name}")

    async def publish(self, payload: dict[str, Any]) -> None:
        redis = self._redis
        if redis is None:
            return
        message = orjson.dumps({"origin": self._origin, **payload})
        try:
            if self._breaker is None:
                async with asyncio.timeout(PUBLISH_TIMEOUT):
                    await redis.publish(self._channel, message)
            else:
                await self._breaker.call(
                    lambda: redis.publish(self._channel, message), PUBLISH_TIMEOUT
                )
        except BreakerOpen:
            self.deferred += 1
            task = asyncio.create_task(self._late_publish(redis, message))
            self._late.add(task)
            task.add_done_callback(self._late.discard)
        except Exception as exc:
            log.warning(
                "broadcast_publish_failed", channel=self.name, error=f"{type(exc).__name__}: {exc}"
            )

    async def _late_publish(self, redis: Redis, message: bytes) -> None:
        # Outside the breaker's count: its probe, not this, decides when Redis is back.
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT):
                await redis.publish(self._channel, message)
        except Exception as exc:
            log.warning(
                "broadcast_publish_failed",
                channel=self.name,
                error=f"{type(exc).__name__}: {exc}",
                deferred=True,
            )

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
        for task in list(self._late):
            task.cancel()
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        self._redis = None
