"""`/api/v1/auth`: register, log in (JWT or session cookie), log out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from ferryman.api.answers import answers
from ferryman.api.deps import AuthDep, CallerDep, client_ip
from ferryman.api.limits import limit_auth
from ferryman.api.schemas import UserOut
from ferryman.auth.sessions import COOKIE
from ferryman.errors import Forbidden

router = APIRouter(prefix="/auth", tags=["auth"])

#: Every registration or login attempt counts against its IP, before anything is checked.
ATTEMPT = [Depends(limit_auth)]
LOGIN_ANSWERS = answers(
    {
        401: "`invalid_login`, `account_disabled`",
        429: "`login_throttled` after failed logins, or `rate_limited` (with `Retry-After`)",
    }
)


class _UsernameOrEmail(BaseModel):
    """A body naming an account by `username` or `email`; subclasses declare `email`
    before `username`, whose check reads it."""

    # The document says so too: one of the two, given as a string.
    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": [name], "properties": {name: {"type": "string"}}}
                for name in ("username", "email")
            ]
        }
    )

    @field_validator("username", check_fields=False)
    @classmethod
    def _username_or_email(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None and info.data.get("email") is None:
            raise PydanticCustomError("missing", "a username or an email is required")
        return value


class RegisterIn(_UsernameOrEmail):
    email: Annotated[str | None, Field(max_length=254)] = None
    """Given alone (seed 003), the address is the account's username as well."""
    username: Annotated[str | None, Field(min_length=3, max_length=64, validate_default=True)] = (
        None
    )
    password: Annotated[str, Field(min_length=1, max_length=1024)]
    password_confirm: Annotated[str | None, Field(max_length=1024)] = None
    """When sent, it must equal `password`."""
    full_name: Annotated[str | None, Field(max_length=200)] = None

    @field_validator("password_confirm")
    @classmethod
    def _confirmed(cls, value: str | None, info: ValidationInfo) -> str | None:
        password = info.data.get("password")
        # Both come from the one caller: no timing to hide, a plain comparison will do.
        if value is not None and password is not None and value != password:
            raise PydanticCustomError("password_mismatch", "does not match password")
        return value


class LoginIn(_UsernameOrEmail):
    email: Annotated[str | None, Field(min_length=1, max_length=254)] = None
    """The account's email address (seed 003's login), instead of `username`."""
    username: Annotated[str | None, Field(min_length=1, max_length=254, validate_default=True)] = (
        None
    )
    """A username, or the account's email address."""
    password: Annotated[str, Field(min_length=1, max_length=1024)]

    @property
    def login(self) -> str:
        login = self.username if self.username is not None else self.email
        assert login is not None  # the validator saw to it
        return login


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_in: int


class SessionStarted(BaseModel):
    user: UserOut
    csrf_token: str
    """Send as `X-CSRF-Token` with state-changing requests made with the cookie."""
    expires_at: str


@router.post(
    "/register",
    status_code=201,
    dependencies=ATTEMPT,
    responses=answers(
        {
            400: "`invalid_username`, `invalid_email`, `weak_password`",
            403: "`registration_closed`",
            409: "`user_exists`",
        }
    ),
)
async def register(body: RegisterIn, auth: AuthDep) -> UserOut:
    if not auth.registration.open:
        raise Forbidden("registration is closed; ask an admin", code="registration_closed")
    user = await auth.users.register(
        body.username,
        body.password,
        email=body.email,
        full_name=body.full_name,
        permissions=auth.registration.permissions,
    )
    return UserOut.of(user)


@router.post("/login", dependencies=ATTEMPT, responses=LOGIN_ANSWERS)
async def login(body: LoginIn, request: Request, auth: AuthDep) -> TokenOut:
    user = await auth.users.login(body.login, body.password, client_ip(request))
    token, expires_in = auth.jwt_codec.issue(user)
    return TokenOut(access_token=token, expires_in=expires_in)


@router.post("/session", dependencies=ATTEMPT, responses=LOGIN_ANSWERS)
async def start_session(
    body: LoginIn, request: Request, response: Response, auth: AuthDep
) -> SessionStarted:
    """Log in with a server-side session held by an HttpOnly cookie."""
    ip = client_ip(request)
    user = await auth.users.login(body.login, body.password, ip)
    session, cookie = await auth.sessions.start(
        user, user_agent=request.headers.get("user-agent"), client_ip=ip
    )
    response.set_cookie(
        COOKIE,
        cookie,
        max_age=auth.settings.session_max_age,
        httponly=True,
        samesite="lax",
        secure=auth.settings.session_cookie_secure,
        path="/",
    )
    return SessionStarted(
        user=UserOut.of(user),
        csrf_token=session.csrf_token,
        expires_at=session.expires_at.isoformat(),
    )


@router.post("/logout", status_code=204)
async def logout(caller: CallerDep, response: Response, auth: AuthDep) -> None:
    """End the session the cookie names (a JWT simply expires)."""
    if caller.via == "session":
        await auth.sessions.end(caller.identity.credential_id)
    response.delete_cookie(
        COOKIE, path="/", httponly=True, samesite="lax", secure=auth.settings.session_cookie_secure
    )
