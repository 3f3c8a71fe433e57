"""Revocations reach every gateway: at once in one process, via Redis across several."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from tests.fakes.upstream import FakeUpstream
from tests.support import Api, client_session, gateway_dict, serve_app


async def status(http: Any, url: str, key: str) -> int:
    async with http.get(url + "/echo", headers={"X-API-Key": key}) as r:
        return int(r.status)


async def test_a_revocation_reaches_another_instance_through_redis_within_a_second(
    settings_factory: Any, upstream: FakeUpstream, redis_url: str
) -> None:
    settings = settings_factory(redis_url=redis_url, redis_prefix=f"test-{uuid.uuid4().hex}:")
    config = gateway_dict(upstream.url, auth=["api_key"])
    async with (
        serve_app(settings, config) as one,
        serve_app(settings, config) as two,
        client_session() as http,
    ):
        api = Api(http, one.url)
        _, token = await api.user("olivia")
        created = await api.new_key(token)
        assert await status(http, one.url, created["key"]) == 200
        assert await status(http, two.url, created["key"]) == 200  # cached in both now
        await api.call("DELETE", f"/keys/{created['id']}", token=token, expect=204)
        revoked_at = time.monotonic()
        assert await status(http, one.url, created["key"]) == 401
        while await status(http, two.url, created["key"]) != 401:
            assert time.monotonic() - revoked_at < 1.0, "instance two still accepts the key"
            await asyncio.sleep(0.01)
        assert two.app.auth is not None and two.app.auth.invalidations.received >= 1


async def test_without_redis_another_instance_trusts_its_cache_until_the_ttl(
    settings_factory: Any, upstream: FakeUpstream
) -> None:
    """The control for the test above: the hook, not luck, is what spreads revocations."""
    settings = settings_factory(credential_cache_ttl=60)
    config = gateway_dict(upstream.url, auth=["api_key"])
    async with (
        serve_app(settings, config) as one,
        serve_app(settings, config) as two,
        client_session() as http,
    ):
        api = Api(http, one.url)
        _, token = await api.user("peggy")
        created = await api.new_key(token)
        assert await status(http, two.url, created["key"]) == 200
        await api.call("DELETE", f"/keys/{created['id']}", token=token, expect=204)
        assert await status(http, one.url, created["key"]) == 401
        assert await status(http, two.url, created["key"]) == 200
