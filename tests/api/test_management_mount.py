"""The management API loads on its first request, once, and not before."""

from __future__ import annotations

import ast
import asyncio
import subprocess
import sys
from collections.abc import Callable

from ferryman.config.settings import Settings
from tests.api.helpers import running
from tests.conftest import LogReader


async def test_loaded_once_by_the_first_of_concurrent_requests(
    settings_factory: Callable[..., Settings], logs: LogReader
) -> None:
    async with running(settings_factory(docs_enabled=True)) as (gw, client):
        mount = gw.app.mount
        assert mount is not None and not mount.loaded
        # Health, metrics and the proxy's own answers do not load it.
        async with client.http.get(f"{gw.url}/health/ready") as r:
            assert r.status == 200
        async with client.http.get(f"{gw.url}/v1/models") as r:
            assert r.status == 502  # the proxy's own answer: its upstream is nowhere
        assert not mount.loaded

        async def ask(path: str) -> int:
            async with client.http.get(f"{gw.url}{path}") as r:
                await r.read()
                return r.status

        paths = ["/api/v1/users/me", "/openapi.json"] * 4
        statuses = await asyncio.gather(*(ask(p) for p in paths))
        assert statuses == [401, 200] * 4
        assert mount.loaded
        (loaded,) = logs.events("management_api_loaded")
        assert loaded["duration_ms"] > 0
        assert await ask("/api/v1/users/me") == 401
        assert len(logs.events("management_api_loaded")) == 1


def test_the_gateway_app_does_not_import_fastapi_nor_pyjwt() -> None:
    """What keeps ~16 MB out of an instance that serves only the proxy (PyJWT too: no
    route of the default gateway takes JWTs)."""
    prefixes = ("fastapi", "starlette", "ferryman.api.", "jwt")
    probe = f"import sys, ferryman.app; print([m for m in sys.modules if m.startswith({prefixes})])"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    # The mount and the function it calls on first use, which import nothing of FastAPI.
    assert sorted(ast.literal_eval(out.stdout)) == ["ferryman.api.build", "ferryman.api.mount"]
