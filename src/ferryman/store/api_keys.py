"""The api_keys table (client keys, kept as keyed hashes)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, literal_column, select, update

from ferryman.errors import Conflict
from ferryman.limits.allowance import Allowance
from ferryman.store.engine import Database
from ferryman.store.tables import api_keys, users


@dataclass(frozen=True)
class ApiKey:
    id: str
    user_id: str
    name: str
    key_hash: str
    prefix: str
    last4: str
    scopes: tuple[str, ...]
    is_active: bool
    expires_at: datetime | None
    revoked_at: datetime | None
    created_at: datetime
    last_used_at: datetime | None
    rpm: int | None = None
    tpm: int | None = None
    budget_amount: float | None = None
    budget_period: str | None = None

    @property
    def allowance(self) -> Allowance:
        """Its own caps (None in a field: the default applies, or none)."""
        return Allowance.of(self.rpm, self.tpm, self.budget_amount, self.budget_period)

    @property
    def masked(self) -> str:
        return f"{self.prefix}…{self.last4}"


def _key(row: Any) -> ApiKey:
    return ApiKey(**row._mapping)


async def create(
    db: Database,
    *,
    limit: int,
    user_id: str,
    name: str,
    key_hash: str,
    prefix: str,
    last4: str,
    scopes: tuple[str, ...],
    expires_at: datetime | None,
    now: datetime,
) -> ApiKey:
    key = ApiKey(
        id=str(uuid.uuid4()),
        user_id=user_id,
        name=name,
        key_hash=key_hash,
        prefix=prefix,
        last4=last4,
        scopes=scopes,
        is_active=True,
        expires_at=expires_at,
        revoked_at=None,
        created_at=now,
        last_used_at=None,
    )
    async with db.engine.begin() as conn:
        # Writing the owner's row first takes its lock (PostgreSQL) or the database's
        # write lock (SQLite), so concurrent creations for one user count one by one.
        await conn.execute(
            update(users).where(users.c.id == user_id).values(updated_at=users.c.updated_at)
        )
        live = (
            await conn.execute(
                select(func.count())
                .select_from(api_keys)
                .where(api_keys.c.user_id == user_id, api_keys.c.revoked_at.is_(None))
            )
        ).scalar_one()
        if live >= limit:
            raise Conflict(f"a user may hold at most {limit} keys", code="key_limit_reached")
        await conn.execute(api_keys.insert().values(**key.__dict__))
    return key


async def get(db: Database, key_id: str) -> ApiKey | None:
    async with db.engine.connect() as conn:
        row = (await conn.execute(select(api_keys).where(api_keys.c.id == key_id))).first()
    return _key(row) if row else None


async def by_hash(db: Database, key_hash: str) -> ApiKey | None:
    async with db.engine.connect() as conn:
        row = (await conn.execute(select(api_keys).where(api_keys.c.key_hash == key_hash))).first()
    return _key(row) if row else None


async def for_user(db: Database, user_id: str | None) -> list[ApiKey]:
    """A user's keys (every key when `user_id` is None), newest first."""
    query = select(api_keys).order_by(api_keys.c.created_at.desc(), api_keys.c.id)
    if user_id is not None:
        query = query.where(api_keys.c.user_id == user_id)
    async with db.engine.connect() as conn:
        return [_key(row) for row in await conn.execute(query)]


#: Orders a key list can take: the column, and its default direction.
SORTS = {"created": api_keys.c.created_at, "name": api_keys.c.name,
         "last_used": api_keys.c.last_used_at}  # fmt: skip


async def search(
    db: Database,
    user_id: str | None,
    *,
    text: str = "",
    sort: str = "created",
    descending: bool = True,
    offset: int = 0,
    limit: int = 50,
) -> tuple[list[ApiKey], int]:
    """One page of a user's keys (everyone's when `user_id` is None) whose name or
    prefix contains `text`, in the order asked for; and how many match in all."""
    where = []
    if user_id is not None:
        where.append(api_keys.c.user_id == user_id)
    if text:
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        # SQLite's LIKE ignores ASCII case already (and its lower() knows no other), so
        # `ilike`'s lower() on both sides would only double the scan's cost there.
        like = "like" if db.backend == "sqlite" else "ilike"
        where.append(
            getattr(api_keys.c.name, like)(pattern, escape="\\")
            | getattr(api_keys.c.prefix, like)(pattern, escape="\\")
        )
    column: Any = SORTS.get(sort, api_keys.c.created_at)
    if text and db.backend == "sqlite":
        # A search reads every key anyway: walking the sort index would fetch them one
        # by one (several times slower than a scan and a sort of the few that match).
        # SQLite's unary + keeps the planner off that index.
        column = literal_column(f"+api_keys.{column.name}")
    # The id breaks ties in the same direction, so an index on (column, id) serves both.
    ids = api_keys.c.id
    order = (column.desc(), ids.desc()) if descending else (column.asc(), ids.asc())
    # A search counts its matches in the same scan (a window count), not a second one.
    counted = func.count().over().label("matches") if text else None
    query = select(api_keys, *([counted] if counted is not None else [])).where(*where)
    async with db.engine.connect() as conn:
        found = (await conn.execute(query.order_by(*order).offset(offset).limit(limit))).all()
        if counted is not None and found:
            total = int(found[0].matches)
        else:
            total_query = select(func.count()).select_from(api_keys).where(*where)
            total = int((await conn.execute(total_query)).scalar_one())
    fields = ApiKey.__dataclass_fields__
    keys = [ApiKey(**{k: v for k, v in row._mapping.items() if k in fields}) for row in found]
    return keys, total


async def change(db: Database, key_id: str, **values: Any) -> ApiKey | None:
    async with db.engine.begin() as conn:
        result = await conn.execute(
            update(api_keys).where(api_keys.c.id == key_id).values(**values)
        )
        if result.rowcount == 0:
            return None
        row = (await conn.execute(select(api_keys).where(api_keys.c.id == key_id))).first()
    return _key(row) if row else None


async def revoke(db: Database, key_id: str, now: datetime) -> ApiKey | None:
    """Revoke a key (idempotent: the first revocation time is kept)."""
    async with db.engine.begin() as conn:
        await conn.execute(
            update(api_keys)
            .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=now, is_active=False)
        )
        row = (await conn.execute(select(api_keys).where(api_keys.c.id == key_id))).first()
    return _key(row) if row else None


async def touch(db: Database, last_used: Mapping[str, datetime]) -> None:
    """Record when keys were last used, many at once (written in batches, not per request)."""
    if not last_used:
        return
    statement = (
        update(api_keys)
        .where(api_keys.c.id == bindparam("key_id"))
        .values(last_used_at=bindparam("used_at"))
    )
    rows = [{"key_id": k, "used_at": v} for k, v in sorted(last_used.items())]
    async with db.engine.begin() as conn:
        await conn.execute(statement, rows)


async def names(db: Database, ids: Iterable[str]) -> dict[str, str]:
    """{id: name} for these ids (one query, for a page of rows)."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    query = select(api_keys.c.id, api_keys.c.name).where(api_keys.c.id.in_(wanted))
    async with db.engine.connect() as conn:
        return {row.id: row.name for row in await conn.execute(query)}
