"""The mount that puts the management API beside the proxy, loading it on first use.

The management API (FastAPI, its pydantic models, the OpenAPI document) is about 14 MB
of a gateway's resident memory. A data-plane instance that never answers it should not
carry it, so the mount builds it, in a worker thread, when the first request for one of
its paths arrives; until then this module imports nothing of FastAPI.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable

import structlog

from ferryman.config.routes import MANAGEMENT_PREFIXES
from ferryman.observability.context import SCOPE_KEY, RequestContext
from ferryman.observability.responses import Responder
from ferryman.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger("ferryman")

#: Headers the console sets itself instead of the gateway's.
_CONSOLE_OWN = frozenset({b"content-security-policy", b"cache-control"})


class ManagementMount:
    """Sends the management API's paths to the management app, everything else to `app`.

    Its responses get the gateway's security headers. It runs before route matching,
    so no gateway route can shadow it (the configuration refuses overlapping routes).
    """

    def __init__(
        self,
        app: ASGIApp,
        build: Callable[[], ASGIApp],
        responder: Responder,
        console: str | None = None,
    ) -> None:
        self.app = app
        self._console = console
        """The console's path, when it is served (its pages come with the API)."""
        self._build = build
        self._management: ASGIApp | None = None
        self._loading: asyncio.Lock | None = None
        self._headers = responder.security_headers
        self._prefixes = MANAGEMENT_PREFIXES

    @property
    def loaded(self) -> bool:
        return self._management is not None

    def owns(self, path: str) -> bool:
        console = self._console
        if console is not None and (path == console or path.startswith(console + "/")):
            return True
        if not (path.startswith("/api/v1/") or path.startswith(("/docs", "/openapi.json"))):
            return False
        return any(path == p or path.startswith(p + "/") for p in self._prefixes)

    async def load(self) -> ASGIApp:
        """The management app, built once; concurrent first callers wait for one build."""
        if self._management is not None:
            return self._management
        if self._loading is None:
            self._loading = asyncio.Lock()
        async with self._loading:
            if self._management is None:
                started = time.perf_counter()
                # A thread, so that importing and building (~0.3 s) leaves the event loop
                # serving the proxy meanwhile.
                management = await asyncio.to_thread(self._build)
                # As at startup: what lives as long as the process leaves the collector's
                # reach, so a full collection does not walk it with requests waiting.
                gc.collect()
                gc.freeze()
                self._management = management
                elapsed = round((time.perf_counter() - started) * 1000, 1)
                log.info("management_api_loaded", duration_ms=elapsed)
        return self._management

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.owns(scope["path"]):
            await self.app(scope, receive, send)
            return
        ctx: RequestContext = scope[SCOPE_KEY]
        ctx.route = "management"
        management = self._management or await self.load()
        extra = self._headers
        path = scope["path"]
        if path.startswith("/docs"):
            # The docs page sends a policy of its own (its inline script, by hash).
            extra = tuple(h for h in extra if h[0] != b"content-security-policy")
        elif self._console and path.startswith(self._console):
            # The console sends its own policy, and lets its static files be cached.
            extra = tuple(h for h in extra if h[0] not in _CONSOLE_OWN)

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                # ctx.response_headers: what the API's own limits admitted (RateLimit-*).
                added = ctx.response_headers or ()
                message["headers"] = [*message.get("headers", ()), *extra, *added]
            await send(message)

        await management(scope, receive, secured)
