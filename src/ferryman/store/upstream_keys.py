"""The upstream_keys table: provider keys, sealed, with their health and usage."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, select, update

from ferryman.errors import Conflict
from ferryman.store import key_history
from ferryman.store.engine import Database
from ferryman.store.tables import upstream_keys, users


@dataclass(frozen=True)
class UpstreamKeyRow:
    id: str
    upstream: str
    owner_id: str | None
    name: str
    sealed_key: str
    master_key_id: str
    prefix: str
    last4: str
    weight: int
    enabled: bool
    state: str
    state_until: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    last_checked_at: datetime | None
    last_used_at: datetime | None
    request_count: int
    failure_count: int
    usage: float | None
    credit_limit: float | None
    limit_remaining: float | None
    credits_total: float | None
    credits_used: float | None
    synced_at: datetime | None
    validated_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @property
    def masked(self) -> str:
        return f"{self.prefix}…{self.last4}"


@dataclass(frozen=True)
class HealthUpdate:
    """A key's health as the pool last decided it, to be persisted."""

    key_id: str
    state: str
    state_until: datetime | None
    last_error: str | None
    at: datetime


@dataclass(frozen=True)
class Snapshot:
    """What a provider says of a key: usage, limit and credit (None when unknown)."""

    usage: float | None = None
    """Cumulative, since the key was made."""
    credit_limit: float | None = None
    limit_remaining: float | None = None
    credits_total: float | None = None
    credits_used: float | None = None
    usage_daily: float | None = None
    """The provider's own figure for the current UTC day (kept in the history only)."""


def _row(row: Any) -> UpstreamKeyRow:
    return UpstreamKeyRow(**row._mapping)


async def create(
    db: Database,
    row: UpstreamKeyRow,
    *,
    per_user_limit: int | None,
    reading: Snapshot | None = None,
) -> None:
    """Insert a key; for a user's own key, refuse it beyond `per_user_limit` (409).
    `reading` (what validating it told) starts its history."""
    async with db.engine.begin() as conn:
        if row.owner_id is not None and per_user_limit is not None:
            # Writing the owner's row first serialises concurrent creations for one user.
            await conn.execute(
                update(users)
                .where(users.c.id == row.owner_id)
                .values(updated_at=users.c.updated_at)
            )
            held = (
                await conn.execute(
                    select(func.count())
                    .select_from(upstream_keys)
                    .where(upstream_keys.c.owner_id == row.owner_id)
                )
            ).scalar_one()
            if held >= per_user_limit:
                raise Conflict(
                    f"a user may hold at most {per_user_limit} upstream keys",
                    code="upstream_key_limit_reached",
                )
        await conn.execute(upstream_keys.insert().values(**row.__dict__))
        if reading is not None:
            await key_history.record(conn, row.id, reading, row.created_at)


async def get(db: Database, key_id: str) -> UpstreamKeyRow | None:
    async with db.engine.connect() as conn:
        row = (
            await conn.execute(select(upstream_keys).where(upstream_keys.c.id == key_id))
        ).first()
    return _row(row) if row else None


async def listing(
    db: Database, *, owner_id: str | None = None, everyone: bool = False
) -> list[UpstreamKeyRow]:
    """Every key (`everyone`), or one user's own keys, oldest first."""
    query = select(upstream_keys).order_by(upstream_keys.c.created_at, upstream_keys.c.id)
    if not everyone:
        query = query.where(upstream_keys.c.owner_id == owner_id)
    async with db.engine.connect() as conn:
        return [_row(row) for row in await conn.execute(query)]


async def change(db: Database, key_id: str, now: datetime, **values: Any) -> UpstreamKeyRow | None:
    async with db.engine.begin() as conn:
        result = await conn.execute(
            update(upstream_keys)
            .where(upstream_keys.c.id == key_id)
            .values(updated_at=now, **values)
        )
        if result.rowcount == 0:
            return None
        row = (
            await conn.execute(select(upstream_keys).where(upstream_keys.c.id == key_id))
        ).first()
    return _row(row) if row else None


