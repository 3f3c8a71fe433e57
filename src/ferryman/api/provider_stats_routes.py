"""`/api/v1/stats/provider-keys` (seed 003's key list with its stats) and
`/api/v1/stats/provider-keys/{id}/history`.

The listing gives each provider key in one answer: its health as the pool sees it now,
the provider's latest figures, what the gateway metered through it, and its figures per
day. Readers are those of the rest of the stats API (a JWT, a session, or a client key
with `stats:read`): a user sees the keys they added; an admin with a JWT or session
sees every key, the shared pool included, or one user's with `?user_id=`; a client key
sees only its owner's own keys, never the shared pool, even when its owner is an admin.

A page of the listing costs three queries whatever the number of keys on it: the keys,
their metered totals (grouped by key), their history.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel

from ferryman.api.schemas import MAX_PAGE, IsoDate
from ferryman.api.stats_routes import RANGE_ANSWERS, ReaderDep, limit_reader
from ferryman.api.upstream_keys_routes import get_service
from ferryman.auth.identity import Identity
from ferryman.errors import NotFound
from ferryman.manage.usage import check_range, visible_owner
from ferryman.store import key_history, stats
from ferryman.store import upstream_keys as rows
from ferryman.store.key_history import Day
from ferryman.store.upstream_keys import UpstreamKeyRow
from ferryman.upstreams.service import KeyView

# The stats API's limit per credential applies here as on every stats route.
router = APIRouter(
    prefix="/stats/provider-keys",
    tags=["stats"],
    dependencies=[Depends(limit_reader)],
    responses=RANGE_ANSWERS,
)

#: Days of history each key of the listing carries when no `start_date` is given (a
#: page of 500 keys with a year each would be a 200 000-row answer).
LISTED_DAYS = 30


class ProviderFigures(BaseModel):
    """What the provider last said of the key."""

    usage: float | None
    limit: float | None
    limit_remaining: float | None
    credits_total: float | None
    credits_used: float | None
    synced_at: datetime | None


class MeteredTotals(BaseModel):
    """What the gateway metered through the key within the dates (seed 003's `stats`)."""

    total_requests: int = 0
    total_errors: int = 0
    total_tokens_input: int = 0
    total_tokens_output: int = 0
    total_cost: float = 0.0


class HistoryDay(BaseModel):
    date: date
    usage: float | None
    """Cumulative usage at the day's last reading."""
    usage_first: float | None
    """Cumulative usage at the day's first reading."""
    spend: float | None
    """Rise of the usage since the previous day's last reading (or, without one, since
    the day's first)."""
    usage_daily: float | None
    """The provider's own figure for the day, at its last reading."""
    limit: float | None
    limit_remaining: float | None
    credits_total: float | None
    credits_used: float | None
    readings: int
    first_synced_at: datetime
    synced_at: datetime

    @classmethod
    def of(cls, day: Day) -> HistoryDay:
        return cls(
            date=day.day,
            usage=day.usage,
            usage_first=day.usage_first,
            spend=day.spend,
            usage_daily=day.usage_daily,
            limit=day.credit_limit,
            limit_remaining=day.limit_remaining,
            credits_total=day.credits_total,
            credits_used=day.credits_used,
            readings=day.readings,
            first_synced_at=day.first_synced_at,
            synced_at=day.synced_at,
        )


class ProviderKeyOut(BaseModel):
    id: str
    name: str
    upstream: str
    owner_id: str | None
    shared: bool
    masked: str
    is_active: bool
    """Seed 003's name for `enabled`."""
    enabled: bool
    state: str
    """healthy, cooling_down, out_of_credit, invalid or disabled, as the pool sees it now."""
    cooling_until: datetime | None
    last_error: str | None
    last_checked_at: datetime | None
    last_used_at: datetime | None
    created_at: datetime
    provider: ProviderFigures
    stats: MeteredTotals
    history: list[HistoryDay]

    @classmethod
    def of(cls, view: KeyView, totals: dict[str, Any] | None, days: list[Day]) -> ProviderKeyOut:
        row = view.row
        metered = MeteredTotals()
        if totals is not None:
            metered = MeteredTotals(
                total_requests=totals["requests"],
                total_errors=totals["errors"],
                total_tokens_input=totals["tokens_input"],
                total_tokens_output=totals["tokens_output"],
                total_cost=float(totals["cost"]),
            )
        return cls(
            id=row.id,
            name=row.name,
            upstream=row.upstream,
            owner_id=row.owner_id,
            shared=row.owner_id is None,
            masked=row.masked,
            is_active=row.enabled,
            enabled=row.enabled,
            state=view.state,
            cooling_until=view.cooling_until,
            last_error=view.last_error,
            last_checked_at=row.last_checked_at,
            last_used_at=row.last_used_at,
            created_at=row.created_at,
            provider=ProviderFigures(
                usage=row.usage,
                limit=row.credit_limit,
                limit_remaining=row.limit_remaining,
                credits_total=row.credits_total,
                credits_used=row.credits_used,
                synced_at=row.synced_at,
            ),
            stats=metered,
            history=[HistoryDay.of(day) for day in days],
        )


class ProviderKeyList(BaseModel):
    items: list[ProviderKeyOut]
    total: int
    """Keys the reader may see in all (a page shows `limit` of them)."""


class KeyHistoryOut(BaseModel):
    id: str
    name: str
    items: list[HistoryDay]
    """Oldest first."""
    total: int


def _sees(reader: Identity, row: UpstreamKeyRow) -> bool:
    if reader.is_admin and reader.kind != "api_key":
        return True
    return row.owner_id is not None and row.owner_id == reader.user_id


@router.get("")
async def provider_keys(
    reader: ReaderDep,
    request: Request,
    start_date: IsoDate | None = None,
    end_date: IsoDate | None = None,
    user_id: Annotated[str | None, Query(description="admins: one user's own keys")] = None,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> ProviderKeyList:
    """The reader's provider keys, oldest first, each with its state, the provider's
    figures, the metered totals within the dates and its history (by default the last
    30 days)."""
    check_range(start_date, end_date)
    owner = visible_owner(reader, user_id)
    service = get_service(request)
    db = service.db
    every = await rows.listing(db, owner_id=owner, everyone=owner is None)
    shown = every[(page - 1) * limit : page * limit]
    ids = [row.id for row in shown]
    totals = await stats.per_upstream_key(db, ids, start_date, end_date, owner)
    since = start_date
    if since is None:
        until = end_date or service.clock.now().date()
        # (A range ending in the first days of year 1 starts on its first day.)
        since = until - min(timedelta(days=LISTED_DAYS - 1), until - date.min)
    days = await key_history.days(db, ids, since, end_date)
    items = [ProviderKeyOut.of(service.view(r), totals.get(r.id), days[r.id]) for r in shown]
    return ProviderKeyList(items=items, total=len(every))


@router.get("/{key_id}/history")
async def provider_key_history(
    key_id: str,
    reader: ReaderDep,
    request: Request,
    start_date: IsoDate | None = None,
    end_date: IsoDate | None = None,
) -> KeyHistoryOut:
    """One key's figures per day within the dates (all that is kept by default)."""
    check_range(start_date, end_date)
    service = get_service(request)
    row = await rows.get(service.db, key_id)
    if row is None or not _sees(reader, row):
        # The same answer for a key that exists but is someone else's: nothing leaks.
        raise NotFound("no such upstream key", code="upstream_key_not_found")
    days = (await key_history.days(service.db, [row.id], start_date, end_date))[row.id]
    return KeyHistoryOut(
        id=row.id, name=row.name, items=[HistoryDay.of(d) for d in days], total=len(days)
    )
