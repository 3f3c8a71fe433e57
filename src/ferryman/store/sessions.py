"""The sessions table: server-side sessions behind a signed cookie."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, update

from ferryman.store.engine import Database
from ferryman.store.tables import sessions


@dataclass(frozen=True)
class Session:
    id: str
    user_id: str
    token_hash: str
    csrf_token: str
    created_at: datetime
    expires_at: datetime
    last_seen_at: datetime
    revoked_at: datetime | None
    user_agent: str | None
    client_ip: str | None


def _session(row: Any) -> Session:
    return Session(**row._mapping)


async def create(
    db: Database,
    *,
    user_id: str,
    token_hash: str,
    csrf_token: str,
    now: datetime,
    expires_at: datetime,
    user_agent: str | None,
    client_ip: str | None,
) -> Session:
    record = Session(
        id=str(uuid.uuid4()),
        user_id=user_id,
        token_hash=token_hash,
        csrf_token=csrf_token,
        created_at=now,
        expires_at=expires_at,
        last_seen_at=now,
        revoked_at=None,
        user_agent=user_agent,
        client_ip=client_ip,
    )
    async with db.engine.begin() as conn:
        await conn.execute(sessions.insert().values(**record.__dict__))
    return record


async def by_hash(db: Database, token_hash: str) -> Session | None:
    async with db.engine.connect() as conn:
        query = select(sessions).where(sessions.c.token_hash == token_hash)
        row = (await conn.execute(query)).first()
    return _session(row) if row else None


async def for_user(db: Database, user_id: str) -> list[Session]:
    query = (
        select(sessions)
        .where(sessions.c.user_id == user_id)
        .order_by(sessions.c.created_at.desc(), sessions.c.id)
    )
    async with db.engine.connect() as conn:
        return [_session(row) for row in await conn.execute(query)]


async def revoke(db: Database, session_id: str, now: datetime) -> None:
    async with db.engine.begin() as conn:
        await conn.execute(
            update(sessions)
            .where(sessions.c.id == session_id, sessions.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )


async def touch(db: Database, last_seen: Mapping[str, datetime]) -> None:
    """Record when sessions were last seen, many at once."""
    if not last_seen:
        return
    statement = (
        update(sessions)
        .where(sessions.c.id == bindparam("session_id"))
        .values(last_seen_at=bindparam("seen_at"))
    )
    rows = [{"session_id": k, "seen_at": v} for k, v in sorted(last_seen.items())]
    async with db.engine.begin() as conn:
        await conn.execute(statement, rows)
