"""The console's pages so far: sign in and out, the home page, the profile (password).

Each handler calls the same services as the management API (`auth.users`,
`auth.sessions`), so the console and the API can never disagree about who may do what.
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ferryman.auth.services import Auth
from ferryman.auth.sessions import COOKIE
from ferryman.console.dashboard import dashboard, warm
from ferryman.console.dashboard import top_keys as everyone_top_keys
from ferryman.console.render import base_path, page, redirect
from ferryman.console.session import (
    LOGIN_CSRF,
    auth_of,
    check_csrf,
    form,
    new_login_token,
    visitor,
)
from ferryman.errors import GatewayError, NotFound
from ferryman.store import users as user_rows

_STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".svg": "image/svg+xml"}  # fmt: skip


def console_router(path: str) -> APIRouter:
    router = APIRouter(prefix=path, include_in_schema=False)

    @router.get("")
    async def root(request: Request) -> Response:
        return redirect(request, "/")

    @router.get("/")
    async def home(request: Request) -> Response:
        who = await visitor(request)
        if who is None:
            return redirect(request, "/login")
        return await dashboard(request, who)

    @router.get("/dashboard/top-keys")
    async def top_keys(request: Request) -> Response:
        who = await visitor(request)
        if who is None:
            return redirect(request, "/login")
        return await everyone_top_keys(request, who)

    @router.get("/login")
    async def login_page(request: Request) -> Response:
        if await visitor(request) is not None:
            return redirect(request, "/")
        return _login(request, None, 200)

    @router.post("/login")
    async def login(request: Request) -> Response:
        auth = auth_of(request)
        try:
            fields = await form(request)
            check_csrf(fields.get("csrf"), request.cookies.get(LOGIN_CSRF, ""))
            ip = request.client.host if request.client else "-"
            user = await auth.users.login(
                fields.get("username", ""), fields.get("password", ""), ip
            )
        except GatewayError as error:
            return _login(request, error, error.status)
        _, cookie = await auth.sessions.start(
            user, user_agent=request.headers.get("user-agent"), client_ip=ip
        )
        if user.is_admin:
            warm(request)  # the dashboard they land on shows everyone's top keys
        response = redirect(request, "/")
        _session_cookie(response, auth, cookie)
        response.delete_cookie(LOGIN_CSRF, path=base_path(request))
        return response

    @router.get("/register")
    async def register_page(request: Request) -> Response:
        if not auth_of(request).registration.open:
            return redirect(request, "/login")
        return _register(request, None, 200)

    @router.post("/register")
    async def register(request: Request) -> Response:
        auth = auth_of(request)
        if not auth.registration.open:
            return redirect(request, "/login")
        try:
            fields = await form(request)
            check_csrf(fields.get("csrf"), request.cookies.get(LOGIN_CSRF, ""))
            password = fields.get("password", "")
            if password != fields.get("confirm_password"):
                raise _Mismatch()
            email = fields.get("email", "").strip() or None
            user = await auth.users.register(
                fields.get("username", "").strip() or None,
                password,
                email=email,
                permissions=auth.registration.permissions,
            )
        except GatewayError as error:
            return _register(request, error, error.status)
        ip = request.client.host if request.client else "-"
        _, cookie = await auth.sessions.start(
            user, user_agent=request.headers.get("user-agent"), client_ip=ip
        )
        if user.is_admin:
            warm(request)  # the dashboard they land on shows everyone's top keys
        response = redirect(request, "/")
        _session_cookie(response, auth, cookie)
        response.delete_cookie(LOGIN_CSRF, path=base_path(request))
        return response

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        who = await visitor(request)
        if who is None:
            return redirect(request, "/login")
        try:
            check_csrf((await form(request)).get("csrf"), who.csrf)
        except GatewayError as error:
            return page(request, "error.html", error.status, error=error, who=who.identity)
        auth = auth_of(request)
        await auth.sessions.end(who.session_id)
        response = redirect(request, "/login")
        response.delete_cookie(
            COOKIE, path="/", httponly=True, samesite="lax",
            secure=auth.settings.session_cookie_secure,
        )  # fmt: skip
        return response

    @router.get("/profile")
    async def profile(request: Request) -> Response:
        return await _profile(request, None, None)

    @router.post("/profile/password")
    async def change_password(request: Request) -> Response:
        who = await visitor(request)
        if who is None:
            return redirect(request, "/login")
        auth = auth_of(request)
        try:
            fields = await form(request)
            check_csrf(fields.get("csrf"), who.csrf)
            user = await user_rows.get(auth.db, who.identity.user_id)
            if user is None:
                raise NotFound("the account no longer exists", code="user_not_found")
            new = fields.get("new_password", "")
            if new != fields.get("confirm_password"):
                raise _Mismatch()
            ended = await auth.users.change_password(
                user, fields.get("current_password", ""), new, keep_session=who.session_id
            )
        except GatewayError as error:
            return await _profile(request, error, None)
        done = "Your password was changed." + (
            f" {ended} other session{'s' if ended != 1 else ''} ended." if ended else ""
        )
        return await _profile(request, None, done)

    @router.get("/static/{name}")
    async def static(name: str) -> Response:
        suffix = name[name.rfind(".") :] if "." in name else ""
        kind = _STATIC_TYPES.get(suffix)
        files = resources.files("ferryman.console") / "static"
        if kind is None or "/" in name or name.startswith(".") or not (files / name).is_file():
            return Response(status_code=404)
        body = (files / name).read_bytes()
        return Response(
            body,
            media_type=kind,
            headers={"Cache-Control": "public, max-age=3600"},
        )

    return router


class _Mismatch(GatewayError):
    status = 400
    code = "password_mismatch"

    def __init__(self) -> None:
        super().__init__("the new password and its confirmation differ")


def _session_cookie(response: Response, auth: Auth, cookie: str) -> None:
    """The management API's own session cookie (see `api/auth_routes.py`)."""
    response.set_cookie(
        COOKIE,
        cookie,
        max_age=auth.settings.session_max_age,
        httponly=True,
        samesite="lax",
        secure=auth.settings.session_cookie_secure,
        path="/",
    )


def _register(request: Request, error: GatewayError | None, status: int) -> Response:
    return _login(request, error, status, template="register.html")


def _login(
    request: Request, error: GatewayError | None, status: int, template: str = "login.html"
) -> Response:
    token = new_login_token()
    auth = auth_of(request)
    response = page(
        request,
        template,
        status,
        csrf=token,
        error=error,
        registration=auth.registration.open,
    )
    response.set_cookie(
        LOGIN_CSRF,
        token,
        httponly=True,
        samesite="strict",
        secure=auth.settings.session_cookie_secure,
        path=base_path(request),
    )
    return response


async def _profile(request: Request, error: GatewayError | None, done: str | None) -> Response:
    who = await visitor(request)
    if who is None:
        return redirect(request, "/login")
    user = await user_rows.get(auth_of(request).db, who.identity.user_id)
    status = error.status if error is not None else 200
    return page(
        request, "profile.html", status, who=who.identity, user=user, csrf=who.csrf,
        error=error, done=done,
    )  # fmt: skip
