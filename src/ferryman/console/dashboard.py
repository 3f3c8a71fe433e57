"""The console's dashboard (its home page): requests, tokens, cost and errors per day
over a chosen range, with the top models, client keys and upstream keys. Read from the
daily aggregates (`store.stats`), never the raw records; whose usage is shown follows
the stats API's rule (`manage.usage`): a user's own, an admin's everyone's or one user's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import Response

from ferryman.console.recent import Recent
from ferryman.console.render import page
from ferryman.console.session import Visitor, auth_of
from ferryman.errors import BadRequest, Forbidden, GatewayError
from ferryman.manage.usage import check_range, visible_owner
from ferryman.store import api_keys, stats, upstream_keys, users
from ferryman.store.stats import Filters

RANGES = (7, 30, 90)
TOP = 10
CHART_HEIGHT = 120
#: Seconds the top client keys over everyone's traffic are kept before a refresh.
EVERYONE_FRESH = 300.0
#: Seconds a dashboard waits for them when none are kept yet: then the page is sent
#: with a placeholder the script fills (`/dashboard/top-keys`) when they are ready.
EVERYONE_WAIT = 0.05


@dataclass(frozen=True)
class Bar:
    day: date
    value: float
    height: float
    x: float
    label: str


def _range(request: Request) -> tuple[int, date, date]:
    try:
        days = int(request.query_params.get("days", "30"))
        if days not in RANGES:
            raise ValueError
    except ValueError:
        days = 30
    today = datetime.now(UTC).date()
    return days, today - timedelta(days=days - 1), today


def _everyone_top(
    request: Request, start: date, end: date
) -> tuple[Recent[list[dict[str, Any]]], tuple[date, date], Callable[[], Awaitable[Any]]]:
    """Everyone's top client keys over a range: the cache, its key, the computation (a
    group-by over every key's daily rows, about a second on 10 million records)."""
    state = request.app.state
    cache: Recent[list[dict[str, Any]]] | None = getattr(state, "everyone_keys", None)
    if cache is None:
        cache = state.everyone_keys = Recent(EVERYONE_FRESH)
    db = auth_of(request).db
    return cache, (start, end), lambda: stats.per_dimension(db, Filters(None, start, end),
                                                             "credential_id", TOP)  # fmt: skip


def warm(request: Request) -> None:
    """Start counting everyone's top keys over the default range (an admin logged in)."""
    _, start, end = _range(request)
    cache, key, compute = _everyone_top(request, start, end)
    cache.warm(key, compute)


async def top_keys(request: Request, who: Visitor) -> Response:
    """Everyone's top client keys as a fragment of the dashboard, once they are counted."""
    if not who.identity.is_admin:
        refused = Forbidden("only admins see everyone's keys", code="admin_required")
        return page(request, "error.html", 403, who=who.identity, csrf=who.csrf, error=refused)
    _, start, end = _range(request)
    cache, key, compute = _everyone_top(request, start, end)
    keys, age = await cache.get(key, compute)
    names = await api_keys.names(auth_of(request).db, (k["id"] for k in keys))
    rows = [(names.get(k["id"], k["id"][:12]), k) for k in keys]
    return page(request, "top_keys.html", keys=rows, keys_age=int(age))


async def dashboard(request: Request, who: Visitor) -> Response:
    auth = auth_of(request)
    args = request.query_params
    error: GatewayError | None = None
    days, start, end = _range(request)
    owner_name = args.get("user", "").strip()[:254]
    user_id: str | None = None
    try:
        if owner_name and who.identity.is_admin:
            found = await users.by_login(auth.db, owner_name.lower())
            if found is None:
                raise BadRequest(f"no user {owner_name!r}", code="user_not_found")
            user_id = found.id
        check_range(start, end)
        owner = visible_owner(who.identity, user_id)
    except GatewayError as refused:
        error, owner = refused, visible_owner(who.identity, None)
    f = Filters(owner, start, end)
    total, models = await stats.summary(auth.db, f)
    daily = {row["day"]: row for row in await stats.per_day(auth.db, f)}
    keys_age = 0.0
    keys: list[dict[str, Any]] | None
    if owner is None:
        # Everyone's top keys sum every key's daily rows: kept a few minutes (`recent`),
        # and the first time not waited for long.
        cache, key, compute = _everyone_top(request, start, end)
        keys, keys_age = await cache.get(key, compute, wait=EVERYONE_WAIT)
    else:
        keys = await stats.per_dimension(auth.db, f, "credential_id", TOP)
    upstream = await stats.per_dimension(auth.db, f, "upstream_key_id", TOP)
    key_names = await api_keys.names(auth.db, (k["id"] for k in keys or ()))
    upstream_names = await upstream_keys.names(auth.db, (k["id"] for k in upstream))
    series = [daily.get(start + timedelta(days=i)) for i in range(days)]
    csv = {"start_date": start.isoformat(), "end_date": end.isoformat()}
    if user_id:
        csv["user_id"] = user_id
    return page(
        request,
        "dashboard.html",
        error.status if error is not None else 200,
        who=who.identity,
        csrf=who.csrf,
        current="home",
        error=error,
        days=days,
        ranges=RANGES,
        start=start,
        end=end,
        owner=owner_name if user_id else "",
        total=total,
        models=models[:TOP],
        keys=None if keys is None else [(key_names.get(k["id"], k["id"][:12]), k) for k in keys],
        upstream=[(upstream_names.get(k["id"], k["id"][:12]), k) for k in upstream],
        keys_age=int(keys_age),
        requests=_bars(start, series, "requests", "{:,.0f} requests"),
        cost=_bars(start, series, "cost", "${:,.4f}"),
        csv="/api/v1/usage.csv?" + urlencode(csv),
    )


def _bars(start: date, series: list[dict[str, Any] | None], field: str, fmt: str) -> list[Bar]:
    values = [float(row[field]) if row else 0.0 for row in series]
    top = max(values) or 1.0
    width = 100.0 / max(len(values), 1)
    return [
        Bar(
            day=start + timedelta(days=i),
            value=value,
            height=round(CHART_HEIGHT * value / top, 2),
            x=round(i * width, 3),
            label=fmt.format(value),
        )
        for i, value in enumerate(values)
    ]
