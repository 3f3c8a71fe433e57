"""The chat relay's tables: widget sessions and their messages."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update

from ferryman.store.engine import Database
from ferryman.store.tables import relay_messages, relay_sessions


@dataclass(frozen=True, slots=True)
class WidgetSession:
    id: str
    relay: str
    token_hash: str
    origin: str
    page_url: str | None
    client_ip: str | None
    user_agent: str | None
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class Message:
    id: str
    session_id: str
    role: str
    """`user` or `assistant`."""
    content: str
    complete: bool
    """False for an answer cut short (the workflow failed or the widget left)."""
    created_at: datetime


def _session(row: Any) -> WidgetSession:
    return WidgetSession(**row._mapping)


async def create(db: Database, session: WidgetSession) -> None:
    async with db.engine.begin() as conn:
        await conn.execute(relay_sessions.insert().values(**asdict(session)))


async def by_hash(db: Database, token_hash: str) -> WidgetSession | None:
    query = select(relay_sessions).where(relay_sessions.c.token_hash == token_hash)
    async with db.engine.connect() as conn:
        row = (await conn.execute(query)).first()
    return _session(row) if row else None


async def by_id(db: Database, session_id: str) -> WidgetSession | None:
    query = select(relay_sessions).where(relay_sessions.c.id == session_id)
    async with db.engine.connect() as conn:
        row = (await conn.execute(query)).first()
    return _session(row) if row else None


async def revoke(db: Database, session_id: str, now: datetime) -> bool:
    query = (
        update(relay_sessions)
        .where(relay_sessions.c.id == session_id, relay_sessions.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    async with db.engine.begin() as conn:
        result = await conn.execute(query)
    return bool(result.rowcount)


async def add_messages(db: Database, messages: Sequence[Message]) -> None:
    if not messages:
        return
    async with db.engine.begin() as conn:
        await conn.execute(relay_messages.insert(), [asdict(m) for m in messages])


async def messages(db: Database, session_id: str, after: str | None, limit: int) -> list[Message]:
    """The session's messages in order, from just after `after` (an id), at most `limit`."""
    query = select(relay_messages).where(relay_messages.c.session_id == session_id)
    if after:
        query = query.where(relay_messages.c.id > after)
    query = query.order_by(relay_messages.c.id).limit(limit)
    async with db.engine.connect() as conn:
        return [Message(**row._mapping) for row in await conn.execute(query)]


async def prune(db: Database, ended_before: datetime) -> int:
    """Forget sessions (and their messages) that expired before `ended_before`."""
    ended = select(relay_sessions.c.id).where(relay_sessions.c.expires_at < ended_before)
    async with db.engine.begin() as conn:
        await conn.execute(delete(relay_messages).where(relay_messages.c.session_id.in_(ended)))
        result = await conn.execute(
            delete(relay_sessions).where(relay_sessions.c.expires_at < ended_before)
        )
    return int(result.rowcount or 0)
