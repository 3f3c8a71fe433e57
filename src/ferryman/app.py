"""The ASGI application: one object owns every resource, one function builds the stack."""

from __future__ import annotations

import gc
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import structlog

from ferryman import __version__
from ferryman.api.mount import ManagementMount
from ferryman.auth import jwt_tokens
from ferryman.auth.services import Auth
from ferryman.auth.users import Registration
from ferryman.clock import Clock
from ferryman.config.gateway import Gateway
from ferryman.config.loading import load_gateway, load_settings
from ferryman.config.secrets import Secrets, ensure_secrets
from ferryman.config.settings import Settings
from ferryman.errors import ConfigError, FerrymanError
from ferryman.limits.alerts import Alerts
from ferryman.limits.backends import RedisBackend
from ferryman.limits.budgets import Budgets
from ferryman.limits.fleet_spend import FleetSpend
from ferryman.limits.limiter import RENEW, Limits
from ferryman.metering.pricing import PriceTable
from ferryman.metering.writer import UsageWriter
from ferryman.observability.health import Readiness
from ferryman.observability.logging import configure_logging
from ferryman.observability.metrics import create_metrics
from ferryman.observability.recorder import RequestRecorder
from ferryman.observability.responses import Responder
from ferryman.proxy.dispatcher import Proxy
from ferryman.proxy.headers import TrustedProxies
from ferryman.proxy.routing import RouteTable
from ferryman.proxy.streaming import Forwarder
from ferryman.proxy.upstream import UpstreamClient
from ferryman.proxy.watchdog import Watchdog
from ferryman.proxy.websocket import WebSocketRelay
from ferryman.stack import build_stack
from ferryman.store import meta, migrate
from ferryman.store import usage as usage_rows
from ferryman.store.breaker import Breaker
from ferryman.store.engine import Database, create_database
from ferryman.store.redis import claim, connect_redis
from ferryman.store.redis import ping as redis_ping
from ferryman.tasks import Leader, Periodic
from ferryman.types import ASGIApp, Receive, Scope, Send
from ferryman.upstreams.breaker_fleet import FleetBreakers, install_breakers
from ferryman.upstreams.crypto import MasterKeys
from ferryman.upstreams.keyring import Keyring
from ferryman.upstreams.monitor import pool_jobs
from ferryman.upstreams.service import UpstreamKeys

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from ferryman.relay.mount import RelayMount

log = structlog.get_logger("ferryman")


