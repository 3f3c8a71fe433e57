"""The built-in gateway as a stranger finds it, through a real `ferryman serve`: nobody
can open an account, and an account cannot spend the operator's shared keys until an
admin lends them; configurations that let strangers spend a pool are warned about."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fakes.openrouter import CHAT_PATH, FakeOpenRouter
from tests.support import Api, GatewayProcess, client_session

pytestmark = pytest.mark.e2e

SHARED = "sk-or-v1-" + "s" * 64
ADMIN = {"FERRYMAN_ADMIN_USERNAME": "root", "FERRYMAN_ADMIN_PASSWORD": "root password long"}
CHEAP_HASH = {
    "FERRYMAN_PASSWORD_HASH_TIME_COST": "1",
    "FERRYMAN_PASSWORD_HASH_MEMORY_KIB": "64",
    "FERRYMAN_PASSWORD_HASH_PARALLELISM": "1",
}
CHAT = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
async def builtin(tmp_path: Path, openrouter: FakeOpenRouter) -> AsyncIterator[Callable[..., Any]]:
    """`ferryman serve` with no file (seed 000's gateway) in front of the fake OpenRouter,
    one key in its shared pool."""
    procs: list[GatewayProcess] = []
    openrouter.add_key(SHARED, label="shared")

    async def start(**env: str) -> GatewayProcess:
        proc = GatewayProcess(
            tmp_path,
            None,
            {**ADMIN, **CHEAP_HASH, "FERRYMAN_OPENROUTER_URL": openrouter.base_url, **env},
        )
        added = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "ferryman", "upstream-keys", "add"),
            *("--upstream", "openrouter", "--name", "main", "--no-validate"),
            stdin=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            env=proc.env,
            cwd=tmp_path,
        )
        _, err = await asyncio.wait_for(added.communicate((SHARED + "\n").encode()), 60)
        assert added.returncode == 0, err
        procs.append(proc)
        return await proc.start()

    yield start
    for proc in procs:
        await proc.stop()


async def test_registration_is_closed_by_default(builtin: Callable[..., Any]) -> None:
    gw: GatewayProcess = await builtin()
    async with client_session() as http:
        status, body = await Api(http, gw.url).call(
            "POST",
            "/auth/register",
            json={"username": "stranger", "password": "a long enough password"},
        )
    assert (status, body["error"]) == (403, "registration_closed")


async def test_a_registered_account_spends_the_pool_only_once_an_admin_lends_it(
    builtin: Callable[..., Any], openrouter: FakeOpenRouter
) -> None:
    gw: GatewayProcess = await builtin(FERRYMAN_REGISTRATION_ENABLED="true")
    async with client_session() as http:
        api = Api(http, gw.url)
        user, token = await api.user("stranger")
        key = (await api.new_key(token))["key"]

        async def chat() -> tuple[int, Any]:
            async with http.post(
                f"{gw.url}/v1/chat/completions", json=CHAT, headers={"X-Client-API-Key": key}
            ) as r:
                return r.status, await r.json()

        status, body = await chat()
        assert (status, body["error"]) == (403, "shared_pool_not_granted")
        assert not [c for c in openrouter.calls_for(SHARED) if c.path == CHAT_PATH]

        admin = await api.login("root", "root password long")
        await api.call(
            "PATCH",
            f"/admin/users/{user['id']}",
            token=admin,
            json={"permissions": ["pool:openrouter"]},
            expect=200,
        )
        status, body = await chat()
        assert status == 200 and body["object"] == "chat.completion"
    assert openrouter.served_by(SHARED) == 1
    # Open registration on its own lends nothing, so there is nothing to warn about.
    assert not [e for e in gw.lines() if e["event"] == "config_warning"]


def strangers_file(tmp_path: Path, openrouter: FakeOpenRouter, **accounts: Any) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "upstreams": {
                    "openrouter": {
                        "url": openrouter.base_url,
                        "provider": "openrouter",
                        "credential": "pool",
                    }
                },
                "routes": [{"path": "/v1", "upstream": "openrouter", "auth": ["api_key"]}],
                "accounts": accounts,
            }
        )
    )
    return path


def check_config(path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ferryman", "check-config", str(path)],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", **env},
        timeout=60,
    )


def test_check_config_warns_when_anyone_can_register_and_spend_a_pool(
    tmp_path: Path, openrouter: FakeOpenRouter
) -> None:
    lent = strangers_file(
        tmp_path, openrouter, registration="open", permissions=["pool:openrouter"]
    )
    result = check_config(lent)
    assert result.returncode == 0, result.stderr
    assert (
        "warning: registration is open and accounts.permissions grants pool:openrouter: "
        "anyone who can reach the gateway can register and spend the shared key pool of "
        "upstream 'openrouter'"
    ) in result.stderr
    # Closed by the environment, the same file is safe.
    assert "warning" not in check_config(lent, FERRYMAN_REGISTRATION_ENABLED="false").stderr
    # Open, but new accounts are lent nothing: safe too.
    assert (
        "warning"
        not in check_config(strangers_file(tmp_path, openrouter, registration="open")).stderr
    )


async def test_serve_warns_about_the_same_at_start(
    tmp_path: Path, openrouter: FakeOpenRouter
) -> None:
    gateway = yaml.safe_load(
        strangers_file(
            tmp_path, openrouter, registration="open", permissions=["pool:*"]
        ).read_text()
    )
    gw = GatewayProcess(tmp_path, gateway, CHEAP_HASH)
    await gw.start()
    await gw.stop()
    warnings = [e["detail"] for e in gw.lines() if e["event"] == "config_warning"]
    assert warnings == [
        "registration is open and accounts.permissions grants pool:openrouter: anyone who "
        "can reach the gateway can register and spend the shared key pool of upstream "
        "'openrouter'"
    ]
