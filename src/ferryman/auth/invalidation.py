"""Telling every cache that a credential or user changed.

Locally the change applies at once. With Redis configured, it is also published on
`<prefix>invalidate`; every instance subscribes and applies what others publish, so a
revocation reaches a fleet within the time a message takes (well under a second). If
a message is lost (Redis down), the cache's TTL still bounds how long a stale entry
lives.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import TYPE_CHECKING

import orjson
import structlog

from ferryman.auth.cache import CredentialCache

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = structlog.get_logger("ferryman.invalidation")


class Invalidations:
    """Applies invalidations to the local cache and, when connected, to the fleet's."""

    def __init__(self, cache: CredentialCache) -> None:
        self._cache = cache
        self._redis: Redis | None = None
        self._channel = ""
        self._origin = uuid.uuid4().hex
        self._listener: asyncio.Task[None] | None = None
        self.received = 0

    def _apply(self, kind: str, value: str) -> None:
        if kind == "user":
            self._cache.forget_user(value)
        elif kind == "credential":
            self._cache.forget_credential(value)
        elif kind == "digest":
            self._cache.forget_digest(value)

    async def _publish(self, kind: str, value: str) -> None:
        self._apply(kind, value)
        if self._redis is None:
            return
        message = orjson.dumps({"origin": self._origin, "kind": kind, "value": value})
        try:
            await self._redis.publish(self._channel, message)
        except Exception as exc:  # the TTL still bounds staleness
            log.warning("invalidation_publish_failed", kind=kind, error=str(exc))

    async def user(self, user_id: str) -> None:
        await self._publish("user", user_id)

    async def credential(self, credential_id: str) -> None:
        await self._publish("credential", credential_id)

    async def digest(self, digest: str) -> None:
        """A credential that did not exist now does (forget its negative entry)."""
        await self._publish("digest", digest)

    async def connect(self, redis: Redis, prefix: str) -> None:
        """Subscribe to the fleet's invalidations (returns once subscribed)."""
        self._redis = redis
        self._channel = f"{prefix}invalidate"
        pubsub = redis.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(self._channel)
        self._listener = asyncio.create_task(self._listen(pubsub), name="invalidations")

    async def _listen(self, pubsub: object) -> None:
        from redis.asyncio.client import PubSub

        assert isinstance(pubsub, PubSub)
        while True:
            try:
                message = await pubsub.get_message(timeout=1.0)
                if message is None:
                    continue
                data = orjson.loads(message["data"])
                if data.get("origin") != self._origin:
                    self._apply(str(data["kind"]), str(data["value"]))
                    self.received += 1
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                raise
            except Exception as exc:
                # A lost connection: the cache forgets everything it cannot hear about.
                log.warning("invalidation_listener_error", error=str(exc))
                self._cache.clear()
                await asyncio.sleep(1.0)

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
