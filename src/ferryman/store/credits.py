"""The credit ledger: append-only movements; a balance is the sum of a user's rows.

Every change that depends on the balance (a purchase) or on a pass's state (a refund)
runs in one transaction that first writes the user's row, which takes that row's lock
on PostgreSQL and the database's write lock on SQLite: concurrent purchases by one user
are decided one after another against the balance each leaves.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ferryman.errors import Conflict, NotFound, PaymentRequired
from ferryman.store.engine import Database
from ferryman.store.passes import AccessPass
from ferryman.store.tables import access_passes, credit_ledger, users

MICROS = 1_000_000
#: The most a balance may hold: the largest top-up. Ten of those once summed past a
#: 64-bit integer, which SQLite refuses to add.
MAX_BALANCE_MICROS = 999_999_999_999_999_999


@dataclass(frozen=True)
class Movement:
    id: str
    user_id: str
    amount_micros: int
    kind: str  # topup | purchase | refund
    pass_id: str | None
    note: str | None
    created_by: str | None
    created_at: datetime


def _movement(row: Any) -> Movement:
    return Movement(**row._mapping)


async def _lock_user(conn: AsyncConnection, user_id: str) -> None:
    result = await conn.execute(
        update(users).where(users.c.id == user_id).values(updated_at=users.c.updated_at)
    )
    if result.rowcount == 0:
        raise NotFound("no such user", code="user_not_found")


async def _balance(conn: AsyncConnection, user_id: str) -> int:
    query = select(func.coalesce(func.sum(credit_ledger.c.amount_micros), 0)).where(
        credit_ledger.c.user_id == user_id
    )
    return int((await conn.execute(query)).scalar_one())


def _row(user_id: str, amount: int, kind: str, now: datetime, **extra: Any) -> Movement:
    return Movement(
        id=str(uuid.uuid4()),
        user_id=user_id,
        amount_micros=amount,
        kind=kind,
        pass_id=extra.get("pass_id"),
        note=extra.get("note"),
        created_by=extra.get("created_by"),
        created_at=now,
    )


async def balance(db: Database, user_id: str) -> int:
    async with db.engine.connect() as conn:
        return await _balance(conn, user_id)


async def movements(db: Database, user_id: str, limit: int = 100) -> list[Movement]:
    query = (
        select(credit_ledger)
        .where(credit_ledger.c.user_id == user_id)
        .order_by(credit_ledger.c.created_at.desc(), credit_ledger.c.id)
        .limit(limit)
    )
    async with db.engine.connect() as conn:
        return [_movement(row) for row in await conn.execute(query)]


async def top_up(
    db: Database, user_id: str, amount: int, *, by: str, note: str | None, now: datetime
) -> tuple[Movement, int]:
    """Credit `amount` micros; the movement and the new balance."""
    movement = _row(user_id, amount, "topup", now, created_by=by, note=note)
    async with db.engine.begin() as conn:
        await _lock_user(conn, user_id)
        before = await _balance(conn, user_id)
        if before + amount > MAX_BALANCE_MICROS:
            raise Conflict(
                f"the balance would exceed {MAX_BALANCE_MICROS / MICROS:.6f}",
                code="balance_limit",
            )
        await conn.execute(credit_ledger.insert().values(**movement.__dict__))
        return movement, before + amount


async def buy_pass(
    db: Database, record: AccessPass, price: int, now: datetime
) -> tuple[Movement, int]:
    """Store `record` and debit `price` for it, or PaymentRequired when the balance is
    short (nothing stored)."""
    movement = _row(record.user_id, -price, "purchase", now, pass_id=record.id)
    async with db.engine.begin() as conn:
        await _lock_user(conn, record.user_id)
        available = await _balance(conn, record.user_id)
        if available < price:
            raise PaymentRequired(
                f"this pass costs {price / MICROS:.2f} and the balance is {available / MICROS:.2f}"
            )
        await conn.execute(access_passes.insert().values(**record.__dict__))
        await conn.execute(credit_ledger.insert().values(**movement.__dict__))
        return movement, available - price


async def refund_pass(db: Database, pass_id: str, now: datetime) -> tuple[Movement, int]:
    """Revoke a never-activated pass and credit back what was paid for it, once."""
    async with db.engine.begin() as conn:
        record = (
            await conn.execute(select(access_passes).where(access_passes.c.id == pass_id))
        ).first()
        if record is None:
            raise NotFound("no such access token", code="token_not_found")
        user_id = record.user_id
        await _lock_user(conn, user_id)
        revoked = await conn.execute(
            update(access_passes)
            .where(
                access_passes.c.id == pass_id,
                access_passes.c.activated_at.is_(None),
                access_passes.c.revoked_at.is_(None),
            )
            .values(revoked_at=now, is_active=False)
        )
        if revoked.rowcount == 0:
            current = (
                await conn.execute(select(access_passes).where(access_passes.c.id == pass_id))
            ).one()
            if current.activated_at is not None:
                raise Conflict("an activated pass cannot be refunded", code="pass_activated")
            raise Conflict(
                "a revoked (or already refunded) pass cannot be refunded", code="pass_revoked"
            )
        paid_row = (
            await conn.execute(
                select(credit_ledger.c.amount_micros).where(
                    credit_ledger.c.pass_id == pass_id, credit_ledger.c.kind == "purchase"
                )
            )
        ).first()
        paid = -int(paid_row[0]) if paid_row else 0
        movement = _row(user_id, paid, "refund", now, pass_id=pass_id)
        await conn.execute(credit_ledger.insert().values(**movement.__dict__))
        return movement, await _balance(conn, user_id)
