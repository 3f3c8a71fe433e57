"""Builds the management API from a started gateway (called by `api.mount` on the first
request for one of its paths, in a worker thread)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ferryman.auth import jwt_tokens
from ferryman.config.upstreams import PoolCredential
from ferryman.types import ASGIApp

if TYPE_CHECKING:
    from ferryman.app import Ferryman


def build_management(app: Ferryman) -> ASGIApp:
    """The management API, wired to the gateway's services."""
    from ferryman.api.app import create_management_app
    from ferryman.api.limits import ApiLimits
    from ferryman.api.openapi import ApiFacts

    jwt_tokens.load()  # the API signs in with JWTs

    settings, gateway = app.settings, app.gateway
    pooled = (n for n, s in gateway.upstreams.items() if isinstance(s.credential, PoolCredential))
    facts = ApiFacts(pass_durations=settings.access_pass_durations, pooled_upstreams=tuple(pooled))
    console = settings.console_path if settings.console_enabled else None
    management = create_management_app(settings.docs_enabled, facts, console)
    management.state.trusted = app.trusted
    management.state.readiness = app.readiness  # the console's status page
    management.state.upstreams = app.upstreams
    management.state.gateway = gateway  # the console shows the default caps
    management.state.api_limits = ApiLimits(settings, app.limits)
    management.state.auth = app.auth
    management.state.upstream_keys = app.upstream_keys
    if settings.docs_enabled:
        management.openapi()  # see api/openapi.py: built once, here, not per request
    return management
