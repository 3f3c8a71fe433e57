"""`/api/v1/tokens`: access passes (seed 002)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field, Strict

from ferryman.api.answers import answers
from ferryman.api.deps import AuthDep, CallerDep, owned_by
from ferryman.api.schemas import WHOLE, NewPassOut, PassOut, PassStatusOut
from ferryman.errors import NotFound
from ferryman.store import passes
from ferryman.store.credits import MICROS
from ferryman.store.passes import AccessPass

router = APIRouter(prefix="/tokens", tags=["access tokens"])


class PurchaseIn(BaseModel):
    duration_hours: Annotated[int, Strict(), Field(ge=1, le=24 * 366), WHOLE]
    """One of the durations on sale (`FERRYMAN_ACCESS_PASS_DURATIONS`)."""


async def _pass(auth: AuthDep, caller: CallerDep, pass_id: str) -> AccessPass:
    missing = NotFound("no such access token", code="token_not_found")
    record = await passes.get(auth.db, pass_id)
    if record is None:
        raise missing
    owned_by(caller, record.user_id, missing)
    return record


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
    record, raw = await auth.passes.purchase(caller.user_id, body.duration_hours)
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
    record = await _pass(auth, caller, pass_id)
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
    await _pass(auth, caller, pass_id)
    record = await auth.passes.revoke(pass_id)
    if record is None:
        raise NotFound("no such access token", code="token_not_found")
    return PassOut.of(record, auth.clock.now())


class RefundOut(BaseModel):
    token_id: str
    refunded: float
    balance: float


@router.post("/{pass_id}/refund", responses=answers({409: "`pass_activated`, `pass_revoked`"}))
async def refund(pass_id: str, caller: CallerDep, auth: AuthDep) -> RefundOut:
    """Refund a pass never activated (once); it is revoked at the same time."""
    await _pass(auth, caller, pass_id)
    refunded, balance = await auth.passes.refund(pass_id)
    return RefundOut(token_id=pass_id, refunded=refunded / MICROS, balance=balance / MICROS)
