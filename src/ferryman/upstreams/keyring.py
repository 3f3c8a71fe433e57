"""Every upstream's key pool, loaded from the database, kept current, and accounted.

The keyring opens every sealed key once at start-up (a key that does not open stops the
start with a message naming it: a wrong or missing master key is never silent), then
reloads the pools every `refresh` seconds and whenever this process or, over Redis,
another instance changes a key. Health decisions and per-key counts are kept in
memory and written in batches by a background job; in a fleet each decision is also
broadcast so every instance stops using a failed key within a message's time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog

from ferryman.clock import Clock
from ferryman.config.upstreams import PoolCredential
from ferryman.errors import EncryptionError
from ferryman.observability.metrics import Metrics
from ferryman.store import upstream_keys as rows
from ferryman.store.broadcast import Broadcast
from ferryman.store.engine import Database
from ferryman.store.upstream_keys import HealthUpdate, UpstreamKeyRow
from ferryman.upstreams.crypto import MasterKeys
from ferryman.upstreams.health import KeyState
from ferryman.upstreams.pool import KeyPool, PoolKey, StateChange

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from ferryman.proxy.upstream import UpstreamClient
    from ferryman.store.breaker import Breaker

log = structlog.get_logger("ferryman.upstream_keys")


def bound_to(key_id: str) -> str:
    """The associated data that ties a sealed key to its row."""
    return f"ferryman/upstream_key/{key_id}"


def _epoch(value: datetime | None) -> float:
    return 0.0 if value is None else value.timestamp()


def _datetime(value: float) -> datetime | None:
    return None if value <= 0 else datetime.fromtimestamp(value, UTC)


def state_label(key: PoolKey) -> str:
    return key.state.value if key.enabled else "disabled"


class Keyring:
    """The pools of every upstream whose credential is `pool`."""

    def __init__(
        self,
        db: Database,
        master_keys: MasterKeys,
        clock: Clock,
        metrics: Metrics,
        upstreams: dict[str, UpstreamClient],
    ) -> None:
        self.db = db
        self.master_keys = master_keys
        self.clock = clock
        self.metrics = metrics
        self.upstreams = upstreams
        self.pools: dict[str, KeyPool] = {}
        for name, upstream in upstreams.items():
            credential = upstream.spec.credential
            if isinstance(credential, PoolCredential):
                self.pools[name] = KeyPool(name, credential, clock, self._changed)
        self._health: dict[str, HealthUpdate] = {}
        self._fleet = Broadcast("upstream-keys", self._received)
        self._background: set[asyncio.Task[Any]] = set()
        self._reload_lock = asyncio.Lock()

    # -- loading -------------------------------------------------------------------

    def _open(self, row: UpstreamKeyRow) -> str:
        return self.master_keys.open(row.master_key_id, row.sealed_key, bound_to(row.id))

    def _key(self, row: UpstreamKeyRow, secret: str, spec: PoolCredential) -> PoolKey:
        try:
            state = KeyState(row.state)
        except ValueError:
            state = KeyState.HEALTHY
        return PoolKey(
            id=row.id,
            upstream=row.upstream,
            owner_id=row.owner_id,
            name=row.name,
            secret=secret,
            prefix=spec.prefix,
            weight=row.weight,
            enabled=row.enabled,
            state=state,
            until=_epoch(row.state_until),
            last_error=row.last_error,
        )

    async def load(self, *, strict: bool = False) -> None:
        """Read every key and rebuild the pools.

        `strict` (start-up): every key must open, else EncryptionError naming each that
        does not. Otherwise a key that does not open keeps its last opened copy (a
        rotation under a master key this process has not been given yet) and is logged.
        """
        async with self._reload_lock:
            stored = await rows.listing(self.db, everyone=True)
            fresh: dict[str, list[PoolKey]] = {name: [] for name in self.pools}
            broken: list[str] = []
            for row in stored:
                pool = self.pools.get(row.upstream)
                try:
                    secret = self._open(row)
                except EncryptionError as exc:
                    broken.append(f"upstream key {row.id} ({row.upstream}/{row.name}) {exc}")
                    known = pool.keys.get(row.id) if pool is not None else None
                    if known is not None:
                        fresh[row.upstream].append(known)
                    continue
                if pool is not None:
                    fresh[row.upstream].append(self._key(row, secret, pool.spec))
            if broken and strict:
                raise EncryptionError(
                    "stored upstream keys cannot be decrypted; is FERRYMAN_ENCRYPTION_KEYS "
                    "the list they were sealed under?\n  " + "\n  ".join(broken)
                )
            for message in broken:
                log.error("upstream_key_unreadable", detail=message)
            for name, keys in fresh.items():
                self.pools[name].install(keys)
                for key in keys:
                    self.metrics.key_state(name, key.id, key.name, state_label(key))

    def pool(self, upstream: str) -> KeyPool | None:
        return self.pools.get(upstream)

    def find(self, key_id: str) -> PoolKey | None:
        for pool in self.pools.values():
            key = pool.keys.get(key_id)
            if key is not None:
                return key
        return None

    def every_key(self) -> Iterable[PoolKey]:
        for pool in self.pools.values():
            yield from pool.keys.values()

    # -- changes -------------------------------------------------------------------

    async def changed(self) -> None:
        """Keys were added, edited or removed here: reload, and tell the fleet."""
        await self.load()
        await self._fleet.publish({"kind": "reload"})

    async def restore(self, key_id: str, reason: str) -> None:
        key = self.find(key_id)
        if key is not None:
            self.pools[key.upstream].restore(key, reason)

    def _changed(self, change: StateChange) -> None:
        key = change.key
        self._health[key.id] = HealthUpdate(
            key_id=key.id,
            state=change.state.value,
            state_until=_datetime(change.until),
            last_error=change.error,
            at=self.clock.now(),
        )
        self.metrics.key_state(key.upstream, key.id, key.name, state_label(key))
        event = log.info if change.state is KeyState.HEALTHY else log.warning
        event(
            "upstream_key_state",
            upstream=key.upstream,
            key_id=key.id,
            key_name=key.name,
            state=change.state.value,
            reason=change.reason,
            cooling_for=round(change.until - self.clock.time(), 1) if change.until else None,
        )
        if self._fleet.connected:
            self._spawn(
                self._fleet.publish(
                    {
                        "kind": "state",
                        "id": key.id,
                        "state": change.state.value,
                        "until": change.until,
                        "error": change.error,
                    }
                )
            )

    def _received(self, data: dict[str, Any]) -> None:
        if data.get("kind") == "reload":
            self._spawn(self.load())
            return
        if data.get("kind") == "state":
            key = self.find(str(data.get("id")))
            if key is None:
                return
            try:
                state = KeyState(str(data.get("state")))
            except ValueError:
                return
            until = data.get("until")
            error = data.get("error")
            self.pools[key.upstream].apply(
                key,
                state,
                float(until) if isinstance(until, int | float) else 0.0,
                error if isinstance(error, str) else None,
            )
            self.metrics.key_state(key.upstream, key.id, key.name, state_label(key))

    def _spawn(self, job: Any) -> None:
        task = asyncio.get_running_loop().create_task(job)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- accounting ----------------------------------------------------------------

    async def flush(self) -> None:
        """Write health decisions and per-key counts (kept for the next round on error)."""
        health, self._health = self._health, {}
        counts: dict[str, tuple[int, int, datetime | None]] = {}
        taken: list[tuple[PoolKey, int, int]] = []
        for key in self.every_key():
            requests, failures = key.unflushed_requests, key.unflushed_failures
            if requests or failures:
                counts[key.id] = (requests, failures, _datetime(key.last_used))
                taken.append((key, requests, failures))
                key.unflushed_requests = 0
                key.unflushed_failures = 0
        try:
            await rows.record_health(self.db, health.values())
            await rows.add_usage(self.db, counts)
        except Exception:
            for key_id, update in health.items():
                self._health.setdefault(key_id, update)
            for key, requests, failures in taken:
                key.unflushed_requests += requests
                key.unflushed_failures += failures
            raise

    async def connect(self, redis: Redis, prefix: str, breaker: Breaker | None = None) -> None:
        await self._fleet.connect(redis, prefix, breaker)

    async def close(self) -> None:
        await self._fleet.close()
        for task in list(self._background):
            task.cancel()
