"""The Redis connection, for a fleet of instances; imported only when configured."""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any

from ferryman.errors import ConfigError

if TYPE_CHECKING:
    from redis.asyncio import Redis


def connect_redis(url: str) -> Redis:
    """A client for `url` (nothing connects until first use)."""
    if importlib.util.find_spec("redis") is None:
        raise ConfigError(
            "FERRYMAN_REDIS_URL is set but redis is not installed: pip install 'ferryman[redis]'"
        )
    from redis.asyncio import Redis

    try:
        return Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    except ValueError as exc:
        raise ConfigError(f"FERRYMAN_REDIS_URL: {exc}") from None


async def ping(client: Redis) -> dict[str, Any]:
    await client.ping()
    return {"backend": "redis"}


async def claim(client: Redis, key: str, seconds: float) -> bool:
    """Take `key` for `seconds` if no one holds it (a job's turn in a fleet)."""
    return bool(await client.set(key, b"1", nx=True, px=max(1, int(seconds * 1000))))
