"""The management API's own limits (seed 003: `AUTH_RATE_LIMIT`, `API_RATE_LIMIT`).

Registration and login attempts are counted per client IP, successful or not, so a
password guesser or a mass registration runs into them before the failed-login throttle
has anything to count; stats API calls are counted per credential, so a script cannot
scrape the usage history in a loop.

They are counted by the gateway's own limiter, like a route's tiers: the same backend
(Redis in a fleet, so every instance shares the count), the same `on_error`, the same
`429 rate_limited` with `Retry-After`, and the same `RateLimit-*` headers on admitted
and refused answers.
"""

from __future__ import annotations

from fastapi import Request

from ferryman.api.deps import client_ip
from ferryman.auth.identity import Identity
from ferryman.config.limits import LimitKey
from ferryman.config.settings import Settings
from ferryman.limits.limiter import Caller, CompiledTier, Limits, RouteLimits
from ferryman.limits.rates import parse_rate
from ferryman.observability.context import SCOPE_KEY, RequestContext

# Route names cannot hold "@", so these counters never share a key with a route's.
AUTH = "@auth"
STATS = "@stats"


def _compile(name: str, rate: str | None, by: LimitKey, limits: Limits) -> RouteLimits | None:
    if rate is None:
        return None
    tier = CompiledTier.of(name, 0, (by,), "gcra", parse_rate(rate))
    return RouteLimits(None, name, limits, [tier])


class ApiLimits:
    """The compiled limits of the login/registration and stats endpoints (None: off)."""

    def __init__(self, settings: Settings, limits: Limits) -> None:
        self.auth = _compile(AUTH, settings.auth_rate_limit, "ip", limits)
        self.stats = _compile(STATS, settings.stats_rate_limit, "credential", limits)


async def _admit(request: Request, limits: RouteLimits, caller: Caller) -> None:
    # A refusal raises TooManyRequests carrying its own headers; an admission's headers
    # ride on the context, which ManagementMount adds to whatever answer follows (a
    # streamed CSV or an error included).
    headers = await limits.check(caller)
    ctx: RequestContext | None = request.scope.get(SCOPE_KEY)
    if ctx is not None:
        ctx.response_headers = headers


def _configured(request: Request) -> ApiLimits | None:
    found: ApiLimits | None = getattr(request.app.state, "api_limits", None)
    return found


async def limit_auth(request: Request) -> None:
    """FastAPI dependency: count a registration or login attempt against its IP."""
    configured = _configured(request)
    if configured is None or configured.auth is None:
        return
    await _admit(request, configured.auth, Caller(ip=client_ip(request), route=AUTH))


async def limit_stats(request: Request, reader: Identity) -> None:
    """Count a stats API call against the credential that made it (after it was verified:
    an anonymous call is refused before it can spend anyone's allowance)."""
    configured = _configured(request)
    if configured is None or configured.stats is None:
        return
    caller = Caller(ip=client_ip(request), route=STATS, credential=reader.credential_id)
    await _admit(request, configured.stats, caller)
