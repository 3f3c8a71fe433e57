"""The access_passes table: time-boxed tokens, activated on first use."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from ferryman.store.engine import Database
from ferryman.store.tables import access_passes


@dataclass(frozen=True)
class AccessPass:
    id: str
    user_id: str
    token_hash: str
    duration_hours: int
    is_active: bool
    activated_at: datetime | None
    revoked_at: datetime | None
    created_at: datetime

    @property
    def expires_at(self) -> datetime | None:
        """Computed, never stored: activation time plus the duration."""
        if self.activated_at is None:
            return None
        return self.activated_at + timedelta(hours=self.duration_hours)

    def state(self, now: datetime) -> str:
        """`revoked`, `expired`, `active` or `not_activated`."""
        if self.revoked_at is not None or not self.is_active:
            return "revoked"
        expires = self.expires_at
        if expires is None:
            return "not_activated"
        return "expired" if now >= expires else "active"


def _pass(row: Any) -> AccessPass:
    return AccessPass(**row._mapping)


def new(*, user_id: str, token_hash: str, duration_hours: int, now: datetime) -> AccessPass:
    """A pass not yet stored (a purchase stores it with its payment)."""
    return AccessPass(
        id=str(uuid.uuid4()),
        user_id=user_id,
        token_hash=token_hash,
        duration_hours=duration_hours,
        is_active=True,
        activated_at=None,
        revoked_at=None,
        created_at=now,
    )


async def create(
    db: Database, *, user_id: str, token_hash: str, duration_hours: int, now: datetime
) -> AccessPass:
    record = new(user_id=user_id, token_hash=token_hash, duration_hours=duration_hours, now=now)
    async with db.engine.begin() as conn:
        await conn.execute(access_passes.insert().values(**record.__dict__))
    return record


async def get(db: Database, pass_id: str) -> AccessPass | None:
    async with db.engine.connect() as conn:
        query = select(access_passes).where(access_passes.c.id == pass_id)
        row = (await conn.execute(query)).first()
    return _pass(row) if row else None


async def by_hash(db: Database, token_hash: str) -> AccessPass | None:
    async with db.engine.connect() as conn:
        query = select(access_passes).where(access_passes.c.token_hash == token_hash)
        row = (await conn.execute(query)).first()
    return _pass(row) if row else None


async def for_user(db: Database, user_id: str | None) -> list[AccessPass]:
    query = select(access_passes).order_by(access_passes.c.created_at.desc(), access_passes.c.id)
    if user_id is not None:
        query = query.where(access_passes.c.user_id == user_id)
    async with db.engine.connect() as conn:
        return [_pass(row) for row in await conn.execute(query)]


async def activate(db: Database, pass_id: str, now: datetime) -> tuple[AccessPass | None, bool]:
    """Activate a pass unless it already is: one atomic UPDATE, so of any number of
    concurrent first uses, in any number of processes, exactly one activates it.

    Returns the pass as stored afterwards and whether this call activated it.
    """
    async with db.engine.begin() as conn:
        result = await conn.execute(
            update(access_passes)
            .where(access_passes.c.id == pass_id, access_passes.c.activated_at.is_(None))
            .values(activated_at=now)
        )
        row = (
            await conn.execute(select(access_passes).where(access_passes.c.id == pass_id))
        ).first()
    return (_pass(row) if row else None), result.rowcount == 1


async def revoke(db: Database, pass_id: str, now: datetime) -> AccessPass | None:
    """Mark a pass revoked (idempotent: the first revocation time is kept)."""
    async with db.engine.begin() as conn:
        await conn.execute(
            update(access_passes)
            .where(access_passes.c.id == pass_id, access_passes.c.revoked_at.is_(None))
            .values(revoked_at=now, is_active=False)
        )
        row = (
            await conn.execute(select(access_passes).where(access_passes.c.id == pass_id))
        ).first()
    return _pass(row) if row else None
