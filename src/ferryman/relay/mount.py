"""The relays' place in the request path: their paths, before the proxy's routes."""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from ferryman.relay.endpoints import ChatRelay
from ferryman.relay.history import HistoryWriter
from ferryman.relay.sessions import WidgetSessions
from ferryman.store import relay as rows
from ferryman.tasks import Periodic
from ferryman.types import ASGIApp, Receive, Scope, Send

if TYPE_CHECKING:
    from ferryman.app import Ferryman

log = structlog.get_logger("ferryman.relay")

#: Seconds between two writes of queued history messages.
HISTORY_INTERVAL = 0.5


class RelayMount:
    """Sends a relay's paths to it and every other request to `app`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.relays: list[ChatRelay] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            for relay in self.relays:
                if relay.owns(path):
                    await relay(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def start_relays(app: Ferryman, mount: RelayMount) -> list[Periodic]:
    """Build each relay of the gateway file into `mount`; the background jobs it needs."""
    assert app.database is not None and app.auth is not None
    database, clock = app.database, app.clock
    jobs: list[Periodic] = []
    history: HistoryWriter | None = None
    if any(spec.history.enabled for spec in app.gateway.relays):
        history = HistoryWriter(database, clock)
        keep = max(spec.history.keep_days for spec in app.gateway.relays)
        jobs.append(
            Periodic(
                "relay_history", HISTORY_INTERVAL, history.flush, metrics=app.metrics, final=True
            )
        )

        async def prune() -> None:
            from datetime import timedelta

            gone = await rows.prune(database, clock.now() - timedelta(days=keep))
            if gone:
                log.info("relay_sessions_pruned", sessions=gone)

        jobs.append(Periodic("relay_prune", 3600.0, prune, metrics=app.metrics, first_delay=60.0))
    for spec in app.gateway.relays:
        sessions = WidgetSessions(database, app.auth.hash, clock, spec)
        relay = ChatRelay(
            spec,
            app.upstreams[spec.upstream],
            sessions,
            history if spec.history.enabled else None,
            app.limits,
            app.responder,
            clock,
        )
        mount.relays.append(relay)
    return jobs
