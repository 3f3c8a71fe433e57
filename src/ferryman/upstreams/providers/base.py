"""The interface every provider adapter implements."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp

from ferryman.store.upstream_keys import Snapshot
from ferryman.upstreams.health import KeyState


@dataclass(frozen=True)
class Probe:
    """What a probe learned: the state the key is in, and why."""

    state: KeyState
    message: str
    snapshot: Snapshot | None = None


class ProbeFailed(Exception):
    """The probe itself failed (network, 5xx, garbage): nothing is known of the key."""


class Provider:
    """Asks an upstream about one key; `base` is the upstream's URL (with its prefix)."""

    name = "generic"

    @property
    def can_probe(self) -> bool:
        return False

    @property
    def can_sync(self) -> bool:
        return False

    async def probe(self, http: aiohttp.ClientSession, base: str, header: tuple[str, str]) -> Probe:
        raise NotImplementedError

    async def sync(self, http: aiohttp.ClientSession, base: str, header: tuple[str, str]) -> Probe:
        """A probe that also reads usage and credit (`snapshot` set when known)."""
        raise NotImplementedError


def state_for_status(status: int, invalid: tuple[int, ...]) -> KeyState | None:
    """The key state a refusal means, or None when the status says nothing of the key."""
    if status in invalid:
        return KeyState.INVALID
    if status == 402:
        return KeyState.OUT_OF_CREDIT
    if status == 429:
        return KeyState.COOLING_DOWN
    return None


async def error_message(response: aiohttp.ClientResponse) -> str:
    """The provider's own error message, short, when it sent one."""
    try:
        body = await response.json(content_type=None)
    except Exception:
        return f"HTTP {response.status}"
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return f"HTTP {response.status}: {error['message'][:200]}"
        if isinstance(error, str):
            return f"HTTP {response.status}: {error[:200]}"
    return f"HTTP {response.status}"
