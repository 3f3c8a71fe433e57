"""The management API application, and the mount that puts it beside the proxy."""

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
from ferryman.config.routes import MANAGEMENT_PREFIXES
from ferryman.observability.context import SCOPE_KEY, RequestContext
from ferryman.observability.responses import Responder
from ferryman.types import ASGIApp, Message, Receive, Scope, Send

API_PREFIX = "/api/v1"


def create_management_app(docs: bool, facts: ApiFacts | None = None) -> FastAPI:
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
    if docs:
        install_openapi(app, facts or ApiFacts(pass_durations=(), pooled_upstreams=()))
    return app


class ManagementMount:
    """Sends the management API's paths to `management`, everything else to `app`.

    Its responses get the gateway's security headers. It runs before route matching,
    so no gateway route can shadow it (the configuration refuses overlapping routes).
    """

    def __init__(self, app: ASGIApp, management: ASGIApp, responder: Responder) -> None:
        self.app = app
        self.management = management
        self._headers = responder.security_headers
        self._prefixes = MANAGEMENT_PREFIXES

    def owns(self, path: str) -> bool:
        if not (path.startswith("/api/v1/") or path.startswith(("/docs", "/openapi.json"))):
            return False
        return any(path == p or path.startswith(p + "/") for p in self._prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.owns(scope["path"]):
            await self.app(scope, receive, send)
            return
        ctx: RequestContext = scope[SCOPE_KEY]
        ctx.route = "management"
        extra = self._headers
        if scope["path"].startswith("/docs"):
            # The docs page sends a policy of its own (its inline script, by hash).
            extra = tuple(h for h in extra if h[0] != b"content-security-policy")

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                # ctx.response_headers: what the API's own limits admitted (RateLimit-*).
                added = ctx.response_headers or ()
                message["headers"] = [*message.get("headers", ()), *extra, *added]
            await send(message)

        await self.management(scope, receive, secured)
