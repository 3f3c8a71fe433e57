"""Who is calling the management API, and what they may do.

The management API takes a user JWT (`Authorization: Bearer`) or a session cookie.
Client API keys are refused here: a leaked proxy key must not be able to mint more
keys. A state-changing request made with the session cookie must carry the session's
CSRF token in `X-CSRF-Token`.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from ferryman.auth.hashing import API_KEY_PREFIX
from ferryman.auth.services import Auth
from ferryman.auth.sessions import COOKIE
from ferryman.errors import Forbidden, NotFound, ServiceUnavailable, Unauthorized
from ferryman.manage.caller import Caller, owned_by
from ferryman.observability.context import SCOPE_KEY, RequestContext
from ferryman.store import users
from ferryman.store.users import User

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def get_auth(request: Request) -> Auth:
    auth: Auth | None = getattr(request.app.state, "auth", None)
    if auth is None:
        raise ServiceUnavailable("the gateway is starting", code="starting")
    return auth


def client_ip(request: Request) -> str:
    ctx: RequestContext | None = request.scope.get(SCOPE_KEY)
    if ctx is not None:
        return ctx.client_ip
    return request.client.host if request.client else "-"


async def get_caller(request: Request, auth: Annotated[Auth, Depends(get_auth)]) -> Caller:
    header = request.headers.get("authorization")
    if header:
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("use Authorization: Bearer <token>", code="invalid_credential")
        if token.startswith(API_KEY_PREFIX):
            raise Unauthorized(
                "client API keys cannot use the management API; log in for a token",
                code="invalid_credential",
            )
        identity = await auth.jwt.verify(token)
        caller = Caller(identity, "jwt")
    else:
        cookie = request.cookies.get(COOKIE)
        if not cookie:
            raise Unauthorized("log in first", code="missing_credential")
        verified = await auth.sessions.verify(cookie)
        if request.method not in SAFE_METHODS:
            sent = request.headers.get("x-csrf-token", "")
            if not hmac.compare_digest(sent.encode(), verified.csrf_token.encode()):
                raise Forbidden("missing or wrong X-CSRF-Token", code="csrf_failed")
        caller = Caller(verified.identity, "session")
    ctx: RequestContext | None = request.scope.get(SCOPE_KEY)
    if ctx is not None:
        ctx.consumer = caller.user_id
        ctx.credential = caller.identity.credential_id
    return caller


async def get_admin(caller: Annotated[Caller, Depends(get_caller)]) -> Caller:
    if not caller.is_admin:
        raise Forbidden("this needs an admin account", code="admin_required")
    return caller


async def get_user(
    caller: Annotated[Caller, Depends(get_caller)], auth: Annotated[Auth, Depends(get_auth)]
) -> User:
    user = await users.get(auth.db, caller.user_id)
    if user is None:
        raise NotFound("the account no longer exists", code="user_not_found")
    return user


AuthDep = Annotated[Auth, Depends(get_auth)]
CallerDep = Annotated[Caller, Depends(get_caller)]
AdminDep = Annotated[Caller, Depends(get_admin)]
UserDep = Annotated[User, Depends(get_user)]


__all__ = ["Caller", "owned_by"]
