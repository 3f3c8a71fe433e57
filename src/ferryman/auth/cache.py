"""Verified credentials, cached so a warm one costs no database read.

Entries are keyed by the credential's keyed hash. Every entry of one user points at
one shared `UserState`, so disabling a user, or changing their role, reaches all their
cached credentials at once. An entry lives `ttl` seconds at most; invalidation removes
it sooner (`Invalidations`). Unknown credentials are remembered briefly too, so a
stream of made-up keys does not become a stream of database reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ferryman.auth.identity import Identity
from ferryman.clock import Clock
from ferryman.limits.allowance import NOTHING, Allowance

MAX_ENTRIES = 100_000


@dataclass(slots=True)
class UserState:
    """What every credential of a user needs to know about the user."""

    id: str
    username: str
    role: str
    permissions: frozenset[str]
    is_active: bool
    allowance: Allowance = NOTHING
    valid: bool = True
    version: int = 0
    """Bumped whenever the fields change, so identities built from them are rebuilt."""


@dataclass(slots=True)
class Entry:
    """One verified credential."""

    kind: str
    credential_id: str
    user: UserState
    loaded_at: float
    scopes: frozenset[str] = frozenset()
    expires_at: datetime | None = None
    #: `expires_at` as epoch seconds, for the per-request check.
    expires_ts: float | None = None
    revoked: bool = False
    #: Access passes: when activated (None: not yet) and for how long.
    activated_at: datetime | None = None
    duration_hours: int = 0
    #: Sessions: their CSRF token and last activity.
    csrf_token: str = ""
    last_seen_at: datetime | None = None
    #: Client keys: their own caps.
    allowance: Allowance = NOTHING
    _identity: Identity | None = None
    _identity_version: int = -1

    def identity(self) -> Identity:
        """Who this credential is, built once and reused until the user changes."""
        user = self.user
        identity = self._identity
        if identity is None or self._identity_version != user.version:
            identity = Identity(
                kind=self.kind,
                user_id=user.id,
                username=user.username,
                role=user.role,
                permissions=user.permissions,
                credential_id=user.id if self.kind == "jwt" else self.credential_id,
                scopes=self.scopes,
                expires_at=self.expires_at,
                allowance=self.allowance,
                user_allowance=user.allowance,
            )
            self._identity, self._identity_version = identity, user.version
        return identity


class CredentialCache:
    """The in-process cache; see the module docstring."""

    def __init__(self, clock: Clock, ttl: float = 60.0, negative_ttl: float = 10.0) -> None:
        self._clock = clock
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self._entries: dict[str, Entry] = {}
        self._digests: dict[str, str] = {}  # credential id -> digest
        self._users: dict[str, UserState] = {}
        self._unknown: dict[str, float] = {}

    def get(self, digest: str) -> Entry | None:
        entry = self._entries.get(digest)
        if entry is None:
            return None
        if not entry.user.valid or self._clock.monotonic() - entry.loaded_at > self.ttl:
            self._drop(digest)
            return None
        return entry

    def put(self, digest: str, entry: Entry) -> None:
        if len(self._entries) >= MAX_ENTRIES:
            self.clear()
        self._entries[digest] = entry
        self._digests[entry.credential_id] = digest
        self._unknown.pop(digest, None)

    def user(
        self,
        user_id: str,
        username: str,
        role: str,
        permissions: frozenset[str],
        active: bool,
        allowance: Allowance = NOTHING,
    ) -> UserState:
        """The shared state of a user, refreshed with what was just read."""
        state = self._users.get(user_id)
        if state is None or not state.valid:
            state = UserState(user_id, username, role, permissions, active, allowance)
            self._users[user_id] = state
        elif (state.username, state.role, state.permissions, state.is_active, state.allowance) != (
            username,
            role,
            permissions,
            active,
            allowance,
        ):
            state.username, state.role = username, role
            state.permissions, state.is_active, state.allowance = permissions, active, allowance
            state.version += 1
        return state

    def user_state(self, user_id: str) -> UserState | None:
        """The cached state of a user, if it is still valid."""
        state = self._users.get(user_id)
        return state if state is not None and state.valid else None

    def is_unknown(self, digest: str) -> bool:
        until = self._unknown.get(digest)
        if until is None:
            return False
        if self._clock.monotonic() >= until:
            del self._unknown[digest]
            return False
        return True

    def remember_unknown(self, digest: str) -> None:
        if len(self._unknown) >= MAX_ENTRIES:
            self._unknown.clear()
        self._unknown[digest] = self._clock.monotonic() + self.negative_ttl

    def forget_user(self, user_id: str) -> None:
        state = self._users.pop(user_id, None)
        if state is not None:
            state.valid = False

    def forget_credential(self, credential_id: str) -> None:
        digest = self._digests.pop(credential_id, None)
        if digest is not None:
            self._entries.pop(digest, None)

    def forget_digest(self, digest: str) -> None:
        self._unknown.pop(digest, None)
        self._drop(digest)

    def _drop(self, digest: str) -> None:
        entry = self._entries.pop(digest, None)
        if entry is not None and self._digests.get(entry.credential_id) == digest:
            del self._digests[entry.credential_id]

    def clear(self) -> None:
        self._entries.clear()
        self._digests.clear()
        self._users.clear()
        self._unknown.clear()
