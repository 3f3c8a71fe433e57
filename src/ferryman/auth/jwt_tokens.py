"""User JWTs (HS256) for the management API and `jwt` routes."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from ferryman.auth import errors
from ferryman.auth.cache import Entry
from ferryman.auth.identity import Identity
from ferryman.clock import Clock
from ferryman.errors import Unauthorized
from ferryman.store.users import User

if TYPE_CHECKING:
    from ferryman.auth.services import Auth


def load() -> None:
    """Import PyJWT (with cryptography's public-key algorithms, ~2.4 MB resident): only
    a gateway that issues or verifies JWTs pays for it, at startup when a route takes
    them and when the management API loads, so no request waits for the import."""
    importlib.import_module("jwt")


WHAT = "token"
ALGORITHM = "HS256"
AUDIENCE = "ferryman"


class JwtCodec:
    """Issues and verifies access tokens; `sub` is the user id."""

    def __init__(self, secret: str, expire_minutes: int, clock: Clock) -> None:
        self._secret = secret
        self.expire_minutes = expire_minutes
        self._clock = clock

    def issue(self, user: User) -> tuple[str, int]:
        import jwt  # see load()

        now = self._clock.now()
        expires_in = self.expire_minutes * 60
        claims = {
            "sub": user.id,
            "username": user.username,
            "role": user.role,
            "aud": AUDIENCE,
            "iat": int(now.timestamp()),
            "exp": int((now + timedelta(seconds=expires_in)).timestamp()),
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM), expires_in

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of a valid, unexpired token, or Unauthorized."""
        import jwt  # see load()

        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                # Time is checked below against our (injectable) clock: not the
                # library's, which would refuse a token issued by a clock a second ahead.
                options={
                    "require": ["sub", "exp", "iat"],
                    "verify_exp": False,
                    "verify_iat": False,
                },
            )
        except jwt.PyJWTError:
            raise Unauthorized("the token is not valid", code="invalid_credential") from None
        # Expiry against our clock (injectable), not the library's.
        if claims["exp"] <= self._clock.now().timestamp():
            raise Unauthorized("the token has expired", code="expired_credential")
        if not isinstance(claims["sub"], str):
            raise Unauthorized("the token is not valid", code="invalid_credential")
        return claims


class JwtAuth:
    """Verifies user JWTs through the credential cache (a decode costs ~0.1 ms)."""

    def __init__(self, auth: Auth) -> None:
        self._auth = auth

    async def verify(self, token: str) -> Identity:
        auth = self._auth
        digest = auth.hash.digest(token)
        entry = auth.cache.get(digest)
        if entry is None:
            claims = auth.jwt_codec.verify(token)
            state = auth.cache.user_state(claims["sub"]) or await auth.load_state(claims["sub"])
            if state is None:
                raise errors.invalid(WHAT)
            entry = Entry(
                kind="jwt",
                credential_id=f"jwt:{digest[:16]}",
                user=state,
                loaded_at=auth.clock.monotonic(),
                expires_at=datetime.fromtimestamp(claims["exp"], UTC),
            )
            auth.cache.put(digest, entry)
        elif entry.expires_at is not None and auth.clock.now() >= entry.expires_at:
            raise errors.expired(WHAT)
        if not entry.user.is_active:
            raise errors.disabled()
        return entry.identity()
