"""Access passes (seed 002): bought for a duration, activated by their first use.

`expires_at` is computed (activation + duration), never stored. Activation is one
atomic UPDATE guarded by `activated_at IS NULL`, and concurrent first uses in one
process share a single attempt, so a pass is activated exactly once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from ferryman.auth import errors
from ferryman.auth.cache import Entry
from ferryman.auth.hashing import new_pass_token
from ferryman.auth.identity import Identity
from ferryman.auth.singleflight import SingleFlight
from ferryman.errors import BadRequest
from ferryman.store import credits
from ferryman.store import passes as rows
from ferryman.store.passes import AccessPass

if TYPE_CHECKING:
    from ferryman.auth.services import Auth

log = structlog.get_logger("ferryman.passes")

WHAT = "access token"


class AccessPasses:
    def __init__(self, auth: Auth) -> None:
        self._auth = auth
        self._loads: SingleFlight[Entry | None] = SingleFlight()
        self._activations: SingleFlight[Entry] = SingleFlight()
        self._digests: dict[str, str] = {}  # pass id -> its token's digest

    async def purchase(self, user_id: str, duration_hours: int) -> tuple[AccessPass, str]:
        """A new pass; the token is returned here and never again."""
        allowed = self._auth.settings.access_pass_durations
        if duration_hours not in allowed:
            raise BadRequest(
                f"duration_hours must be one of {', '.join(map(str, allowed))}",
                code="invalid_duration",
            )
        raw = new_pass_token()
        digest = self._auth.hash.digest(raw)
        now = self._auth.clock.now()
        record = rows.new(
            user_id=user_id, token_hash=digest, duration_hours=duration_hours, now=now
        )
        price = self._auth.settings.pass_price_micros(duration_hours)
        _, balance = await credits.buy_pass(self._auth.db, record, price, now)
        await self._auth.invalidations.digest(digest)
        log.info(
            "access_pass_created",
            pass_id=record.id,
            user_id=user_id,
            hours=duration_hours,
            price_micros=price,
            balance_micros=balance,
        )
        return record, raw

    async def refund(self, pass_id: str) -> tuple[int, int]:
        """Refund a never-activated pass (revoking it); (amount, new balance) in micros."""
        movement, balance = await credits.refund_pass(
            self._auth.db, pass_id, self._auth.clock.now()
        )
        await self._auth.invalidations.credential(pass_id)
        log.info("access_pass_refunded", pass_id=pass_id, amount_micros=movement.amount_micros)
        return movement.amount_micros, balance

    async def revoke(self, pass_id: str) -> AccessPass | None:
        record = await rows.revoke(self._auth.db, pass_id, self._auth.clock.now())
        await self._auth.invalidations.credential(pass_id)
        if record is not None:
            log.info("access_pass_revoked", pass_id=pass_id)
        return record

    async def _load(self, digest: str) -> Entry | None:
        auth = self._auth
        record = await rows.by_hash(auth.db, digest)
        state = None if record is None else await auth.load_state(record.user_id)
        if record is None or state is None:
            auth.cache.remember_unknown(digest)
            return None
        entry = Entry(
            kind="access_pass",
            credential_id=record.id,
            user=state,
            loaded_at=auth.clock.monotonic(),
            revoked=record.revoked_at is not None or not record.is_active,
            activated_at=record.activated_at,
            duration_hours=record.duration_hours,
            expires_at=record.expires_at,
        )
        auth.cache.put(digest, entry)
        return entry

    async def _activate(self, entry: Entry) -> Entry:
        record, activated_here = await rows.activate(
            self._auth.db, entry.credential_id, self._auth.clock.now()
        )
        if record is None:  # deleted meanwhile
            raise errors.invalid(WHAT)
        entry.activated_at = record.activated_at
        entry.expires_at = record.expires_at
        entry.revoked = record.revoked_at is not None or not record.is_active
        if activated_here:
            log.info(
                "access_pass_activated",
                pass_id=record.id,
                user_id=record.user_id,
                expires_at=str(record.expires_at),
            )
        return entry

    async def verify(self, raw: str) -> Identity:
        """The identity behind a presented pass, activating it on its first use."""
        return await self._verify_digest(self._auth.hash.digest(raw))

    async def verify_id(self, pass_id: str) -> Identity:
        """The identity behind the pass a browser's cookie names (see `pass_cookie`):
        checked exactly as the pass itself would be, through the same cache."""
        digest = self._digests.get(pass_id)
        if digest is None:
            record = await rows.get(self._auth.db, pass_id)
            if record is None:
                raise errors.invalid(WHAT)
            if len(self._digests) >= 100_000:
                self._digests.clear()
            # A pass's token never changes: its digest may be remembered for good.
            digest = self._digests[pass_id] = record.token_hash
        return await self._verify_digest(digest)

    async def _verify_digest(self, digest: str) -> Identity:
        auth = self._auth
        entry = auth.cache.get(digest)
        if entry is None:
            if auth.cache.is_unknown(digest):
                raise errors.invalid(WHAT)
            entry = await self._loads.do(digest, lambda: self._load(digest))
            if entry is None:
                raise errors.invalid(WHAT)
        if entry.revoked:
            raise errors.revoked(WHAT)
        if entry.activated_at is None:
            current = entry
            entry = await self._activations.do(entry.credential_id, lambda: self._activate(current))
            if entry.revoked:
                raise errors.revoked(WHAT)
        expires_at = entry.expires_at
        assert expires_at is not None  # set with activated_at
        if auth.clock.now() >= expires_at:
            raise errors.expired(WHAT)
        if not entry.user.is_active:
            raise errors.disabled()
        return entry.identity()
