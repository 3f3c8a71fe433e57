"""The console's users page (admins): search and pages on the server; make admin or
user, disable or enable, reset a password (the new one shown once). Every action goes
through `manage.users`, as the API's do."""

from __future__ import annotations

import math
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ferryman.console.pages import list_router
from ferryman.console.render import page, redirect
from ferryman.console.session import Visitor, auth_of, check_csrf, form, visitor
from ferryman.errors import GatewayError
from ferryman.manage import users as manage_users
from ferryman.manage.caller import Caller
from ferryman.store.users import User

PAGE_SIZE = 50


def users_router(path: str) -> APIRouter:
    return list_router(path + "/users", _listing, _act, create=None)


async def _act(request: Request, user_id: str | None, action: str) -> Response:
    who = await visitor(request)
    if who is None:
        return redirect(request, "/login")
    if user_id is None:  # the page takes no new accounts (registration does)
        return Response(status_code=404)
    auth = auth_of(request)
    caller = Caller(who.identity, "session")
    reset: tuple[User, str] | None = None
    try:
        check_csrf((await form(request)).get("csrf"), who.csrf)
        if action in ("disable", "enable"):
            await manage_users.change(auth, caller, user_id, is_active=action == "enable")
        elif action in ("make-admin", "make-user"):
            role = "admin" if action == "make-admin" else "user"
            await manage_users.change(auth, caller, user_id, role=role)
        elif action == "reset-password":
            reset = await manage_users.reset_password(auth, caller, user_id)
        else:
            return Response(status_code=404)
    except GatewayError as error:
        return await _listing(request, who, error=error)
    if reset is not None:
        return await _listing(request, who, reset=reset)
    back = request.headers.get("referer", "")
    return redirect(request, "/users" + (back[back.index("?") :] if "?" in back else ""))


async def _listing(
    request: Request,
    who: Visitor,
    *,
    error: GatewayError | None = None,
    reset: tuple[User, str] | None = None,
) -> Response:
    auth = auth_of(request)
    caller = Caller(who.identity, "session")
    args = request.query_params
    text = args.get("q", "")[:100]
    try:
        number = max(1, int(args.get("page", "1")))
    except ValueError:
        number = 1
    try:
        found, total = await manage_users.page(
            auth, caller, text=text, offset=(number - 1) * PAGE_SIZE, limit=PAGE_SIZE
        )
    except GatewayError as refused:  # not an admin: the page does not exist for them
        return page(request, "error.html", refused.status, error=refused, who=who.identity,
                    csrf=who.csrf)  # fmt: skip
    pages = max(1, math.ceil(total / PAGE_SIZE))

    def link(**change: str) -> str:
        current = {"q": text, "page": str(number)} | change
        return "?" + urlencode({k: v for k, v in current.items() if v})

    return page(
        request, "users.html", error.status if error is not None else 200,
        who=who.identity, csrf=who.csrf, current="users", rows=found, total=total,
        number=number, pages=pages, text=text, link=link, error=error, reset=reset,
    )  # fmt: skip
