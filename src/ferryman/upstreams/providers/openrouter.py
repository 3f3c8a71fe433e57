"""OpenRouter: `GET /key` tells a key's validity, usage (in all, and for the current UTC
day), limit and what remains of it; `GET /credits` the account's credit. Both take the
key as `Authorization: Bearer`."""

from __future__ import annotations

from typing import Any

import aiohttp

from ferryman.store.upstream_keys import Snapshot
from ferryman.upstreams.health import KeyState
from ferryman.upstreams.providers.base import (
    Probe,
    ProbeFailed,
    Provider,
    error_message,
    state_for_status,
)

INVALID = (401, 403)


def _number(data: dict[str, Any], name: str) -> float | None:
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


class OpenRouterProvider(Provider):
    name = "openrouter"

    def __init__(self, key_path: str = "/key", credits_path: str = "/credits") -> None:
        self.key_path = key_path
        self.credits_path = credits_path

    @property
    def can_probe(self) -> bool:
        return True

    @property
    def can_sync(self) -> bool:
        return True

    async def _get(
        self, http: aiohttp.ClientSession, url: str, header: tuple[str, str]
    ) -> tuple[int, dict[str, Any] | None, str]:
        try:
            async with http.get(url, headers=[header], allow_redirects=False) as response:
                if response.status != 200:
                    return response.status, None, await error_message(response)
                body = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise ProbeFailed(f"OpenRouter could not be asked: {type(exc).__name__}") from exc
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict):
            raise ProbeFailed("OpenRouter answered without a `data` object")
        return 200, data, "ok"

    async def probe(self, http: aiohttp.ClientSession, base: str, header: tuple[str, str]) -> Probe:
        status, data, message = await self._get(http, base + self.key_path, header)
        if data is None:
            state = state_for_status(status, INVALID)
            if state is None:
                raise ProbeFailed(f"OpenRouter answered {message}")
            return Probe(state, f"OpenRouter refused the key: {message}")
        snapshot = Snapshot(
            usage=_number(data, "usage"),
            credit_limit=_number(data, "limit"),
            limit_remaining=_number(data, "limit_remaining"),
            usage_daily=_number(data, "usage_daily"),
        )
        remaining = snapshot.limit_remaining
        if remaining is not None and remaining <= 0:
            return Probe(KeyState.OUT_OF_CREDIT, "OpenRouter: the key's limit is used up", snapshot)
        return Probe(KeyState.HEALTHY, "OpenRouter accepted the key", snapshot)

    async def sync(self, http: aiohttp.ClientSession, base: str, header: tuple[str, str]) -> Probe:
        probe = await self.probe(http, base, header)
        if probe.snapshot is None:
            return probe
        _, data, _ = await self._get(http, base + self.credits_path, header)
        if data is None:
            # The account's credit is a bonus; the key's own figures still count.
            return probe
        key = probe.snapshot
        snapshot = Snapshot(
            usage=key.usage,
            credit_limit=key.credit_limit,
            limit_remaining=key.limit_remaining,
            credits_total=_number(data, "total_credits"),
            credits_used=_number(data, "total_usage"),
            usage_daily=key.usage_daily,
        )
        return Probe(probe.state, probe.message, snapshot)
