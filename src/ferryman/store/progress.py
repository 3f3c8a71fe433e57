"""How far an installation is set up: what `ferryman serve` reads to say what is next."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from ferryman.store.engine import Database
from ferryman.store.tables import api_keys, upstream_keys, users


@dataclass(frozen=True)
class Progress:
    admin: str | None
    """The username of an active admin, if there is one."""
    pooled: frozenset[str]
    """Upstreams with at least one enabled key in their shared pool."""
    client_key: bool
    """A client key exists that is neither revoked nor disabled."""


async def progress(db: Database) -> Progress:
    """Three small reads, once at start-up."""
    async with db.engine.connect() as conn:
        admin = await conn.scalar(
            select(users.c.username)
            .where(users.c.role == "admin", users.c.is_active.is_(True))
            .order_by(users.c.created_at)
            .limit(1)
        )
        pooled = await conn.scalars(
            select(upstream_keys.c.upstream)
            .where(upstream_keys.c.owner_id.is_(None), upstream_keys.c.enabled.is_(True))
            .distinct()
        )
        key = await conn.scalar(
            select(api_keys.c.id)
            .where(api_keys.c.revoked_at.is_(None), api_keys.c.is_active.is_(True))
            .limit(1)
        )
    return Progress(admin=admin, pooled=frozenset(pooled), client_key=key is not None)
