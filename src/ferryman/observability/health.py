"""`/health/*` and `/metrics`: the paths the gateway answers itself.

Liveness says the process serves requests. Readiness runs every registered check
(the database, Redis when configured, later the background jobs) concurrently, each
with a time limit, and answers 503 with the details when one fails. A check may carry
facts shown whatever its outcome, which never fail it (Redis: its breaker's state).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ferryman import __version__
from ferryman.errors import MethodNotAllowed
from ferryman.observability.context import SCOPE_KEY, RequestContext
from ferryman.observability.recorder import RequestRecorder
from ferryman.observability.responses import Responder
from ferryman.types import ASGIApp, Receive, Scope, Send

Check = Callable[[], Awaitable[dict[str, Any]]]
#: Facts shown beside a check whatever its outcome (they never fail it).
Info = Callable[[], dict[str, Any]]

CHECK_TIMEOUT = 2.0

LIVE_PATHS = frozenset({"/health/live", "/liveness"})
READY_PATHS = frozenset({"/health/ready", "/readiness", "/health"})
METRICS_PATH = "/metrics"


class Readiness:
    """Named checks; each returns details or raises."""

    def __init__(self) -> None:
        self.checks: dict[str, Check] = {}
        self.info: dict[str, Info] = {}

    def add(self, name: str, check: Check, info: Info | None = None) -> None:
        self.checks[name] = check
        if info is not None:
            self.info[name] = info

    async def _run(self, check: Check, info: Info | None) -> dict[str, Any]:
        started = time.perf_counter()
        result: dict[str, Any]
        try:
            details = await asyncio.wait_for(check(), CHECK_TIMEOUT)
        except TimeoutError:
            result = {"status": "unavailable", "error": f"no answer within {CHECK_TIMEOUT}s"}
        except Exception as exc:
            result = {"status": "unavailable", "error": f"{type(exc).__name__}: {exc}"[:300]}
        else:
            result = {
                "status": "ok",
                "latency_ms": round((time.perf_counter() - started) * 1000, 2),
                **details,
            }
        if info is not None:
            result |= info()  # read after the check: the state it may have changed
        return result

    async def report(self) -> tuple[bool, dict[str, Any]]:
        names = list(self.checks)
        results = await asyncio.gather(
            *(self._run(self.checks[name], self.info.get(name)) for name in names)
        )
        checks = dict(zip(names, results, strict=True))
        ready = all(result["status"] == "ok" for result in results)
        return ready, {
            "status": "ok" if ready else "unavailable",
            "version": __version__,
            "checks": checks,
        }


class SystemRoutes:
    """Answers health and metrics paths; hands every other request to `app`."""

    def __init__(
        self,
        app: ASGIApp,
        responder: Responder,
        readiness: Readiness,
        recorder: RequestRecorder | None,
    ) -> None:
        self.app = app
        self._responder = responder
        self._readiness = readiness
        self._recorder = recorder
        self._paths = LIVE_PATHS | READY_PATHS | ({METRICS_PATH} if recorder else set())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        if scope["type"] != "http" or path not in self._paths:
            await self.app(scope, receive, send)
            return
        ctx: RequestContext = scope[SCOPE_KEY]
        ctx.route = "metrics" if path == METRICS_PATH else "health"
        method = scope["method"]
        if method not in ("GET", "HEAD"):
            error = MethodNotAllowed(f"{method} is not allowed here", allow=("GET", "HEAD"))
            ctx.error = error.code
            await self._responder.error(send, error, ctx.correlation_id)
            return
        head = method == "HEAD"
        if path in LIVE_PATHS:
            await self._responder.json(send, 200, {"status": "ok"}, head=head)
        elif path in READY_PATHS:
            ready, report = await self._readiness.report()
            await self._responder.json(send, 200 if ready else 503, report, head=head)
        else:
            assert self._recorder is not None
            self._recorder.flush()  # every finished request counts in this scrape
            body, content_type = self._recorder.metrics.render()
            await self._responder.send(send, 200, body, content_type=content_type, head=head)
