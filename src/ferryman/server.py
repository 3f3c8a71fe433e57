"""Running the gateway under uvicorn, with one process or several.

Before any worker starts, this process checks the configuration, creates the secrets,
migrates the database and opens every stored upstream key, so a mistake stops start-up
once with a clear message instead of crash-looping every worker. A worker that still
fails to start makes the command exit non-zero.
"""

from __future__ import annotations

import asyncio
import importlib.util
import math
import multiprocessing
import os
import shutil
import signal
import socket
from concurrent.futures import ProcessPoolExecutor

import structlog
import uvicorn

from ferryman.clock import Clock
from ferryman.config.gateway import Gateway
from ferryman.config.loading import load_gateway
from ferryman.config.secrets import Secrets, ensure_data_dir, ensure_secrets
from ferryman.config.settings import Settings
from ferryman.config.websocket import DEFAULT_MAX_MESSAGE
from ferryman.observability.metrics import MULTIPROC_ENV, LocalMetrics
from ferryman.protocol import GuardedProtocol
from ferryman.ready import Ready, announce, facts
from ferryman.store import migrate
from ferryman.store.engine import create_database
from ferryman.store.progress import Progress, progress
from ferryman.upstreams.crypto import MasterKeys
from ferryman.upstreams.keyring import Keyring

#: uvicorn's exit status for a server that could not start.
STARTUP_FAILURE = 3

log = structlog.get_logger("ferryman.server")


async def _prepare(settings: Settings, secrets: Secrets) -> tuple[Progress, str]:
    """Migrate, and open every stored upstream key (a wrong master key stops here);
    how far the installation is set up, and the database's URL fit to show."""
    database = create_database(settings)
    try:
        await migrate.prepare(database, settings.migrate_on_start)
        master_keys = MasterKeys.parse(secrets.encryption_keys.get_secret_value())
        await Keyring(database, master_keys, Clock(), LocalMetrics(), {}).load(strict=True)
        return await progress(database), database.display_url
    finally:
        await database.dispose()


def _prepare_in_child(settings: Settings, secrets: Secrets) -> tuple[Progress, str]:
    return asyncio.run(_prepare(settings, secrets))


def _prepare_apart(settings: Settings, secrets: Secrets) -> tuple[Progress, str]:
    """`_prepare` in a forked child: migrating loads Alembic and Mako (11 MB) that the
    serving process, with one worker this very process, then never carries."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as child:
        return child.submit(_prepare_in_child, settings, secrets).result()


def _metrics_dir(settings: Settings) -> str:
    """A fresh directory where the workers' metric samples meet."""
    path = ensure_data_dir(settings.data_dir) / "metrics"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(mode=0o700)
    return str(path)


def uvicorn_config(settings: Settings, gateway: Gateway | None = None) -> uvicorn.Config:
    routes = gateway.routes if gateway is not None else ()
    # The server reads a whole message before the app sees it: its limit is the largest
    # any route allows (each route then holds its own), plus the frame's own bytes.
    largest = max((r.websocket.max_message for r in routes), default=DEFAULT_MAX_MESSAGE)
    return uvicorn.Config(
        "ferryman.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        # The hardened protocol needs httptools (uvicorn[standard]); h11 runs unguarded.
        http=GuardedProtocol if importlib.util.find_spec("httptools") else "h11",
        lifespan="on",
        access_log=False,
        server_header=False,
        date_header=False,
        proxy_headers=False,  # Ferryman decides which X-Forwarded-For to believe
        timeout_keep_alive=settings.keepalive_timeout,
        ws_max_size=largest + 64,
        ws_per_message_deflate=False,  # relayed as they come: no inflating and deflating
        ws="websockets-sansio",  # fewer tasks per connection: ~20% more messages a second
        timeout_graceful_shutdown=math.ceil(settings.shutdown_grace),
        log_config=None,
    )


class ReadyServer(uvicorn.Server):
    """uvicorn's server, saying where it listens and what is next once it has bound."""

    def __init__(self, config: uvicorn.Config, ready: Ready) -> None:
        super().__init__(config)
        self.ready = ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and self.servers and self.servers[0].sockets:
            announce(self.ready, self.servers[0].sockets[0])


def _absorb(signum: int, frame: object) -> None:
    log.debug("signal_absorbed", signal=signum)


def serve(settings: Settings) -> None:
    """Check everything, then serve until SIGTERM/SIGINT (in-flight requests drain)."""
    gateway = load_gateway(settings)
    registration = gateway.registration_open(settings.registration_enabled)
    for warning in gateway.warnings(registration_open=registration):
        log.warning("config_warning", detail=warning)
    secrets = ensure_secrets(settings)
    done, database = _prepare_apart(settings, secrets)
    ready = facts(settings, gateway, done, database, bool(secrets.generated))
    # The workers find the schema current; they need not race to migrate it.
    os.environ["FERRYMAN_MIGRATE_ON_START"] = "false"
    if settings.workers > 1:
        os.environ[MULTIPROC_ENV] = _metrics_dir(settings)
    config = uvicorn_config(settings, gateway)
    # uvicorn re-raises the signal that stopped it once it has drained; a stop asked for
    # is a clean exit, so that second delivery is absorbed here instead of killing us.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _absorb)
    if settings.workers > 1:
        from uvicorn.supervisors import Multiprocess

        sock = config.bind_socket()
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            # Accepted sockets inherit it: no response waits on Nagle's algorithm.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        announce(ready, sock)
        supervisor = Multiprocess(config, sockets=[sock])
        supervisor.run()
        if any(p.exitcode == STARTUP_FAILURE for p in supervisor.processes):
            raise SystemExit(STARTUP_FAILURE)  # a worker could not start: not a clean stop
    else:
        server = ReadyServer(config, ready)
        server.run()
        if not server.started:
            raise SystemExit(STARTUP_FAILURE)
