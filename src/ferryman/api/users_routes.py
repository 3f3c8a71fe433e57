"""`/api/v1/users`: the caller's own account."""

from __future__ import annotations

from fastapi import APIRouter

from ferryman.api.deps import UserDep
from ferryman.api.schemas import UserOut

router = APIRouter(prefix="/users", tags=["users"])


@router.get("/me")
async def me(user: UserDep) -> UserOut:
    return UserOut.of(user)
