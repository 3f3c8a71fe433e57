"""`/api/v1/users`: the caller's own account."""

from __future__ import annotations

from fastapi import APIRouter

from ferryman.api.answers import answers
from ferryman.api.deps import UserDep
from ferryman.api.schemas import UserOut

router = APIRouter(prefix="/users", tags=["users"])


@router.get("/me", responses=answers({404: "`user_not_found`: the account is gone"}))
async def me(user: UserDep) -> UserOut:
    return UserOut.of(user)
