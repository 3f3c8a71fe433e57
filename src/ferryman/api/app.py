"""The management API application (mounted beside the proxy by `api/mount.py`)."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from ferryman import __version__
from ferryman.api import (
    admin_routes,
    auth_routes,
    credits_routes,
    errors,
    keys_routes,
    passes_routes,
    provider_stats_routes,
    stats_routes,
    upstream_keys_routes,
    users_routes,
)
from ferryman.api.docs import install_docs
from ferryman.api.openapi import ApiFacts, install_openapi

API_PREFIX = "/api/v1"


def create_management_app(
    docs: bool, facts: ApiFacts | None = None, console: str | None = None
) -> FastAPI:
    """The API; with `console` (its path), the web console's pages beside it."""
    app = FastAPI(
        title="Ferryman management API",
        version=__version__,
        docs_url=None,  # FastAPI's own page loads Swagger UI from a CDN; see api/docs.py
        redoc_url=None,
        openapi_url="/openapi.json" if docs else None,
    )
    if docs:
        install_docs(app, "/openapi.json")
    errors.install(app)
    api = APIRouter(prefix=API_PREFIX)
    for module in (
        auth_routes,
        users_routes,
        keys_routes,
        passes_routes,
        admin_routes,
        upstream_keys_routes,
        credits_routes,
        stats_routes,
        provider_stats_routes,
    ):
        api.include_router(module.router)
    app.include_router(api)
    if console is not None:
        from ferryman.console.render import preload
        from ferryman.console.site import routers

        preload()
        for router in routers(console):
            app.include_router(router)
    if docs:
        install_openapi(app, facts or ApiFacts(pass_durations=(), pooled_upstreams=()))
    return app
