"""The meta table: small facts about this installation."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import select

from ferryman.store import dialects
from ferryman.store.engine import Database
from ferryman.store.tables import meta


async def get(db: Database, key: str) -> str | None:
    async with db.engine.connect() as conn:
        result = await conn.execute(select(meta.c.value).where(meta.c.key == key))
        return result.scalar_one_or_none()


async def put(db: Database, key: str, value: str) -> None:
    """Insert or replace one value."""
    insert = dialects.insert(db.backend)
    now = datetime.now(UTC)
    statement = insert(meta).values(key=key, value=value, updated_at=now)
    statement = statement.on_conflict_do_update(
        index_elements=[meta.c.key], set_={"value": value, "updated_at": now}
    )
    async with db.engine.begin() as conn:
        await conn.execute(statement)


async def setdefault(db: Database, key: str, value: str) -> str:
    """Store `value` unless a value exists; return the stored one either way."""
    insert = dialects.insert(db.backend)
    statement = (
        insert(meta)
        .values(key=key, value=value, updated_at=datetime.now(UTC))
        .on_conflict_do_nothing(index_elements=[meta.c.key])
    )
    async with db.engine.begin() as conn:
        await conn.execute(statement)
        result = await conn.execute(select(meta.c.value).where(meta.c.key == key))
        return str(result.scalar_one())


async def installation_id(db: Database) -> str:
    """A random id for this installation, created on first use and kept."""
    return await setdefault(db, "installation_id", uuid.uuid4().hex)
