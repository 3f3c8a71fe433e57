"""`/api/v1/tokens`: access passes (seed 002)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field, Strict

from ferryman.api.answers import answers
from ferryman.api.deps import AuthDep, CallerDep
from ferryman.api.schemas import WHOLE, NewPassOut, PassOut, PassStatusOut
from ferryman.manage import passes as manage_passes
from ferryman.store import passes
from ferryman.store.credits import MICROS

router = APIRouter(prefix="/tokens", tags=["access tokens"])


class PurchaseIn(BaseModel):
    duration_hours: Annotated[int, Strict(), Field(ge=1, le=24 * 366), WHOLE]
    """One of the durations on sale (`FERRYMAN_ACCESS_PASS_DURATIONS`)."""


@router.post(
    "/purchase",
    status_code=201,
    responses=answers(
        {
            400: "`invalid_duration`",
            402: "`insufficient_balance`: the pass costs more than the credit balance",
        }
    ),
)
async def purchase(body: PurchaseIn, caller: CallerDep, auth: AuthDep) -> NewPassOut:
    """A pass for one of the allowed durations; it starts counting at its first use."""
    record, raw = await manage_passes.buy(auth, caller, body.duration_hours)
    view = PassOut.of(record, auth.clock.now())
    return NewPassOut(**view.model_dump(), token=raw)


@router.get("/my-tokens")
async def my_tokens(
    caller: CallerDep,
    auth: AuthDep,
    active_only: Annotated[bool, Query()] = True,
) -> list[PassOut]:
    """The caller's passes; by default only those still usable (not revoked or expired)."""
    now = auth.clock.now()
    views = [PassOut.of(r, now) for r in await passes.for_user(auth.db, caller.user_id)]
    if active_only:
        views = [v for v in views if v.status in ("active", "not_activated")]
    return views


@router.get("/{pass_id}/status")
async def status(pass_id: str, caller: CallerDep, auth: AuthDep) -> PassStatusOut:
    """Read-only: looking never activates a pass."""
    record = await manage_passes.find(auth, caller, pass_id)
    now = auth.clock.now()
    state = record.state(now)
    remaining = None
    if state == "active" and record.expires_at is not None:
        remaining = int((record.expires_at - now).total_seconds())
    return PassStatusOut(
        token_id=record.id,
        status=state,
        is_active=state in ("active", "not_activated"),
        duration_hours=record.duration_hours,
        activated_at=record.activated_at,
        expires_at=record.expires_at,
        time_remaining_seconds=remaining,
    )


@router.post("/{pass_id}/revoke")
async def revoke(pass_id: str, caller: CallerDep, auth: AuthDep) -> PassOut:
    record = await manage_passes.revoke(auth, caller, pass_id)
    return PassOut.of(record, auth.clock.now())


class RefundOut(BaseModel):
    token_id: str
    refunded: float
    balance: float


@router.post("/{pass_id}/refund", responses=answers({409: "`pass_activated`, `pass_revoked`"}))
async def refund(pass_id: str, caller: CallerDep, auth: AuthDep) -> RefundOut:
    """Refund a pass never activated (once); it is revoked at the same time."""
    refunded, balance = await manage_passes.refund(auth, caller, pass_id)
    return RefundOut(token_id=pass_id, refunded=refunded / MICROS, balance=balance / MICROS)
