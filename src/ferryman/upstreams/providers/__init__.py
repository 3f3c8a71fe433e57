"""Provider adapters: how to ask an upstream about one of its keys.

`probe()` answers "does this key work now?" (validity, credit); `snapshot()` reads the
key's usage, limit and credit for the periodic sync. The generic adapter probes a
configured path and knows nothing of usage; OpenRouter's reads `GET /key` and
`GET /credits`.
"""

from __future__ import annotations

from ferryman.config.upstreams import PoolCredential, Upstream
from ferryman.upstreams.providers.base import Probe, ProbeFailed, Provider
from ferryman.upstreams.providers.generic import GenericProvider
from ferryman.upstreams.providers.openrouter import OpenRouterProvider

__all__ = ["Probe", "ProbeFailed", "Provider", "provider_for"]


def provider_for(spec: Upstream) -> Provider:
    """The adapter for an upstream's `provider`, with its probe path."""
    credential = spec.credential
    probe_path = credential.probe_path if isinstance(credential, PoolCredential) else None
    if spec.provider == "openrouter":
        return OpenRouterProvider(probe_path or "/key")
    return GenericProvider(probe_path)
