"""Fixtures of the key pool tests: a fake OpenRouter and a gateway pooled in front of it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from ferryman.clock import Clock
from ferryman.config.settings import Settings
from tests.fakes.openrouter import FakeOpenRouter
from tests.support import Running, serve_app


def pooled_gateway(
    base_url: str,
    *,
    auth: list[str] | None = None,
    timeout_read: float = 2,
    route_extra: dict[str, Any] | None = None,
    **pool: Any,
) -> dict[str, Any]:
    """`/v1/*` to the fake OpenRouter with keys from the pool (probing off unless asked;
    on an open route, the shared keys lent to everyone, as these tests are about the
    pool's mechanics: who may spend it is tested in test_pool_grants.py)."""
    lent = {"shared_access": "everyone"} if not auth or auth == ["none"] else {}
    credential = {"kind": "pool", "probe_interval": 0, **lent, **pool}
    return {
        "upstreams": {
            "openrouter": {
                "url": base_url,
                "provider": "openrouter",
                "credential": credential,
                "timeout": {"connect": 2, "read": timeout_read},
            }
        },
        "routes": [
            {
                "name": "llm",
                "path": "/v1",
                "upstream": "openrouter",
                "strip_prefix": True,
                "auth": auth or ["none"],
                **(route_extra or {}),
            }
        ],
    }


@contextlib.asynccontextmanager
async def pooled(
    settings: Settings,
    fake: FakeOpenRouter,
    keys: dict[str, str | None] | None = None,
    *,
    clock: Clock | None = None,
    auth: list[str] | None = None,
    timeout_read: float = 2,
    route_extra: dict[str, Any] | None = None,
    **pool: Any,
) -> AsyncIterator[Running]:
    """The gateway with `keys` (key → owner id, None for the shared pool) added unvalidated."""
    async with serve_app(
        settings,
        pooled_gateway(
            fake.base_url, auth=auth, timeout_read=timeout_read, route_extra=route_extra, **pool
        ),
        clock=clock,
    ) as gw:
        service = gw.app.upstream_keys
        assert service is not None
        for number, (key, owner) in enumerate((keys or {}).items()):
            await service.create(
                upstream="openrouter",
                name=f"key-{number}",
                secret=key,
                owner_id=owner,
                validate=False,
            )
        yield gw
