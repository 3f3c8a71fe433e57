"""The console's dashboard (its home page): requests, tokens, cost and errors per day
over a chosen range, with the top models, client keys and upstream keys. Read from the
daily aggregates (`store.stats`), never the raw records; whose usage is shown follows
the stats API's rule (`manage.usage`): a user's own, an admin's everyone's or one user's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import Response

from ferryman.console.recent import Recent
from ferryman.console.render import page
from ferryman.console.session import Visitor, auth_of
from ferryman.errors import BadRequest, GatewayError
from ferryman.manage.usage import check_range, visible_owner
from ferryman.store import api_keys, stats, upstream_keys, users
from ferryman.store.stats import Filters

RANGES = (7, 30, 90)
TOP = 10
CHART_HEIGHT = 120
#: Seconds the top client keys over everyone's traffic are kept before a refresh.
EVERYONE_FRESH = 300.0


@dataclass(frozen=True)
class Bar:
    day: date
    value: float
    height: float
    x: float
    label: str


async def dashboard(request: Request, who: Visitor) -> Response:
    auth = auth_of(request)
    args = request.query_params
    today = datetime.now(UTC).date()
    error: GatewayError | None = None
    try:
        days = int(args.get("days", "30"))
        if days not in RANGES:
            raise ValueError
    except ValueError:
        days = 30
    start, end = today - timedelta(days=days - 1), today
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
    if owner is None:
        # Everyone's top keys sum every key's daily rows: kept a few minutes (`recent`).
        cache = _everyone_keys(request)
        keys, keys_age = await cache.get(
            (start, end), lambda: stats.per_dimension(auth.db, f, "credential_id", TOP)
        )
    else:
        keys = await stats.per_dimension(auth.db, f, "credential_id", TOP)
    upstream = await stats.per_dimension(auth.db, f, "upstream_key_id", TOP)
    key_names = await api_keys.names(auth.db, (k["id"] for k in keys))
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
        keys=[(key_names.get(k["id"], k["id"][:12]), k) for k in keys],
        upstream=[(upstream_names.get(k["id"], k["id"][:12]), k) for k in upstream],
        keys_age=int(keys_age),
        requests=_bars(start, series, "requests", "{:,.0f} requests"),
        cost=_bars(start, series, "cost", "${:,.4f}"),
        csv="/api/v1/usage.csv?" + urlencode(csv),
    )


def _everyone_keys(request: Request) -> Recent[list[dict[str, Any]]]:
    state = request.app.state
    cache: Recent[list[dict[str, Any]]] | None = getattr(state, "everyone_keys", None)
    if cache is None:
        cache = state.everyone_keys = Recent(EVERYONE_FRESH)
    return cache


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
