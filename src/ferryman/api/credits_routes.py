"""`/api/v1/credits`: a user's credit balance and its movements (seed 002, next phase).

The balance is the sum of an append-only ledger: top-ups by an admin, pass purchases
(debits) and refunds of passes never activated. Amounts are in the currency of the
configured pass prices, exact to 6 decimals.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema
from pydantic_core import PydanticCustomError

from ferryman.api.answers import answers
from ferryman.api.deps import AdminDep, AuthDep, CallerDep
from ferryman.manage import passes as manage_passes
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


_MONEY_TEXT = r"^(?=.*[1-9])[0-9]{1,12}(\.[0-9]{1,6})?$"
_MONEY_DIGITS = re.compile(r"[0-9]{1,12}(\.[0-9]{1,6})?")
_MICRO = Decimal("0.000001")


def _money(value: object) -> object:
    """A string is the exact amount, in plain digits; a JSON number (a binary float)
    is taken to the micro-unit, the ledger's resolution."""
    if isinstance(value, bool):
        raise PydanticCustomError("money", "an amount: a number or a string of digits")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise PydanticCustomError("money", "an amount: a finite number")
        return Decimal(repr(value)).quantize(_MICRO, ROUND_HALF_EVEN)
    if isinstance(value, str) and not _MONEY_DIGITS.fullmatch(value):
        raise PydanticCustomError("money", "an amount as digits, at most 6 after the point")
    return value


#: What the schema says of an amount, and all that `_money` and the bounds accept.
_MONEY_SCHEMA = {
    "anyOf": [
        {"type": "number", "minimum": 0.000001, "maximum": 999_999_999_999},
        {"type": "string", "pattern": _MONEY_TEXT},
    ]
}


class TopUpIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str
    amount: Annotated[
        Decimal,
        BeforeValidator(_money),
        Field(gt=0, max_digits=18, decimal_places=6),
        WithJsonSchema(_MONEY_SCHEMA),
    ]
    """In the pass prices' currency: a string (`"12.50"`) is exact; a number is rounded
    to 6 places."""
    note: Annotated[str | None, Field(max_length=200)] = None


@router.get("")
async def balance(
    caller: CallerDep,
    auth: AuthDep,
    user_id: Annotated[str | None, Query(description="admins: another user's")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> BalanceOut:
    """The balance and the newest movements."""
    owner, total, rows = await manage_passes.balance(auth, caller, user_id, limit)
    return BalanceOut(
        user_id=owner, balance=amount(total), movements=[MovementOut.of(r) for r in rows]
    )


@router.post(
    "/top-up",
    status_code=201,
    responses=answers(
        {404: "`user_not_found`", 409: "`balance_limit`: the balance would pass its ceiling"}
    ),
)
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
