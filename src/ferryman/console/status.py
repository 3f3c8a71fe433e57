"""The console's status page (admins): the readiness checks (database, Redis, background
jobs, upstream breakers) as `/health` runs them, each upstream asked now whether it
answers, and the version."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import aiohttp
from fastapi import APIRouter, Request
from fastapi.responses import Response

from ferryman.console.render import page, redirect
from ferryman.console.session import visitor
from ferryman.errors import Forbidden
from ferryman.proxy.upstream import UpstreamClient

#: Seconds an upstream may take to answer the status page's question.
REACH_TIMEOUT = 3.0


def status_router(path: str) -> APIRouter:
    router = APIRouter(prefix=path + "/status", include_in_schema=False)

    @router.get("")
    async def status(request: Request) -> Response:
        who = await visitor(request)
        if who is None:
            return redirect(request, "/login")
        if not who.identity.is_admin:
            error = Forbidden("this needs an admin account", code="admin_required")
            return page(request, "error.html", 403, error=error, who=who.identity, csrf=who.csrf)
        state = request.app.state
        ready, report = await state.readiness.report()
        upstreams: dict[str, UpstreamClient] = state.upstreams
        reach = await asyncio.gather(*(_reach(u) for u in upstreams.values()))
        jobs = report["checks"].get("jobs", {}).get("jobs", {})
        return page(
            request, "status.html", who=who.identity, csrf=who.csrf, current="status",
            ready=ready, checks=report["checks"], jobs=jobs, reach=reach,
            when=_when,
        )  # fmt: skip

    return router


async def _reach(upstream: UpstreamClient) -> dict[str, Any]:
    """Does the upstream answer at all (any HTTP status counts), and how fast."""
    started = time.perf_counter()
    out: dict[str, Any] = {"name": upstream.name, "origin": upstream.origin}
    try:
        async with asyncio.timeout(REACH_TIMEOUT):
            async with upstream.session.get(upstream.spec.url, allow_redirects=False) as response:
                out["status"] = response.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        out["error"] = "no answer in time" if isinstance(exc, TimeoutError) else type(exc).__name__
    out["ms"] = round((time.perf_counter() - started) * 1000, 1)
    breaker = upstream.breaker
    out["breaker"] = breaker.state if breaker is not None else None
    return out


def _when(stamp: float | None) -> str:
    if stamp is None:
        return "never"
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
