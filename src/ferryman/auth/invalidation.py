"""Telling every cache that a credential or user changed.

Locally the change applies at once. With Redis configured, it is also published on
`<prefix>invalidate`; every instance subscribes and applies what others publish, so a
revocation reaches a fleet within the time a message takes (well under a second). If
a message is lost (Redis down), the cache's TTL still bounds how long a stale entry
lives.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ferryman.auth.cache import CredentialCache
from ferryman.auth.watch import Watchers
from ferryman.store.broadcast import Broadcast

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from ferryman.store.breaker import Breaker


class Invalidations:
    """Applies invalidations to the local cache and, when connected, to the fleet's."""

    def __init__(self, cache: CredentialCache, watchers: Watchers | None = None) -> None:
        self._cache = cache
        self._watchers = watchers
        # A lost connection: the cache forgets everything it may not have heard about.
        self._fleet = Broadcast("invalidate", self._received, on_lost=cache.clear)

    @property
    def received(self) -> int:
        return self._fleet.received

    def _received(self, data: dict[str, Any]) -> None:
        self._apply(str(data["kind"]), str(data["value"]))

    def _apply(self, kind: str, value: str) -> None:
        if kind == "user":
            self._cache.forget_user(value)
            if self._watchers is not None:
                self._watchers.user_changed(value)
        elif kind == "credential":
            self._cache.forget_credential(value)
            if self._watchers is not None:
                self._watchers.credential_changed(value)
        elif kind == "digest":
            self._cache.forget_digest(value)

    async def _publish(self, kind: str, value: str) -> None:
        self._apply(kind, value)
        await self._fleet.publish({"kind": kind, "value": value})

    async def user(self, user_id: str) -> None:
        await self._publish("user", user_id)

    async def credential(self, credential_id: str) -> None:
        await self._publish("credential", credential_id)

    async def digest(self, digest: str) -> None:
        """A credential that did not exist now does (forget its negative entry)."""
        await self._publish("digest", digest)

    async def connect(self, redis: Redis, prefix: str, breaker: Breaker | None = None) -> None:
        """Subscribe to the fleet's invalidations (returns once subscribed); publish
        through the Redis `breaker` when given."""
        await self._fleet.connect(redis, prefix, breaker)

    async def close(self) -> None:
        await self._fleet.close()
