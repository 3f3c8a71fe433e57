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
from ferryman.errors import NotFound
from ferryman.manage import users as manage_users
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
    q: Annotated[str, Query(max_length=100, description="in the username or email")] = "",
) -> Page[UserOut]:
    found, total = await manage_users.page(auth, admin, text=q, offset=offset, limit=limit)
    return Page[UserOut](items=[UserOut.of(u) for u in found], total=total)


@router.patch("/users/{user_id}", responses=answers({400: "`self_lockout`"}))
async def change_user(user_id: str, body: UserPatch, admin: AdminDep, auth: AuthDep) -> UserOut:
    """Disable or enable an account (takes effect at once), or change its role/permissions."""
    user = await manage_users.change(
        auth,
        admin,
        user_id,
        is_active=body.is_active,
        role=body.role,
        permissions=tuple(body.permissions) if body.permissions is not None else None,
        caps=body.caps(),
    )
    return UserOut.of(user)


class ResetOut(BaseModel):
    user: UserOut
    password: str
    """The new password, shown this once; give it to the account's owner."""


@router.post(
    "/users/{user_id}/reset-password",
    responses=answers({400: "`self_reset`: use your own profile", 404: "`user_not_found`"}),
)
async def reset_password(user_id: str, admin: AdminDep, auth: AuthDep) -> ResetOut:
    """Give the account a new random password (every session of it ends)."""
    user, password = await manage_users.reset_password(auth, admin, user_id)
    return ResetOut(user=UserOut.of(user), password=password)


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
