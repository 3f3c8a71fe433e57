"""Server-side sessions (seed 001) behind a signed `session_token` cookie.

The cookie holds a random token and its signature; the server keeps the token's keyed
hash with the session's expiry, last activity and revocation. A session ends at
`session_max_age` after login, after `session_idle_timeout` without use, or when
revoked (logout). Unsafe management requests made with the cookie must also carry the
session's CSRF token in `X-CSRF-Token`.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

import structlog

from ferryman.auth import errors
from ferryman.auth.cache import Entry
from ferryman.auth.hashing import new_session_token
from ferryman.auth.identity import Identity
from ferryman.auth.singleflight import SingleFlight
from ferryman.store import sessions as rows
from ferryman.store.sessions import Session
from ferryman.store.users import User

if TYPE_CHECKING:
    from ferryman.auth.services import Auth

log = structlog.get_logger("ferryman.sessions")

COOKIE = "session_token"
WHAT = "session"


@dataclass(frozen=True)
class Verified:
    identity: Identity
    csrf_token: str


def cookie_value(cookie_header: str, name: str = COOKIE) -> str | None:
    """One cookie's value from a `Cookie` header."""
    for part in cookie_header.split(";"):
        key, eq, value = part.strip().partition("=")
        if eq and key == name:
            return value.strip().strip('"')
    return None


def without_cookie(cookie_header: str, name: str = COOKIE) -> str:
    """The `Cookie` header minus one cookie (for forwarding upstream)."""
    kept = [p.strip() for p in cookie_header.split(";") if p.strip().partition("=")[0] != name]
    return "; ".join(p for p in kept if p)


class Sessions:
    def __init__(self, auth: Auth) -> None:
        self._auth = auth
        self._loads: SingleFlight[Entry | None] = SingleFlight()

    async def start(
        self, user: User, *, user_agent: str | None, client_ip: str | None
    ) -> tuple[Session, str]:
        """A new session for `user`; returns it and the signed cookie value."""
        auth = self._auth
        raw = new_session_token()
        now = auth.clock.now()
        session = await rows.create(
            auth.db,
            user_id=user.id,
            token_hash=auth.hash.digest(raw),
            csrf_token=secrets.token_urlsafe(24),
            now=now,
            expires_at=now + timedelta(seconds=auth.settings.session_max_age),
            user_agent=(user_agent or "")[:300] or None,
            client_ip=client_ip,
        )
        log.info("session_started", session_id=session.id, user_id=user.id)
        return session, auth.session_signer.sign(raw)

    async def end(self, session_id: str) -> None:
        await rows.revoke(self._auth.db, session_id, self._auth.clock.now())
        await self._auth.invalidations.credential(session_id)
        log.info("session_ended", session_id=session_id)

    async def _load(self, digest: str) -> Entry | None:
        auth = self._auth
        session = await rows.by_hash(auth.db, digest)
        state = None if session is None else await auth.load_state(session.user_id)
        if session is None or state is None:
            auth.cache.remember_unknown(digest)
            return None
        # Activity this process saw but has not written yet counts too.
        pending = auth.touches.session_seen(session.id)
        last_seen = max(session.last_seen_at, pending) if pending else session.last_seen_at
        entry = Entry(
            kind="session",
            credential_id=session.id,
            user=state,
            loaded_at=auth.clock.monotonic(),
            expires_at=session.expires_at,
            revoked=session.revoked_at is not None,
            csrf_token=session.csrf_token,
            last_seen_at=last_seen,
        )
        auth.cache.put(digest, entry)
        return entry

    async def verify(self, signed: str) -> Verified:
        """The identity behind a session cookie, or 401; marks the session as used."""
        auth = self._auth
        raw = auth.session_signer.unsign(signed)
        if raw is None:
            raise errors.invalid(WHAT)
        digest = auth.hash.digest(raw)
        entry = auth.cache.get(digest)
        if entry is None:
            if auth.cache.is_unknown(digest):
                raise errors.invalid(WHAT)
            entry = await self._loads.do(digest, lambda: self._load(digest))
            if entry is None:
                raise errors.invalid(WHAT)
        now = auth.clock.now()
        idle = timedelta(seconds=auth.settings.session_idle_timeout)
        if entry.last_seen_at is not None and now - entry.last_seen_at > idle:
            # This process may not have seen recent use elsewhere: ask the database.
            auth.cache.forget_digest(digest)
            fresh = await self._load(digest)
            if fresh is None or fresh.last_seen_at is None or now - fresh.last_seen_at > idle:
                raise errors.idle(WHAT)
            entry = fresh
        if entry.revoked:
            raise errors.revoked(WHAT)
        if entry.expires_at is not None and now >= entry.expires_at:
            raise errors.expired(WHAT)
        user = entry.user
        if not user.is_active:
            raise errors.disabled()
        entry.last_seen_at = now
        auth.touches.session(entry.credential_id, now.timestamp())
        return Verified(entry.identity(), entry.csrf_token)
