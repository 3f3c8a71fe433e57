"""Managing upstream keys: add (validated with the provider), list, edit, delete, probe.

Used by the management API and the CLI. The plaintext of a key exists here only while
it is validated and sealed; afterwards it lives in the keyring's memory and nowhere
else, and every view of a key is masked as prefix…last4.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog

from ferryman.clock import Clock
from ferryman.config.upstreams import PoolCredential
from ferryman.errors import BadRequest, NotFound, UpstreamError
from ferryman.proxy.upstream import UpstreamClient
from ferryman.store import upstream_keys as rows
from ferryman.store.engine import Database
from ferryman.store.upstream_keys import UpstreamKeyRow
from ferryman.upstreams.health import KeyState
from ferryman.upstreams.keyring import Keyring, bound_to
from ferryman.upstreams.pool import PoolKey
from ferryman.upstreams.providers import Probe, ProbeFailed, Provider, provider_for

log = structlog.get_logger("ferryman.upstream_keys")

MIN_LENGTH = 8
MAX_LENGTH = 512
#: Probes at once in a background round.
PROBE_CONCURRENCY = 8


def check_secret(secret: str) -> str:
    """A provider key as given (surrounding whitespace removed), or BadRequest."""
    secret = secret.strip()
    if not MIN_LENGTH <= len(secret) <= MAX_LENGTH:
        raise BadRequest(
            f"an upstream key must be {MIN_LENGTH} to {MAX_LENGTH} characters long",
            code="invalid_upstream_key",
        )
    if any(ord(c) < 0x21 or ord(c) > 0x7E for c in secret):
        raise BadRequest(
            "an upstream key must be printable ASCII without spaces",
            code="invalid_upstream_key",
        )
    return secret


def mask_parts(secret: str) -> tuple[str, str]:
    """(prefix, last4) shown for a key: enough to recognise it, too little to use it."""
    prefix_length = 8 if len(secret) >= 32 else 3
    return secret[:prefix_length], secret[-4:] if len(secret) >= 16 else ""


@dataclass(frozen=True)
class KeyView:
    """A stored key with its live health, as the API shows it."""

    row: UpstreamKeyRow
    state: str
    state_until: float | None
    last_error: str | None
    in_flight: int

    @property
    def cooling_until(self) -> datetime | None:
        """When a cooling-down key is usable again (None in any other state)."""
        until = self.state_until if self.state == "cooling_down" else None
        return datetime.fromtimestamp(until, UTC) if until else None


class UpstreamKeys:
    def __init__(
        self,
        db: Database,
        keyring: Keyring,
        upstreams: dict[str, UpstreamClient],
        clock: Clock,
        *,
        per_user_limit: int,
    ) -> None:
        self.db = db
        self.keyring = keyring
        self.upstreams = upstreams
        self.clock = clock
        self.per_user_limit = per_user_limit
        self.providers: dict[str, Provider] = {
            name: provider_for(upstream.spec) for name, upstream in upstreams.items()
        }
        for name, pool in keyring.pools.items():
            if self.providers[name].can_probe:
                pool.confirm = self.still_valid

    def pooled_upstream(self, name: str) -> tuple[UpstreamClient, PoolCredential]:
        upstream = self.upstreams.get(name)
        if upstream is None:
            known = ", ".join(sorted(self.keyring.pools)) or "none"
            raise BadRequest(
                f"unknown upstream {name!r} (upstreams with a key pool: {known})",
                code="unknown_upstream",
            )
        credential = upstream.spec.credential
        if not isinstance(credential, PoolCredential):
            raise BadRequest(
                f"upstream {name!r} does not take its credential from the key pool",
                code="unknown_upstream",
            )
        return upstream, credential

    # -- management ----------------------------------------------------------------

    async def create(
        self,
        *,
        upstream: str,
        name: str,
        secret: str,
        owner_id: str | None,
        weight: int = 1,
        validate: bool = True,
    ) -> UpstreamKeyRow:
        client, credential = self.pooled_upstream(upstream)
        secret = check_secret(secret)
        state = KeyState.HEALTHY
        error: str | None = None
        snapshot = None
        provider = self.providers[upstream]
        if validate and provider.can_probe:
            try:
                probe = await provider.probe(
                    client.session, client.spec.url, (credential.header, credential.prefix + secret)
                )
            except ProbeFailed as exc:
                raise UpstreamError(
                    f"the key could not be validated with {upstream!r} ({exc}); try again, "
                    "or add it with validate: false",
                    code="validation_unavailable",
                ) from None
            if probe.state is KeyState.INVALID:
                raise BadRequest(probe.message, code="invalid_upstream_key")
            if probe.state is KeyState.OUT_OF_CREDIT:
                state, error = probe.state, probe.message
            snapshot = probe.snapshot
        now = self.clock.now()
        key_id = str(uuid.uuid4())
        master_key_id, sealed = self.keyring.master_keys.seal(secret, bound_to(key_id))
        prefix, last4 = mask_parts(secret)
        row = UpstreamKeyRow(
            id=key_id,
            upstream=upstream,
            owner_id=owner_id,
            name=name,
            sealed_key=sealed,
            master_key_id=master_key_id,
            prefix=prefix,
            last4=last4,
            weight=weight,
            enabled=True,
            state=state.value,
            state_until=None,
            last_error=error,
            last_error_at=now if error else None,
            last_checked_at=now if validate and provider.can_probe else None,
            last_used_at=None,
            request_count=0,
            failure_count=0,
            usage=snapshot.usage if snapshot else None,
            credit_limit=snapshot.credit_limit if snapshot else None,
            limit_remaining=snapshot.limit_remaining if snapshot else None,
            credits_total=None,
            credits_used=None,
            synced_at=now if snapshot else None,
            validated_at=now if validate and provider.can_probe else None,
            created_at=now,
            updated_at=now,
        )
        await rows.create(
            self.db,
            row,
            per_user_limit=None if owner_id is None else self.per_user_limit,
            reading=snapshot,
        )
        log.info(
            "upstream_key_added",
            key_id=key_id,
            upstream=upstream,
            key_name=name,
            owner=owner_id or "pool",
            master_key=master_key_id,
        )
        await self.keyring.changed()
        return row

    async def get(self, key_id: str) -> UpstreamKeyRow:
        row = await rows.get(self.db, key_id)
        if row is None:
            raise NotFound("no such upstream key", code="upstream_key_not_found")
        return row

    def view(self, row: UpstreamKeyRow) -> KeyView:
        live = self.keyring.find(row.id)
        if live is None:
            return KeyView(
                row=row,
                state=row.state if row.enabled else "disabled",
                state_until=row.state_until.timestamp() if row.state_until else None,
                last_error=row.last_error,
                in_flight=0,
            )
        state = live.state.value if live.enabled else "disabled"
        return KeyView(
            row=row,
            state=state,
            state_until=live.until or None,
            last_error=live.last_error,
            in_flight=live.in_flight,
        )

    async def listing(self, *, owner_id: str | None, everyone: bool) -> list[KeyView]:
        await self.keyring.flush()  # counts and health as of now
        return [
            self.view(row)
            for row in await rows.listing(self.db, owner_id=owner_id, everyone=everyone)
        ]

    async def change(self, key_id: str, **values: Any) -> UpstreamKeyRow:
        restore = values.pop("reset_health", False)
        now = self.clock.now()
        if restore:
            values.update(state=KeyState.HEALTHY.value, state_until=None)
        row = await rows.change(self.db, key_id, now, **values)
        if row is None:
            raise NotFound("no such upstream key", code="upstream_key_not_found")
        await self.keyring.changed()
        if restore:
            await self.keyring.restore(key_id, "operator")
        return row

    async def delete(self, key_id: str) -> None:
        if not await rows.delete(self.db, key_id):
            raise NotFound("no such upstream key", code="upstream_key_not_found")
        log.info("upstream_key_deleted", key_id=key_id)
        await self.keyring.changed()

    # -- probing -------------------------------------------------------------------

    async def check(self, key_id: str) -> Probe:
        """Probe one key now and apply what the provider says."""
        row = await self.get(key_id)
        key = self.keyring.find(row.id)
        if key is None:
            raise BadRequest(
                f"upstream {row.upstream!r} is not a pooled upstream of this gateway",
                code="unknown_upstream",
            )
        provider = self.providers[row.upstream]
        if not provider.can_probe:
            raise BadRequest(
                f"upstream {row.upstream!r} has no probe (set credential.probe_path)",
                code="no_probe",
            )
        try:
            return await self.probe(key, sync=provider.can_sync, validation=True)
        except ProbeFailed as exc:
            raise UpstreamError(
                f"the key could not be checked with {row.upstream!r} ({exc})",
                code="validation_unavailable",
            ) from None

    async def probe(self, key: PoolKey, *, sync: bool, validation: bool) -> Probe:
        """Ask the provider about `key`, apply the state and store what it said.

        ProbeFailed (the provider could not be asked) changes nothing."""
        client = self.upstreams[key.upstream]
        pool = self.keyring.pools[key.upstream]
        provider = self.providers[key.upstream]
        spec = pool.spec
        header = (spec.header, key.header_value)
        if sync:
            result = await provider.sync(client.session, client.spec.url, header)
        else:
            result = await provider.probe(client.session, client.spec.url, header)
        until = pool.now() + spec.cooldown if result.state is KeyState.COOLING_DOWN else 0.0
        pool.mark(key, result.state, until, result.message, "probe")
        now = self.clock.now()
        await rows.mark_checked(self.db, key.id, now, validated=validation)
        if result.snapshot is not None:
            await rows.store_snapshot(self.db, key.id, result.snapshot, now)
        return result

    async def still_valid(self, key: PoolKey) -> bool:
        """Does the provider still accept `key`? False when it cannot be asked."""
        client = self.upstreams[key.upstream]
        spec = self.keyring.pools[key.upstream].spec
        try:
            probe = await self.providers[key.upstream].probe(
                client.session, client.spec.url, (spec.header, key.header_value)
            )
        except ProbeFailed:
            return False
        return probe.state is not KeyState.INVALID

    async def probe_many(
        self, keys: list[PoolKey], *, sync: bool, validation: bool
    ) -> tuple[int, int]:
        """Probe keys a few at a time; (probed, failed to probe). A key whose probe
        cannot be made is logged and left as it was."""
        gate = asyncio.Semaphore(PROBE_CONCURRENCY)
        failed = 0

        async def one(key: PoolKey) -> None:
            nonlocal failed
            async with gate:
                try:
                    await self.probe(key, sync=sync, validation=validation)
                except ProbeFailed as exc:
                    failed += 1
                    log.warning(
                        "upstream_key_probe_failed",
                        key_id=key.id,
                        upstream=key.upstream,
                        error=str(exc),
                    )

        await asyncio.gather(*(one(key) for key in keys))
        return len(keys) - failed, failed
