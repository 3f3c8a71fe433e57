"""Client API keys (`fm_…`): created once, verified by keyed hash through the cache."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING

import structlog

from ferryman.auth import errors
from ferryman.auth.cache import Entry
from ferryman.auth.hashing import key_display, new_api_key
from ferryman.auth.identity import Identity
from ferryman.auth.singleflight import SingleFlight
from ferryman.errors import BadRequest
from ferryman.store import api_keys as rows
from ferryman.store.api_keys import ApiKey

if TYPE_CHECKING:
    from ferryman.auth.services import Auth

log = structlog.get_logger("ferryman.api_keys")

#: What a key may be allowed to do.
SCOPES = ("proxy", "stats:read")
WHAT = "API key"


def known_scopes(scopes: tuple[str, ...]) -> tuple[str, ...]:
    """The scopes without repeats, in the order given; 400 `invalid_scope` for one we do
    not know."""
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        raise BadRequest(
            f"unknown scope {unknown[0]!r} (known: {', '.join(SCOPES)})", code="invalid_scope"
        )
    return tuple(dict.fromkeys(scopes))


class ApiKeys:
    def __init__(self, auth: Auth) -> None:
        self._auth = auth
        self._loads: SingleFlight[Entry | None] = SingleFlight()

    async def create(
        self,
        user_id: str,
        name: str,
        scopes: tuple[str, ...] = ("proxy",),
        expires_at: datetime | None = None,
    ) -> tuple[ApiKey, str]:
        """A new key for `user_id`; the plaintext is returned here and never again."""
        scopes = known_scopes(scopes)
        now = self._auth.clock.now()
        if expires_at is not None and expires_at <= now:
            raise BadRequest("expires_at must be in the future", code="invalid_expiry")
        raw = new_api_key()
        prefix, last4 = key_display(raw)
        digest = self._auth.hash.digest(raw)
        key = await rows.create(
            self._auth.db,
            limit=self._auth.settings.max_keys_per_user,
            user_id=user_id,
            name=name,
            key_hash=digest,
            prefix=prefix,
            last4=last4,
            scopes=scopes,
            expires_at=expires_at,
            now=now,
        )
        await self._auth.invalidations.digest(digest)
        log.info("api_key_created", key_id=key.id, user_id=user_id, scopes=list(key.scopes))
        return key, raw

    async def update(
        self,
        key_id: str,
        *,
        name: str | None = None,
        active: bool | None = None,
        scopes: tuple[str, ...] | None = None,
        caps: Mapping[str, object] | None = None,
    ) -> ApiKey | None:
        """Change a key; `caps` are allowance columns to set (`rpm`, `tpm`,
        `budget_amount`, `budget_period`; None removes a cap of its own)."""
        values: dict[str, object] = dict(caps or {})
        if name is not None:
            values["name"] = name
        if scopes is not None:
            values["scopes"] = known_scopes(scopes)
        if active is not None:
            values["is_active"] = active
        if values:
            key = await rows.change(self._auth.db, key_id, **values)
        else:
            key = await rows.get(self._auth.db, key_id)
        await self._auth.invalidations.credential(key_id)
        return key

    async def revoke(self, key_id: str) -> ApiKey | None:
        key = await rows.revoke(self._auth.db, key_id, self._auth.clock.now())
        await self._auth.invalidations.credential(key_id)
        if key is not None:
            log.info("api_key_revoked", key_id=key_id)
        return key

    async def _load(self, digest: str) -> Entry | None:
        auth = self._auth
        key = await rows.by_hash(auth.db, digest)
        state = None if key is None else await auth.load_state(key.user_id)
        if key is None or state is None:
            auth.cache.remember_unknown(digest)
            return None
        entry = Entry(
            kind="api_key",
            credential_id=key.id,
            user=state,
            loaded_at=auth.clock.monotonic(),
            scopes=frozenset(key.scopes),
            expires_at=key.expires_at,
            expires_ts=key.expires_at.timestamp() if key.expires_at else None,
            revoked=key.revoked_at is not None or not key.is_active,
            allowance=key.allowance,
        )
        auth.cache.put(digest, entry)
        return entry

    async def verify(self, raw: str) -> Identity:
        """The identity behind a presented key, or 401 saying what is wrong with it."""
        auth = self._auth
        digest = auth.hash.digest(raw)
        entry = auth.cache.get(digest)
        if entry is None:
            if auth.cache.is_unknown(digest):
                raise errors.invalid(WHAT)
            entry = await self._loads.do(digest, lambda: self._load(digest))
            if entry is None:
                raise errors.invalid(WHAT)
        if entry.revoked:
            raise errors.revoked(WHAT)
        now = auth.clock.time()
        if entry.expires_ts is not None and now >= entry.expires_ts:
            raise errors.expired(WHAT)
        user = entry.user
        if not user.is_active:
            raise errors.disabled()
        auth.touches.key(entry.credential_id, now)
        return entry.identity()