class Ferryman:
    """The gateway: built from settings and a gateway file, started by ASGI lifespan.

    Nothing connects at construction; `startup` opens the database, Redis and the
    upstream pools, and `shutdown` closes them in reverse.
    """

    def __init__(self, settings: Settings, gateway: Gateway, clock: Clock | None = None) -> None:
        self.settings = settings
        self.gateway = gateway
        self.clock = clock or Clock()
        self.metrics = create_metrics()
        self.recorder = RequestRecorder(self.metrics, interval=settings.log_flush_interval)
        self.responder = Responder(gateway.security)
        self.readiness = Readiness()
        self.trusted = TrustedProxies(settings.trusted_proxies)
        self.table = RouteTable.from_gateway(gateway)
        self.upstreams = {
            name: UpstreamClient(name, spec) for name, spec in gateway.upstreams.items()
        }
        self.secrets: Secrets | None = None
        self.database: Database | None = None
        self.redis: Redis | None = None
        self.breaker: Breaker | None = None
        self.limiter_backend = "memory"
        """Where rate limits are counted, `limiter.backend` with `auto` decided."""
        self.auth: Auth | None = None
        self.keyring: Keyring | None = None
        self.fleet_breakers: FleetBreakers | None = None
        self.usage: UsageWriter | None = None
        self.budgets: Budgets | None = None
        self.alerts: Alerts | None = None
        self.upstream_keys: UpstreamKeys | None = None
        self.tasks: list[Periodic] = []
        self.watchdog = Watchdog()
        self.forwarder = Forwarder(self.upstreams, self.metrics, self.trusted, self.watchdog)
        websockets = WebSocketRelay(self.upstreams, self.metrics, self.trusted)
        self.proxy = Proxy(self.table, self.forwarder, self.responder, websockets)
        self.limits = Limits(gateway.limiter, self.clock, self.metrics)
        self.proxy.install_limits(self.limits)
        self.mount: ManagementMount | None = None
        self.relay_mount: RelayMount | None = None
        self.observe = build_stack(self)
        self._stack: ASGIApp = self.observe

    async def startup(self) -> None:
        console = self.settings.console_path
        if self.settings.console_enabled and (hidden := self.gateway.shadowed_by(console)):
            raise ConfigError(
                f"{', '.join(hidden)}: inside the console's path {console} "
                "(FERRYMAN_CONSOLE_PATH); move them, or the console, or turn it off "
                "(FERRYMAN_CONSOLE_ENABLED=false)"
            )
        self.secrets = ensure_secrets(self.settings)
        self.database = create_database(self.settings)
        await migrate.prepare(self.database, self.settings.migrate_on_start)
        self.readiness.add("database", self.database.ping)
        if self.settings.redis_url:
            redis = connect_redis(self.settings.redis_url)
            self.redis = redis
            # One breaker for every caller that waits on Redis while serving requests.
            breaker = Breaker(self.gateway.limiter.breaker, self.clock, self.metrics)
            self.breaker = breaker
            # Readiness asks Redis itself (not through the breaker) and shows the breaker.
            self.readiness.add(
                "redis", lambda: redis_ping(redis), info=lambda: {"breaker": breaker.report()}
            )
        await self._start_identity(self.database)
        await self._start_breakers()
        for upstream in self.upstreams.values():
            await upstream.start()
        self.watchdog.start()
        await self._start_key_pool(self.database)
        self._start_limits()
        self._start_metering(self.database)
        if self.relay_mount is not None:
            from ferryman.relay.mount import start_relays

            for job in start_relays(self, self.relay_mount):
                job.start()
                self.tasks.append(job)
        self.readiness.add("jobs", self._jobs_report)
        # Everything built so far lives as long as the process. Moving it out of the
        # collector's reach keeps a full collection from walking ~100k objects (tens of
        # milliseconds with the event loop stopped) while requests wait.
        gc.collect()
        gc.freeze()
        log.info(
            "ferryman_started",
            version=__version__,
            database=self.database.display_url,
            installation=await meta.installation_id(self.database),
            routes=len(self.table.routes),
            upstreams=sorted(self.upstreams),
            limiter=self.limiter_backend,
        )

    async def _start_identity(self, database: Database) -> None:
        assert self.secrets is not None
        settings = self.settings
        ttl = settings.credential_cache_ttl
        if settings.workers > 1 and self.redis is None and ttl > 1.0:
            # No channel to tell other workers of a revocation: keep staleness to 1 s.
            ttl = 1.0
            log.info("credential_cache_ttl_capped", ttl=ttl, reason="workers without Redis")
        gateway = self.gateway
        registration = Registration(
            open=gateway.registration_open(settings.registration_enabled),
            permissions=gateway.accounts.permissions,
        )
        auth = Auth(
            database, settings, self.secrets, self.clock, cache_ttl=ttl, registration=registration
        )
        self.auth = auth
        if self.redis is not None:
            auth.share_throttle(self.redis, settings.redis_prefix, self.breaker)
            try:
                await auth.invalidations.connect(self.redis, settings.redis_prefix, self.breaker)
            except Exception as exc:
                log.warning("invalidations_unavailable", error=str(exc))
        if settings.admin_username and settings.admin_password:
            await auth.users.ensure_admin(
                settings.admin_username, settings.admin_password.get_secret_value()
            )
        self.proxy.install_auth(auth)
        if any("jwt" in route.auth for route in self.gateway.routes):
            jwt_tokens.load()
        touches = Periodic(
            "credential_last_used",
            30.0,
            lambda: auth.touches.flush(database),
            metrics=self.metrics,
            final=True,
        )
        touches.start()
        self.tasks.append(touches)

    async def _start_key_pool(self, database: Database) -> None:
        assert self.secrets is not None
        master_keys = MasterKeys.parse(self.secrets.encryption_keys.get_secret_value())
        keyring = Keyring(database, master_keys, self.clock, self.metrics, self.upstreams)
        await keyring.load(strict=True)
        self.keyring = keyring
        if self.redis is not None:
            try:
                await keyring.connect(self.redis, self.settings.redis_prefix, self.breaker)
            except Exception as exc:
                log.warning("key_pool_broadcast_unavailable", error=str(exc))
        service = UpstreamKeys(
            database,
            keyring,
            self.upstreams,
            self.clock,
            per_user_limit=self.settings.max_upstream_keys_per_user,
        )
        self.upstream_keys = service
        self.forwarder.install_pools(keyring.pools)
        leader = self._leader() if self.redis is not None else None
        for job in pool_jobs(service, self.settings, self.metrics, leader):
            job.start()
            self.tasks.append(job)

    def _start_metering(self, database: Database) -> None:
        settings = self.settings
        writer = UsageWriter(
            database,
            PriceTable(settings.price_table),
            self.metrics,
            interval=settings.usage_flush_interval,
            batch=settings.usage_batch_size,
            capacity=settings.usage_queue_size,
        )
        writer.start()
        self.usage = writer
        self.observe.usage = writer
        clock = self.clock
        spec = self.gateway.budgets
        alerts = Alerts(database, self.metrics, spec.webhook)
        alerts.start()
        self.alerts = alerts
        fleet = None
        if self.redis is not None and self.breaker is not None:
            timeout = max(self.gateway.limiter.timeout, 0.05)
            fleet = FleetSpend(self.redis, settings.redis_prefix, self.breaker, timeout)
            writer.eager = True
        budgets = Budgets(database, writer, spec, clock, self.metrics, alerts, fleet)
        self.budgets = budgets
        self.proxy.install_budgets(budgets)
        refresh = Periodic("budget_refresh", spec.refresh, budgets.refresh, metrics=self.metrics)
        refresh.start()
        self.tasks.append(refresh)

        async def prune() -> None:
            before = clock.now() - timedelta(days=settings.usage_retention_days)
            removed = await usage_rows.prune(database, before)
            if removed:
                log.info("usage_pruned", records=removed, before=before.isoformat())

        leader = self._leader() if self.redis is not None else None
        job = Periodic(
            "usage_retention",
            86_400.0,
            prune,
            metrics=self.metrics,
            leader=leader,
            first_delay=60.0,
        )
        job.start()
        self.tasks.append(job)

    def _start_limits(self) -> None:
        limits = self.limits
        backend = self.gateway.limiter.backend
        if backend == "auto":
            backend = "memory" if self.redis is None else "redis"
        if backend == "redis":
            if self.redis is None:
                raise ConfigError("limiter.backend is redis but FERRYMAN_REDIS_URL is not set")
            limits.redis = RedisBackend(self.redis, self.settings.redis_prefix + "limits:")
            assert self.breaker is not None
            limits.breaker = self.breaker
            leases = Periodic("parallel_leases", RENEW, limits.renew, metrics=self.metrics)
            leases.start()
            self.tasks.append(leases)
        self.limiter_backend = backend

        async def sweep() -> None:
            limits.memory.sweep(self.clock.time())

        job = Periodic("limiter_sweep", 60.0, sweep, metrics=self.metrics)
        job.start()
        self.tasks.append(job)

    def _leader(self) -> Leader:
        redis, prefix = self.redis, self.settings.redis_prefix
        assert redis is not None

        async def turn(job: str, seconds: float) -> bool:
            return await claim(redis, f"{prefix}job:{job}", seconds)

        return turn

    async def _start_breakers(self) -> None:
        breakers = install_breakers(self.upstreams, self.clock, self.metrics)
        if not breakers:
            return
        fleet = self.fleet_breakers = FleetBreakers(breakers)
        self.readiness.add("upstreams", fleet.checked)
        if self.redis is not None and self.breaker is not None:
            try:
                await fleet.connect(self.redis, self.settings.redis_prefix, self.breaker)
            except Exception as exc:
                log.warning("upstream_breakers_not_shared", error=str(exc))

    async def _jobs_report(self) -> dict[str, Any]:
        return {"jobs": {task.name: task.status() for task in self.tasks}}

    async def shutdown(self) -> None:
        self.observe.usage = None
        if self.usage is not None:
            try:
                await self.usage.stop()  # every queued record is written
            except Exception:
                log.exception("usage_final_write_failed", lost=self.usage.queued)
            self.usage = None
        if self.budgets is not None and self.budgets.fleet is not None:
            await self.budgets.fleet.send()  # the last requests' cost, to the fleet
        for task in self.tasks:
            await task.stop()
        self.tasks.clear()
        if self.alerts is not None:
            await self.alerts.stop()
            self.alerts = None
        if self.keyring is not None:
            await self.keyring.close()
        if self.fleet_breakers is not None:
            await self.fleet_breakers.close()
        if self.auth is not None:
            await self.auth.invalidations.close()
        await self.watchdog.stop()
        for upstream in self.upstreams.values():
            await upstream.close()
        if self.redis is not None:
            await self.redis.aclose()
            self.redis = None
        if self.database is not None:
            await self.database.dispose()
            self.database = None
        self.metrics.close()
        self.recorder.flush()
        log.info("ferryman_stopped")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        await self._stack(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        await receive()  # lifespan.startup
        try:
            await self.startup()
        except FerrymanError as exc:
            log.error("startup_failed", error=str(exc))
            await self.shutdown()
            await send({"type": "lifespan.startup.failed", "message": str(exc)})
            return
        except Exception as exc:
            log.exception("startup_failed", error=f"{type(exc).__name__}: {exc}")
            await self.shutdown()
            await send({"type": "lifespan.startup.failed", "message": str(exc)})
            return
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
        try:
            await self.shutdown()
        finally:
            await send({"type": "lifespan.shutdown.complete"})


def create_app() -> Ferryman:
    """The factory `ferryman serve` hands to uvicorn: everything from the environment."""
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    # Each worker process sets up the protocol its server runs (class settings do not
    # cross the spawn of a worker).
    from ferryman.protocol import GuardedProtocol

    GuardedProtocol.configure(settings)
    return Ferryman(settings, load_gateway(settings))
