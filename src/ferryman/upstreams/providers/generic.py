"""Any HTTP API: a key is probed by a GET of a configured path; 2xx means it works."""

from __future__ import annotations

import aiohttp

from ferryman.upstreams.health import KeyState
from ferryman.upstreams.providers.base import Probe, ProbeFailed, Provider, state_for_status

INVALID = (401, 403)


class GenericProvider(Provider):
    name = "generic"

    def __init__(self, probe_path: str | None) -> None:
        self.probe_path = probe_path

    @property
    def can_probe(self) -> bool:
        return self.probe_path is not None

    async def probe(self, http: aiohttp.ClientSession, base: str, header: tuple[str, str]) -> Probe:
        assert self.probe_path is not None
        try:
            async with http.get(
                base + self.probe_path, headers=[header], allow_redirects=False
            ) as response:
                await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ProbeFailed(f"probe failed: {type(exc).__name__}") from exc
        if 200 <= status < 300:
            return Probe(KeyState.HEALTHY, f"probe answered {status}")
        state = state_for_status(status, INVALID)
        if state is None:
            raise ProbeFailed(f"probe answered {status}")
        return Probe(state, f"probe answered {status}")
