"""`/api/v1/stats`, `/api/v1/usage`, `/api/v1/usage.csv` (seed 003's public stats API).

Read from the daily aggregate. A user sees their own usage; an admin sees everyone's
and can narrow it to one user. Besides a JWT or a session, a client key with the
`stats:read` scope may read them (`Authorization: Bearer fm_…`), so scripts and
dashboards need no password; a key without that scope gets 403.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import AsyncIterator
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from ferryman.api.answers import answers
from ferryman.api.deps import AuthDep, Caller, get_auth, get_caller
from ferryman.api.limits import limit_stats
from ferryman.api.schemas import MAX_PAGE, IsoDate
from ferryman.auth.hashing import API_KEY_PREFIX
from ferryman.auth.identity import Identity
from ferryman.auth.services import Auth
from ferryman.errors import Forbidden
from ferryman.manage.usage import check_range, visible_owner
from ferryman.store import stats
from ferryman.store.stats import Filters

STATS_SCOPE = "stats:read"


async def get_reader(request: Request, auth: Annotated[Auth, Depends(get_auth)]) -> Identity:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() == "bearer" and token.startswith(API_KEY_PREFIX):
        identity = await auth.api_keys.verify(token)
        if STATS_SCOPE not in identity.scopes:
            raise Forbidden(f"this key lacks the {STATS_SCOPE} scope", code="insufficient_scope")
        return identity
    caller: Caller = await get_caller(request, auth)
    return caller.identity


ReaderDep = Annotated[Identity, Depends(get_reader)]


async def limit_reader(request: Request, reader: ReaderDep) -> None:
    """Every call counts against the caller's credential (`FERRYMAN_STATS_RATE_LIMIT`)."""
    await limit_stats(request, reader)


#: Every stats route takes a date range.
RANGE_ANSWERS = answers({400: "`invalid_date_range`: start_date is after end_date"})

# Router-wide, so a new stats endpoint cannot be added without the limit.
router = APIRouter(tags=["stats"], dependencies=[Depends(limit_reader)], responses=RANGE_ANSWERS)


def get_filters(
    reader: ReaderDep,
    start_date: IsoDate | None = None,
    end_date: IsoDate | None = None,
    model: Annotated[str | None, Query(description="only this model")] = None,
    key: Annotated[str | None, Query(description="a client key's id")] = None,
    user_id: Annotated[str | None, Query(description="admins: one user")] = None,
) -> Filters:
    """What the caller may see, narrowed by the query."""
    check_range(start_date, end_date)
    return Filters(visible_owner(reader, user_id), start_date, end_date, model, key)


FiltersDep = Annotated[Filters, Depends(get_filters)]


class Totals(BaseModel):
    total_requests: int
    total_errors: int
    total_tokens_input: int
    total_tokens_output: int
    total_cost: float


class ModelTotals(BaseModel):
    model: str | None
    requests: int
    errors: int
    tokens_input: int
    tokens_output: int
    cost: float


class StatsOut(BaseModel):
    summary: Totals
    by_model: list[ModelTotals]


class DayModel(BaseModel):
    date: date
    model: str | None
    requests: int
    errors: int
    tokens_input: int
    tokens_output: int
    cost: float


class Pagination(BaseModel):
    page: int
    limit: int
    total: int
    pages: int


class UsageOut(BaseModel):
    items: list[DayModel]
    pagination: Pagination


class KeyTotals(BaseModel):
    id: str
    requests: int
    errors: int
    tokens_input: int
    tokens_output: int
    cost: float


def _model_totals(row: dict[str, Any]) -> ModelTotals:
    return ModelTotals(**{**row, "cost": float(row["cost"])})


@router.get("/stats")
async def summary(f: FiltersDep, auth: AuthDep) -> StatsOut:
    """Totals and totals per model."""
    total, models = await stats.summary(auth.db, f)
    return StatsOut(
        summary=Totals(
            total_requests=total["requests"],
            total_errors=total["errors"],
            total_tokens_input=total["tokens_input"],
            total_tokens_output=total["tokens_output"],
            total_cost=float(total["cost"]),
        ),
        by_model=[_model_totals(m) for m in models],
    )


async def _per(f: Filters, auth: Auth, column: str) -> list[KeyTotals]:
    rows = await stats.per_dimension(auth.db, f, column)
    return [KeyTotals(**{**r, "cost": float(r["cost"])}) for r in rows]


@router.get("/stats/keys")
async def per_client_key(f: FiltersDep, auth: AuthDep) -> list[KeyTotals]:
    """Totals per client key."""
    return await _per(f, auth, "credential_id")


@router.get("/stats/upstream-keys")
async def per_upstream_key(f: FiltersDep, auth: AuthDep) -> list[KeyTotals]:
    """Totals per upstream (provider) key."""
    return await _per(f, auth, "upstream_key_id")


@router.get("/usage")
async def usage(
    f: FiltersDep,
    auth: AuthDep,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> UsageOut:
    """Usage per day and model, newest first, paginated."""
    rows, total = await stats.per_day_and_model(auth.db, f, offset=(page - 1) * limit, limit=limit)
    items = [DayModel(**{**r, "date": r["day"], "cost": float(r["cost"])}) for r in rows]
    return UsageOut(
        items=items,
        pagination=Pagination(
            page=page, limit=limit, total=total, pages=max(1, math.ceil(total / limit))
        ),
    )


class CsvResponse(StreamingResponse):
    media_type = "text/csv"


_CSV = {"text/csv": {"schema": {"type": "string"}}}


@router.get(
    "/usage.csv",
    response_class=CsvResponse,
    responses={200: {"description": "date,model,requests,errors,tokens_input,"
                     "tokens_output,cost: a header line, then a line per day and model",
                     "content": _CSV}},
)  # fmt: skip
async def usage_csv(f: FiltersDep, auth: AuthDep) -> StreamingResponse:
    """The same rows as CSV, streamed page by page."""
    columns = ["date", "model", "requests", "errors", "tokens_input", "tokens_output", "cost"]

    async def lines() -> AsyncIterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(columns)
        offset = 0
        while True:
            rows, _ = await stats.per_day_and_model(auth.db, f, offset=offset, limit=1000)
            for r in rows:
                writer.writerow([r["day"].isoformat(), r["model"] or "", r["requests"],
                                 r["errors"], r["tokens_input"], r["tokens_output"],
                                 f"{float(r['cost']):.6f}"])  # fmt: skip
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            if len(rows) < 1000:
                return
            offset += 1000

    return CsvResponse(
        lines(),
        headers={"Content-Disposition": 'attachment; filename="usage.csv"'},
    )
