"""`/api/v1/credits`: a user's credit balance and its movements (seed 002, next phase).

The balance is the sum of an append-only ledger: top-ups by an admin, pass purchases
(debits) and refunds of passes never activated. Amounts are in the currency of the
configured pass prices, exact to 6 decimals.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from ferryman.api.deps import AdminDep, AuthDep, CallerDep
from ferryman.errors import Forbidden
from ferryman.store import credits
from ferryman.store.credits import MICROS, Movement

router = APIRouter(prefix="/credits", tags=["credits"])


def amount(micros: int) -> float:
    return micros / MICROS


class MovementOut(BaseModel):
    id: str
    kind: str
    amount: float
    pass_id: str | None
    note: str | None
    created_at: datetime

    @classmethod
    def of(cls, movement: Movement) -> MovementOut:
        return cls(
            id=movement.id,
            kind=movement.kind,
            amount=amount(movement.amount_micros),
            pass_id=movement.pass_id,
            note=movement.note,
            created_at=movement.created_at,
        )


class BalanceOut(BaseModel):
    user_id: str
    balance: float
    movements: list[MovementOut]


class TopUpIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str
    amount: Annotated[Decimal, Field(gt=0, max_digits=18, decimal_places=6)]
    note: Annotated[str | None, Field(max_length=200)] = None


@router.get("")
async def balance(
    caller: CallerDep,
    auth: AuthDep,
    user_id: Annotated[str | None, Query(description="admins: another user's")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> BalanceOut:
    """The balance and the newest movements."""
    owner = caller.user_id
    if user_id is not None and user_id != caller.user_id:
        if not caller.is_admin:
            raise Forbidden("only admins see others' credits", code="admin_required")
        owner = user_id
    total = await credits.balance(auth.db, owner)
    rows = await credits.movements(auth.db, owner, limit)
    return BalanceOut(
        user_id=owner, balance=amount(total), movements=[MovementOut.of(r) for r in rows]
    )


@router.post("/top-up", status_code=201)
async def top_up(body: TopUpIn, admin: AdminDep, auth: AuthDep) -> BalanceOut:
    """Admins credit a user's balance."""
    movement, total = await credits.top_up(
        auth.db,
        body.user_id,
        int(body.amount * MICROS),
        by=admin.user_id,
        note=body.note,
        now=auth.clock.now(),
    )
    return BalanceOut(
        user_id=body.user_id, balance=amount(total), movements=[MovementOut.of(movement)]
    )
