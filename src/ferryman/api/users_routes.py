"""`/api/v1/users`: the caller's own account."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from ferryman.api.answers import answers
from ferryman.api.deps import AuthDep, CallerDep, UserDep
from ferryman.api.schemas import UserOut

router = APIRouter(prefix="/users", tags=["users"])


@router.get("/me", responses=answers({404: "`user_not_found`: the account is gone"}))
async def me(user: UserDep) -> UserOut:
    return UserOut.of(user)


class PasswordChange(BaseModel):
    current_password: str = Field(max_length=1024)
    new_password: str = Field(max_length=1024)


@router.post(
    "/me/password",
    status_code=204,
    responses=answers(
        {
            400: "`weak_password`: the new password is too weak",
            403: "`wrong_password`: the current password is wrong",
            429: "`login_throttled`: too many wrong current passwords",
        }
    ),
)
async def change_password(
    body: PasswordChange, user: UserDep, caller: CallerDep, auth: AuthDep
) -> None:
    """Change the caller's password. Every other session of the account ends (the one
    making the change, if it is a session, stays); JWTs already issued run out."""
    keep = caller.identity.credential_id if caller.via == "session" else None
    await auth.users.change_password(
        user, body.current_password, body.new_password, keep_session=keep
    )
