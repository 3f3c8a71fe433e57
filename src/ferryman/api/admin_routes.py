"""`/api/v1/admin`: accounts and everyone's credentials (admins only)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from ferryman.api.answers import answers
from ferryman.api.deps import AdminDep, AuthDep
from ferryman.api.schemas import (
    MAX_OFFSET,
    AllowancePatch,
    KeyOut,
    Page,
    PassOut,
    SessionOut,
    UserOut,
)
from ferryman.errors import BadRequest, NotFound
from ferryman.store import api_keys, passes, sessions, users

router = APIRouter(prefix="/admin", tags=["admin"])


class UserPatch(AllowancePatch):
    """An account's state and access, and its caps across all its credentials."""

    is_active: bool | None = None
    role: Literal["admin", "user"] | None = None
    permissions: Annotated[list[str] | None, Field(max_length=100)] = None


class Credentials(BaseModel):
    user: UserOut
    api_keys: list[KeyOut]
    access_tokens: list[PassOut]
    sessions: list[SessionOut]


@router.get("/users")
async def list_users(
    admin: AdminDep,
    auth: AuthDep,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Page[UserOut]:
    found, total = await users.page(auth.db, offset=offset, limit=limit)
    return Page[UserOut](items=[UserOut.of(u) for u in found], total=total)


@router.patch("/users/{user_id}", responses=answers({400: "`self_lockout`"}))
async def change_user(user_id: str, body: UserPatch, admin: AdminDep, auth: AuthDep) -> UserOut:
    """Disable or enable an account (takes effect at once), or change its role/permissions."""
    if user_id == admin.user_id and (body.is_active is False or body.role == "user"):
        raise BadRequest("an admin cannot disable or demote themselves", code="self_lockout")
    user = await users.get(auth.db, user_id)
    if user is None:
        raise NotFound("no such user", code="user_not_found")
    if body.is_active is not None:
        user = await auth.users.set_active(user_id, body.is_active)
    caps = body.caps()
    if body.role is not None or body.permissions is not None or caps:
        permissions = tuple(body.permissions) if body.permissions is not None else None
        user = await auth.users.set_access(
            user_id, role=body.role, permissions=permissions, caps=caps
        )
    assert user is not None
    return UserOut.of(user)


@router.get("/users/{user_id}/credentials")
async def credentials(user_id: str, admin: AdminDep, auth: AuthDep) -> Credentials:
    user = await users.get(auth.db, user_id)
    if user is None:
        raise NotFound("no such user", code="user_not_found")
    now = auth.clock.now()
    return Credentials(
        user=UserOut.of(user),
        api_keys=[KeyOut.of(k) for k in await api_keys.for_user(auth.db, user_id)],
        access_tokens=[PassOut.of(p, now) for p in await passes.for_user(auth.db, user_id)],
        sessions=[SessionOut.of(s) for s in await sessions.for_user(auth.db, user_id)],
    )
