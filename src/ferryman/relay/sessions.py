"""Anonymous widget sessions, bound to the origin of the page that created them.

A session has a public id (`session_id`, in answers and history URLs) and a secret
token (the cookie's value, 256 random bits) that is stored only as its keyed hash. A
session admits a call only from its own origin, until it expires or is revoked.

Checking a session on every message reads the database only when the token is not
cached: an answer (found or not) is kept for `CACHE_SECONDS`, so a revocation by
another instance takes effect within that time (at once on this one).
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import timedelta

from ferryman.auth.hashing import KeyedHash, new_session_token
from ferryman.clock import Clock
from ferryman.config.relay import Relay
from ferryman.store import relay as rows
from ferryman.store.engine import Database
from ferryman.store.relay import WidgetSession

CACHE_SECONDS = 10.0
CACHE_SIZE = 10_000


@dataclass(frozen=True, slots=True)
class Created:
    session: WidgetSession
    token: str
    """The cookie's value: shown once, never stored."""


class WidgetSessions:
    """One relay's sessions."""

    def __init__(self, db: Database, hasher: KeyedHash, clock: Clock, spec: Relay) -> None:
        self.db = db
        self.hasher = hasher
        self.clock = clock
        self.spec = spec
        self._cache: OrderedDict[str, tuple[float, WidgetSession | None]] = OrderedDict()

    async def create(
        self, origin: str, page_url: str | None, client_ip: str, user_agent: str | None
    ) -> Created:
        token = new_session_token()
        now = self.clock.now()
        session = WidgetSession(
            id=str(uuid.uuid4()),
            relay=self.spec.name,
            token_hash=self.hasher.digest(token),
            origin=origin,
            page_url=page_url,
            client_ip=client_ip,
            user_agent=user_agent[:300] if user_agent else None,
            created_at=now,
            expires_at=now + timedelta(seconds=self.spec.session.max_age),
            revoked_at=None,
        )
        await rows.create(self.db, session)
        return Created(session, token)

    async def find(self, token: str) -> WidgetSession | None:
        """The live session this token opens, or None (unknown, expired, revoked, or
        another relay's)."""
        if not token or len(token) > 128:
            return None
        digest = self.hasher.digest(token)
        cached = self._cache.get(digest)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            session = cached[1]
        else:
            session = await rows.by_hash(self.db, digest)
            self._cache[digest] = (now + CACHE_SECONDS, session)
            self._cache.move_to_end(digest)
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        if session is None or session.relay != self.spec.name:
            return None
        if session.revoked_at is not None or session.expires_at <= self.clock.now():
            return None
        return session

    async def revoke(self, session: WidgetSession) -> None:
        await rows.revoke(self.db, session.id, self.clock.now())
        self._cache.pop(session.token_hash, None)
