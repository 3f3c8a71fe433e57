"""The request path of a gateway, layer by layer, as one ASGI app."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ferryman.api.build import build_management
from ferryman.api.mount import ManagementMount
from ferryman.guards.cors import Cors, CorsPolicy
from ferryman.guards.trusted_host import TrustedHost
from ferryman.observability.access import Observe
from ferryman.observability.health import SystemRoutes
from ferryman.types import ASGIApp

if TYPE_CHECKING:
    from ferryman.app import Ferryman


def build_stack(app: Ferryman) -> Observe:
    """The request path, outermost first: observe → trusted host → health/metrics →
    CORS (the management API's) → management API → chat relays → proxy (routes' own
    CORS inside)."""
    security = app.gateway.security
    inner: ASGIApp = app.proxy
    if app.gateway.relays:
        from ferryman.relay.mount import RelayMount

        inner = app.relay_mount = RelayMount(app.proxy)
    settings = app.settings
    console = settings.console_path if settings.console_enabled else None
    mount = ManagementMount(inner, lambda: build_management(app), app.responder, console)
    app.mount = mount
    stack: ASGIApp = mount
    if security.cors is not None:
        # Routes apply their CORS policy in the proxy; this one is the management API's.
        stack = Cors(stack, CorsPolicy(security.cors, app.responder), applies=mount.owns)
    stack = SystemRoutes(
        stack,
        app.responder,
        app.readiness,
        app.recorder if app.settings.metrics_enabled else None,
    )
    if "*" not in security.trusted_hosts:
        stack = TrustedHost(stack, security.trusted_hosts, app.responder)
    return Observe(stack, app.metrics, app.trusted, app.responder, app.recorder)