async def delete(db: Database, key_id: str) -> bool:
    async with db.engine.begin() as conn:
        result = await conn.execute(upstream_keys.delete().where(upstream_keys.c.id == key_id))
    return bool(result.rowcount)


async def record_health(db: Database, updates: Iterable[HealthUpdate]) -> None:
    """Persist health decisions, many at once, in id order (no deadlock between
    instances writing overlapping sets)."""
    rows = [
        {
            "key_id": u.key_id,
            "new_state": u.state,
            "until": u.state_until,
            "error": u.last_error[:300] if u.last_error else None,
            "error_at": u.at if u.last_error else None,
        }
        for u in sorted(updates, key=lambda u: u.key_id)
    ]
    if not rows:
        return
    statement = (
        update(upstream_keys)
        .where(upstream_keys.c.id == bindparam("key_id"))
        .values(
            state=bindparam("new_state"),
            state_until=bindparam("until"),
            last_error=func.coalesce(bindparam("error"), upstream_keys.c.last_error),
            last_error_at=func.coalesce(bindparam("error_at"), upstream_keys.c.last_error_at),
        )
    )
    async with db.engine.begin() as conn:
        await conn.execute(statement, rows)


async def add_usage(db: Database, counts: Mapping[str, tuple[int, int, datetime | None]]) -> None:
    """Add request and failure counts and set last use, for many keys at once."""
    if not counts:
        return
    statement = (
        update(upstream_keys)
        .where(upstream_keys.c.id == bindparam("key_id"))
        .values(
            request_count=upstream_keys.c.request_count + bindparam("requests"),
            failure_count=upstream_keys.c.failure_count + bindparam("failures"),
            last_used_at=func.coalesce(bindparam("used_at"), upstream_keys.c.last_used_at),
        )
    )
    rows = [
        {"key_id": k, "requests": r, "failures": f, "used_at": used}
        for k, (r, f, used) in sorted(counts.items())
    ]
    async with db.engine.begin() as conn:
        await conn.execute(statement, rows)


async def store_snapshot(db: Database, key_id: str, snapshot: Snapshot, now: datetime) -> None:
    """The key's latest figures, and its history row of the day, in one transaction."""
    values: dict[str, Any] = {
        "synced_at": now,
        "usage": snapshot.usage,
        "credit_limit": snapshot.credit_limit,
        "limit_remaining": snapshot.limit_remaining,
    }
    # Only the sync asks for the account's credit: a probe's reading leaves it as it was.
    if snapshot.credits_total is not None or snapshot.credits_used is not None:
        values.update(credits_total=snapshot.credits_total, credits_used=snapshot.credits_used)
    async with db.engine.begin() as conn:
        result = await conn.execute(
            update(upstream_keys).where(upstream_keys.c.id == key_id).values(**values)
        )
        if result.rowcount:  # not deleted meanwhile
            await key_history.record(conn, key_id, snapshot, now)


async def mark_checked(db: Database, key_id: str, now: datetime, *, validated: bool) -> None:
    values: dict[str, Any] = {"last_checked_at": now}
    if validated:
        values["validated_at"] = now
    async with db.engine.begin() as conn:
        await conn.execute(
            update(upstream_keys).where(upstream_keys.c.id == key_id).values(**values)
        )


async def reseal(
    db: Database, key_id: str, *, was: str, master_key_id: str, sealed_key: str
) -> bool:
    """Replace a key's sealed value, only if it is still sealed under `was` (so a
    rotation run twice, or two at once, never overwrites a newer value)."""
    async with db.engine.begin() as conn:
        result = await conn.execute(
            update(upstream_keys)
            .where(upstream_keys.c.id == key_id, upstream_keys.c.master_key_id == was)
            .values(master_key_id=master_key_id, sealed_key=sealed_key)
        )
    return bool(result.rowcount)


async def names(db: Database, ids: Iterable[str]) -> dict[str, str]:
    """{id: name} for these ids (one query, for a page of rows)."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    query = select(upstream_keys.c.id, upstream_keys.c.name).where(upstream_keys.c.id.in_(wanted))
    async with db.engine.connect() as conn:
        return {row.id: row.name for row in await conn.execute(query)}
