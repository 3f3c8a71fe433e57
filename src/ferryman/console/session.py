"""Who is looking at a console page, and the CSRF checks of its forms.

The console signs in with the management API's own sessions (the `session_token`
cookie: HttpOnly, SameSite=Lax, Secure unless turned off), so logging out here ends
the API session too and the same checks admit both. Every form that changes something
carries the session's CSRF token; the login form, made before there is a session,
carries a token that must match a cookie of its own (double submit).
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from urllib.parse import parse_qs

from fastapi import Request

from ferryman.auth.identity import Identity
from ferryman.auth.services import Auth
from ferryman.auth.sessions import COOKIE
from ferryman.errors import Forbidden, GatewayError, PayloadTooLarge

LOGIN_CSRF = "console_csrf"

#: Bytes a console form may have.
FORM_LIMIT = 16 * 1024


@dataclass(frozen=True)
class Visitor:
    identity: Identity
    csrf: str
    session_id: str


def auth_of(request: Request) -> Auth:
    auth: Auth = request.app.state.auth
    return auth


async def visitor(request: Request) -> Visitor | None:
    """The signed-in visitor, or None (no session, or one that ended)."""
    cookie = request.cookies.get(COOKIE)
    if not cookie:
        return None
    try:
        verified = await auth_of(request).sessions.verify(cookie)
    except GatewayError:
        return None
    identity = verified.identity
    return Visitor(identity, verified.csrf_token, identity.credential_id)


async def form(request: Request) -> dict[str, str]:
    """The posted form's fields (the first value of each)."""
    body = await request.body()
    if len(body) > FORM_LIMIT:
        raise PayloadTooLarge("the form is too large", code="payload_too_large")
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {name: values[0] for name, values in fields.items()}


def check_csrf(sent: str | None, expected: str) -> None:
    if not sent or not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise Forbidden(
            "the form's CSRF token is missing or wrong; reload the page", code="csrf_failed"
        )


def new_login_token() -> str:
    return secrets.token_urlsafe(24)
