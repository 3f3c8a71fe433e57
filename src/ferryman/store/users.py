"""The users table."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from ferryman.errors import Conflict
from ferryman.limits.allowance import Allowance
from ferryman.store.engine import Database
from ferryman.store.tables import users


@dataclass(frozen=True)
class User:
    id: str
    username: str
    email: str | None
    full_name: str | None
    password_hash: str
    role: str
    permissions: tuple[str, ...]
    is_active: bool
    created_at: datetime
    updated_at: datetime
    rpm: int | None = None
    tpm: int | None = None
    budget_amount: float | None = None
    budget_period: str | None = None

    @property
    def allowance(self) -> Allowance:
        """Its own caps (None in a field: the default applies, or none)."""
        return Allowance.of(self.rpm, self.tpm, self.budget_amount, self.budget_period)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def _user(row: Any) -> User:
    return User(**row._mapping)


async def create(
    db: Database,
    *,
    username: str,
    password_hash: str,
    now: datetime,
    email: str | None = None,
    full_name: str | None = None,
    role: str = "user",
    permissions: tuple[str, ...] = (),
) -> User:
    """A new active user; Conflict if the username or email is taken."""
    user = User(
        id=str(uuid.uuid4()),
        username=username,
        email=email,
        full_name=full_name,
        password_hash=password_hash,
        role=role,
        permissions=permissions,
        is_active=True,
        created_at=now,
        updated_at=now,
    )
    try:
        async with db.engine.begin() as conn:
            await conn.execute(users.insert().values(**user.__dict__))
    except IntegrityError:
        raise Conflict("that username or email is already registered", code="user_exists") from None
    return user


async def get(db: Database, user_id: str) -> User | None:
    async with db.engine.connect() as conn:
        row = (await conn.execute(select(users).where(users.c.id == user_id))).first()
    return _user(row) if row else None


async def by_login(db: Database, login: str) -> User | None:
    """The user whose username (or, given an address, email) this is."""
    column = users.c.email if "@" in login else users.c.username
    async with db.engine.connect() as conn:
        row = (await conn.execute(select(users).where(column == login))).first()
    return _user(row) if row else None


async def page(db: Database, *, offset: int, limit: int, text: str = "") -> tuple[list[User], int]:
    """Accounts, oldest first, whose username or email contains `text`."""
    where = []
    if text:
        escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{escaped}%"
        where.append(
            users.c.username.ilike(pattern, escape="\\") | users.c.email.ilike(pattern, escape="\\")
        )
    counted = select(func.count()).select_from(users).where(*where)
    query = select(users).where(*where).order_by(users.c.created_at, users.c.id)
    async with db.engine.connect() as conn:
        total = (await conn.execute(counted)).scalar_one()
        rows = await conn.execute(query.offset(offset).limit(limit))
        return [_user(row) for row in rows], total


async def change(db: Database, user_id: str, now: datetime, **values: Any) -> User | None:
    """Update some columns; the updated user, or None if there is none."""
    async with db.engine.begin() as conn:
        result = await conn.execute(
            update(users).where(users.c.id == user_id).values(**values, updated_at=now)
        )
        if result.rowcount == 0:
            return None
        row = (await conn.execute(select(users).where(users.c.id == user_id))).first()
    return _user(row) if row else None


async def names(db: Database, user_ids: Iterable[str]) -> dict[str, str]:
    """{user id: username} for these ids (one query, for a page of rows)."""
    wanted = sorted(set(user_ids))
    if not wanted:
        return {}
    query = select(users.c.id, users.c.username).where(users.c.id.in_(wanted))
    async with db.engine.connect() as conn:
        return {row.id: row.username for row in await conn.execute(query)}
