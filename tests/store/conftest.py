"""The storage suite runs on SQLite always and on PostgreSQL when it is configured
(`db_settings` in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from ferryman.config.settings import Settings
from ferryman.store.engine import Database, create_database


@pytest.fixture
async def database(db_settings: Settings) -> AsyncIterator[Database]:
    db = create_database(db_settings)
    yield db
    await db.dispose()
