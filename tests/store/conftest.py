"""One storage suite, run on SQLite always and on PostgreSQL when it is configured."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from sqlalchemy import text

from ferryman.config.settings import Settings
from ferryman.store.engine import Database, create_database
from tests.conftest import TEST_DATABASE_URL


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_settings(
    request: pytest.FixtureRequest, settings_factory: Callable[..., Settings]
) -> AsyncIterator[Settings]:
    """Settings for an empty database of each backend (a schema of its own on PostgreSQL)."""
    if request.param == "sqlite":
        yield settings_factory()
        return
    if not TEST_DATABASE_URL:
        pytest.skip("FERRYMAN_TEST_DATABASE_URL is not set")
    schema = f"ferryman_test_{uuid.uuid4().hex[:12]}"
    settings = settings_factory(database_url=TEST_DATABASE_URL, database_schema=schema)
    yield settings
    admin = create_database(settings_factory(database_url=TEST_DATABASE_URL))
    async with admin.engine.begin() as conn:
        await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    await admin.dispose()


@pytest.fixture
async def database(db_settings: Settings) -> AsyncIterator[Database]:
    db = create_database(db_settings)
    yield db
    await db.dispose()
