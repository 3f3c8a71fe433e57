"""The proxy's auth paths through a real `ferryman serve` process."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.fakes.upstream import FakeUpstream
from tests.support import Api, GatewayProcess, client_session

pytestmark = pytest.mark.e2e

ADMIN = {"FERRYMAN_ADMIN_USERNAME": "root", "FERRYMAN_ADMIN_PASSWORD": "root password long"}
CHEAP_HASH = {
    "FERRYMAN_PASSWORD_HASH_TIME_COST": "1",
    "FERRYMAN_PASSWORD_HASH_MEMORY_KIB": "64",
    "FERRYMAN_PASSWORD_HASH_PARALLELISM": "1",
}


def gateway(upstream: FakeUpstream) -> dict[str, Any]:
    return {
        "accounts": {"registration": "open"},
        "upstreams": {"up": {"url": upstream.url}},
        "routes": [
            {
                "name": "llm",
                "path": "/v1",
                "upstream": "up",
                "upstream_path": "/echo",
                "strip_prefix": True,
                "auth": ["api_key"],
                "api_key_headers": ["X-Client-API-Key"],
            },
            {
                "name": "proxy",
                "path": "/api/v1/proxy",
                "upstream": "up",
                "upstream_path": "/echo",
                "strip_prefix": True,
                "auth": ["access_pass"],
            },
        ],
    }


@pytest.fixture
async def started(tmp_path: Path) -> Any:
    procs: list[GatewayProcess] = []

    async def start(config: dict[str, Any], env: dict[str, str]) -> GatewayProcess:
        proc = GatewayProcess(tmp_path, config, {**ADMIN, **CHEAP_HASH, **env})
        procs.append(proc)
        return await proc.start()

    yield start
    for proc in procs:
        await proc.stop()


async def test_keys_and_passes_through_a_real_server(
    started: Any, upstream: FakeUpstream, tmp_path: Path, secret: Any
) -> None:
    gw: GatewayProcess = await started(gateway(upstream), {})
    async with client_session() as http:
        api = Api(http, gw.url)
        admin = await api.login("root", "root password long")
        user, token = await api.user("quinn")
        # A key made on the command line works at the proxy.
        cli = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "ferryman", "keys", "create", "--user", "quinn"),
            *("--name", "cli"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=gw.env,
            cwd=gw.workdir,
        )
        out, err = await asyncio.wait_for(cli.communicate(), 60)
        assert cli.returncode == 0, err
        key = out.decode().strip()
        assert key.startswith("fm_") and len(key) == 46
        async with http.post(
            f"{gw.url}/v1/chat/completions", json={"model": "x"}, headers={"X-Client-API-Key": key}
        ) as r:
            assert r.status == 200
            echo = await r.json()
        assert echo["raw_path"] == "/echo/chat/completions"
        assert key not in str(echo["headers"])
        async with http.post(f"{gw.url}/v1/chat/completions") as r:
            assert r.status == 401
            assert r.headers["WWW-Authenticate"].startswith("Bearer")
        # Revoked through the API: refused at once.
        _, listed = await api.call("GET", "/keys", token=token, expect=200)
        await api.call("DELETE", f"/keys/{listed['items'][0]['id']}", token=token, expect=204)
        async with http.get(f"{gw.url}/v1/models", headers={"X-Client-API-Key": key}) as r:
            assert r.status == 401
            assert (await r.json())["error"] == "revoked_credential"
        # Seed 002's shape: an access pass on /api/v1/proxy.
        record = await api.new_pass(token, hours=1)
        async with http.get(
            f"{gw.url}/api/v1/proxy/page", headers={"X-Access-Token": record["token"]}
        ) as r:
            assert r.status == 200
            echo = await r.json()
        headers = dict(echo["headers"])
        assert headers["X-User-Id"] == user["id"]
        assert headers["X-Token-Id"] == record["id"]
        assert "X-Access-Token" not in headers
        _, state = await api.call("GET", f"/tokens/{record['id']}/status", token=token)
        assert state["status"] == "active"
        _, me = await api.call("GET", "/users/me", token=admin, expect=200)
        assert me["role"] == "admin"
    await gw.stop()
    output = gw.output()
    for value in (key, record["token"], token, admin):
        assert value not in output


async def test_two_workers_without_redis_honour_a_revocation_within_a_second(
    started: Any, upstream: FakeUpstream
) -> None:
    gw: GatewayProcess = await started(gateway(upstream), {"FERRYMAN_WORKERS": "2"})
    for _ in range(400):
        if sum(1 for e in gw.lines() if e["event"] == "ferryman_started") == 2:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError(f"two workers did not start:\n{gw.output()}")
    async with client_session() as http:
        api = Api(http, gw.url)
        _, token = await api.user("rita")
        created = await api.new_key(token)

        async def fresh_status() -> int:
            # A new connection each time, so both workers answer some.
            async with (
                aiohttp.ClientSession() as one,
                one.get(f"{gw.url}/v1/models", headers={"X-Client-API-Key": created["key"]}) as r,
            ):
                return r.status

        assert [await fresh_status() for _ in range(10)] == [200] * 10
        await api.call("DELETE", f"/keys/{created['id']}", token=token, expect=204)
        revoked = time.monotonic()
        await asyncio.sleep(1.1)
        statuses = [await fresh_status() for _ in range(20)]
        assert statuses == [401] * 20, f"{time.monotonic() - revoked:.2f}s after: {statuses}"
    assert any(e["event"] == "credential_cache_ttl_capped" for e in gw.lines())
