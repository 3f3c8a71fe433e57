"""A fleet: several real `ferryman serve` processes on one PostgreSQL and one Redis.

Each instance has a data directory of its own (as on separate machines); they share
the database (a schema of the test's own), Redis (a key prefix of the test's own) and
the secrets an operator hands every instance. Nothing else says they are a fleet."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from ferryman.config.settings import Settings
from ferryman.store.engine import create_database
from tests.conftest import TEST_DATABASE_URL, TEST_REDIS_URL
from tests.support import GatewayProcess

Start = Callable[..., Any]


@pytest.fixture
async def fleet_env(settings_factory: Callable[..., Settings]) -> AsyncIterator[dict[str, str]]:
    """What every instance of the fleet is started with."""
    if not TEST_DATABASE_URL or not TEST_REDIS_URL:
        pytest.skip("FERRYMAN_TEST_DATABASE_URL and FERRYMAN_TEST_REDIS_URL are needed")
    schema = f"ferryman_fleet_{uuid.uuid4().hex[:12]}"
    settings = settings_factory(database_url=TEST_DATABASE_URL, database_schema=schema)
    assert settings.secret_key and settings.key_pepper and settings.encryption_keys
    yield {
        "FERRYMAN_DATABASE_URL": TEST_DATABASE_URL,
        "FERRYMAN_DATABASE_SCHEMA": schema,
        "FERRYMAN_REDIS_URL": TEST_REDIS_URL,
        "FERRYMAN_REDIS_PREFIX": f"fleet{uuid.uuid4().hex[:10]}:",
        "FERRYMAN_SECRET_KEY": settings.secret_key.get_secret_value(),
        "FERRYMAN_KEY_PEPPER": settings.key_pepper.get_secret_value(),
        "FERRYMAN_ENCRYPTION_KEYS": settings.encryption_keys.get_secret_value(),
        "FERRYMAN_PASSWORD_HASH_TIME_COST": "1",
        "FERRYMAN_PASSWORD_HASH_MEMORY_KIB": "64",
        "FERRYMAN_PASSWORD_HASH_PARALLELISM": "1",
    }
    admin = create_database(settings_factory(database_url=TEST_DATABASE_URL))
    async with admin.engine.begin() as conn:
        await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    await admin.dispose()


@pytest.fixture
async def fleet(tmp_path: Path, fleet_env: dict[str, str]) -> AsyncIterator[Start]:
    """`await fleet(n, gateway, **env)`: n instances started one after the other (the
    first creates the schema), all stopped at the end."""
    started: list[GatewayProcess] = []

    async def start(n: int, gateway: dict[str, Any], **env: str) -> list[GatewayProcess]:
        instances = []
        for _ in range(n):
            workdir = tmp_path / f"instance{len(started) + 1}"
            workdir.mkdir()
            proc = GatewayProcess(workdir, gateway, {**fleet_env, **env})
            started.append(proc)
            instances.append(await proc.start())
        return instances

    yield start
    for proc in started:
        await proc.stop()
