"""How far an installation is set up, read from the database (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, insert, update

from ferryman.store import migrate
from ferryman.store.engine import Database
from ferryman.store.progress import Progress, progress
from ferryman.store.tables import api_keys, upstream_keys, users

NOW = datetime(2026, 3, 1, tzinfo=UTC)


async def add(db: Database, table: Table, **values: Any) -> None:
    async with db.engine.begin() as conn:
        await conn.execute(insert(table).values(**values))


async def test_progress_follows_what_exists(database: Database) -> None:
    db = database
    await migrate.upgrade(db)
    assert await progress(db) == Progress(admin=None, pooled=frozenset(), client_key=False)
    common = {"password_hash": "h", "permissions": [], "created_at": NOW, "updated_at": NOW}
    await add(db, users, id="u1", username="ann", role="user", is_active=True, **common)
    await add(db, users, id="u2", username="root", role="admin", is_active=False, **common)
    assert (await progress(db)).admin is None  # a disabled admin administers nothing
    await add(db, users, id="u3", username="boss", role="admin", is_active=True, **common)
    assert (await progress(db)).admin == "boss"

    sealed = {"sealed_key": "x", "master_key_id": "k1", "prefix": "sk-or", "last4": "abcd",
              "weight": 1, "state": "healthy", "request_count": 0, "failure_count": 0,
              "created_at": NOW, "updated_at": NOW}  # fmt: skip
    await add(db, upstream_keys, id="k1", upstream="mine", owner_id="u1", name="n",
              enabled=True, **sealed)  # fmt: skip
    await add(db, upstream_keys, id="k2", upstream="off", name="n", enabled=False, **sealed)
    await add(db, upstream_keys, id="k3", upstream="shared", name="n", enabled=True, **sealed)
    assert (await progress(db)).pooled == frozenset({"shared"})  # users' own keys do not count

    key = {"user_id": "u1", "name": "k", "prefix": "fm_x", "last4": "abcd", "scopes": ["proxy"],
           "created_at": NOW}  # fmt: skip
    await add(db, api_keys, id="a1", key_hash="h1", is_active=True, revoked_at=NOW, **key)
    assert not (await progress(db)).client_key  # a revoked key is no key
    await add(db, api_keys, id="a2", key_hash="h2", is_active=True, **key)
    assert (await progress(db)).client_key
    async with db.engine.begin() as conn:
        await conn.execute(update(api_keys).values(is_active=False))
    assert not (await progress(db)).client_key
