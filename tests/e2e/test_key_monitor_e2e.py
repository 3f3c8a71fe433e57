"""Seed 003, the API key monitor, through a real `ferryman serve` in front of a fake
OpenRouter: a user registers by email, adds their own key, their traffic is metered, the
sync reads the provider, and a `stats:read` client key reads it all back in one call."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from ferryman.config.settings import Settings
from tests.fakes.openrouter import COST, PROMPT_TOKENS, FakeOpenRouter
from tests.support import PASSWORD, Api, GatewayProcess, client_session

pytestmark = pytest.mark.e2e

EXAMPLE = Path(__file__).parents[2] / "examples" / "key-monitor.yaml"
ADMIN = {"FERRYMAN_ADMIN_USERNAME": "root", "FERRYMAN_ADMIN_PASSWORD": "root password long"}
ENV = {
    **ADMIN,
    # Registration is opened by the example file itself. Six registrations and logins
    # from one address within a minute are more than the default 5/minute allows.
    "FERRYMAN_AUTH_RATE_LIMIT": "60/minute",
    "FERRYMAN_UPSTREAM_SYNC_INTERVAL": "0.3",
    "FERRYMAN_USAGE_FLUSH_INTERVAL": "0.1",
    "FERRYMAN_PASSWORD_HASH_TIME_COST": "1",
    "FERRYMAN_PASSWORD_HASH_MEMORY_KIB": "64",
    "FERRYMAN_PASSWORD_HASH_PARALLELISM": "1",
}
CHAT = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
CHUNKS = 3  # completion tokens of each of the fake's answers


@pytest.fixture
async def openrouter() -> AsyncIterator[FakeOpenRouter]:
    fake = await FakeOpenRouter().start()
    fake.charge = True  # completions count in the key's usage, as they are billed
    yield fake
    await fake.stop()


def key_monitor(base_url: str) -> dict[str, Any]:
    """examples/key-monitor.yaml (which meters its route as LLM calls) pointed at the fake."""
    config: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    config["upstreams"]["openrouter"]["url"] = base_url
    assert config["routes"][0]["meter"] == "llm"
    return config


async def until(check: Callable[[], Awaitable[Any]], timeout: float = 20.0) -> Any:
    """The first truthy answer of `check`, polled."""
    deadline = time.monotonic() + timeout
    while True:
        found = await check()
        if found:
            return found
        assert time.monotonic() < deadline, "not reached in time"
        await asyncio.sleep(0.1)


def database_env(settings: Settings) -> dict[str, str]:
    """The process's database: SQLite in its data dir, or the test's PostgreSQL schema."""
    if settings.database_url is None:
        return {}
    return {
        "FERRYMAN_DATABASE_URL": settings.database_url,
        "FERRYMAN_DATABASE_SCHEMA": settings.database_schema or "",
    }


async def test_a_user_registered_by_email_reads_their_key_state_figures_and_history(
    tmp_path: Path,
    openrouter: FakeOpenRouter,
    secret: Callable[[str], str],
    db_settings: Settings,
) -> None:
    key = secret("sk-or-v1-")
    openrouter.add_key(key, usage=1.0, limit=5.0)
    env = {**ENV, **database_env(db_settings)}
    gw = await GatewayProcess(tmp_path, key_monitor(openrouter.base_url), env).start()
    secrets: list[str] = [key]
    try:
        async with client_session() as http:
            api = Api(http, gw.url)
            # Registration by email alone, the confirmation checked.
            status, refused = await api.call(
                "POST", "/auth/register",
                json={"email": "ann@example.com", "password": PASSWORD,
                      "password_confirm": PASSWORD + "!"},
            )  # fmt: skip
            assert status == 422 and refused["error"] == "validation_error"
            assert refused["details"] == [
                {"field": "password_confirm", "message": "does not match password"}
            ]
            _, ann = await api.call(
                "POST", "/auth/register",
                json={"email": "ann@example.com", "password": PASSWORD,
                      "password_confirm": PASSWORD},
                expect=201,
            )  # fmt: skip
            assert {"id", "email", "created_at"} <= set(ann) and ann["email"] == "ann@example.com"
            token = await api.login("ann@example.com")
            secrets.append(token)

            # Her own key, validated with the provider, then her traffic through it.
            _, added = await api.call(
                "POST", "/upstream-keys", token=token,
                json={"upstream": "openrouter", "name": "mine", "key": key}, expect=201,
            )  # fmt: skip
            client_key = (await api.new_key(token, "dash", scopes=["proxy", "stats:read"]))["key"]
            secrets.append(client_key)
            for _ in range(3):
                async with http.post(
                    f"{gw.url}/v1/chat/completions", json=CHAT,
                    headers={"Authorization": f"Bearer {client_key}"},
                ) as r:  # fmt: skip
                    assert r.status == 200, await r.text()
            spent = 3 * COST

            async def settled() -> Any:
                _, listing = await api.call(
                    "GET", "/stats/provider-keys", token=client_key, expect=200
                )
                (item,) = listing["items"]
                usage = item["provider"]["usage"]
                metered = item["stats"]["total_requests"] == 3
                return item if metered and usage == pytest.approx(1.0 + spent) else None

            item = await until(settled)
            assert (item["id"], item["name"], item["masked"]) == (
                added["id"], "mine", f"{key[:8]}…{key[-4:]}",
            )  # fmt: skip
            assert (item["state"], item["is_active"], item["cooling_until"]) == (
                "healthy", True, None,
            )  # fmt: skip
            provider = item["provider"]
            assert provider["limit"] == 5.0
            assert provider["limit_remaining"] == pytest.approx(5.0 - 1.0 - spent)
            assert provider["credits_total"] == 100.0 and provider["synced_at"]
            assert item["stats"] == {
                "total_requests": 3, "total_errors": 0,
                "total_tokens_input": 3 * PROMPT_TOKENS, "total_tokens_output": 3 * CHUNKS,
                "total_cost": pytest.approx(spent),
            }  # fmt: skip
            # A run across UTC midnight makes two days: the sums hold either way.
            history = item["history"]
            assert history[0]["usage_first"] == 1.0  # read when the key was added
            assert history[-1]["usage"] == pytest.approx(1.0 + spent)
            assert sum(day["spend"] for day in history) == pytest.approx(spent)
            assert sum(day["readings"] for day in history) >= 2
            _, one = await api.call(
                "GET", f"/stats/provider-keys/{added['id']}/history", token=client_key, expect=200
            )
            assert (one["id"], one["total"]) == (added["id"], len(history))
            assert [d["date"] for d in one["items"]] == [d["date"] for d in history]
            assert one["items"][0]["usage_first"] == 1.0

            # Another user sees none of it; the admin sees it.
            await api.register("bob")
            bob_token = await api.login("bob")
            bob_reader = (await api.new_key(bob_token, "dash", scopes=["stats:read"]))["key"]
            secrets += [bob_token, bob_reader]
            _, none = await api.call("GET", "/stats/provider-keys", token=bob_reader, expect=200)
            assert none == {"items": [], "total": 0}
            status, missing = await api.call(
                "GET", f"/stats/provider-keys/{added['id']}/history", token=bob_reader
            )
            assert (status, missing["error"]) == (404, "upstream_key_not_found")
            admin = await api.login("root", "root password long")
            secrets.append(admin)
            _, hers = await api.call(
                "GET", f"/stats/provider-keys?user_id={ann['id']}", token=admin, expect=200
            )
            assert [i["id"] for i in hers["items"]] == [added["id"]]
            status, wrong = await api.call(
                "GET", "/stats/provider-keys?start_date=2026-02-01&end_date=2026-01-01",
                token=client_key,
            )  # fmt: skip
            assert (status, wrong["error"]) == (400, "invalid_date_range")

            # The provider revokes the key: the next sync shows it invalid.
            openrouter.set_behaviour(key, "401")

            async def invalid() -> Any:
                _, listing = await api.call(
                    "GET", "/stats/provider-keys", token=client_key, expect=200
                )
                (item,) = listing["items"]
                return item if item["state"] == "invalid" else None

            revoked = await until(invalid)
            assert revoked["last_error"]
            for value in secrets:
                assert value not in str(revoked)
    finally:
        await gw.stop()
    output = gw.output()
    gw.lines()  # every line is JSON
    for value in [*secrets, PASSWORD]:
        assert value not in output
