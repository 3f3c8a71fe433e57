"""The upstream_key_history table: a provider key's figures per UTC day.

Whenever the provider tells a key's figures (the periodic sync; the probes, which read
the same `GET /key`; a check; the validation of a key being added), the row of that key
and day is upserted in the transaction that stores the key's latest snapshot. The last
reading of the day wins; the day's first cumulative usage stays beside it; `readings`
counts them. A figure a reading lacks (the account's credit, which only the sync asks
for) keeps the day's earlier value, but a limit the provider reports as null is null:
for OpenRouter that means the key has none.

Rows go with their key (ON DELETE CASCADE) and are pruned after
`FERRYMAN_UPSTREAM_HISTORY_DAYS` days.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from ferryman.store import dialects
from ferryman.store.engine import Database
from ferryman.store.tables import upstream_key_history

if TYPE_CHECKING:
    from ferryman.store.upstream_keys import Snapshot

ONE_DAY = timedelta(days=1)
#: Float subtraction leaves noise (0.30000000000000004); spend is money, 1e-9 is plenty.
SPEND_DIGITS = 9


@dataclass(frozen=True)
class Day:
    """One key's figures on one UTC day, with the day's spend when it can be told."""

    upstream_key_id: str
    day: date
    usage_first: float | None
    usage: float | None
    usage_daily: float | None
    credit_limit: float | None
    limit_remaining: float | None
    credits_total: float | None
    credits_used: float | None
    readings: int
    first_synced_at: datetime
    synced_at: datetime
    spend: float | None = None


@functools.cache
def _upsert(backend: str) -> Any:
    insert = dialects.insert(backend)
    statement = insert(upstream_key_history)
    new, old = statement.excluded, upstream_key_history.c
    return statement.on_conflict_do_update(
        index_elements=["upstream_key_id", "day"],
        set_={
            "usage_first": func.coalesce(old.usage_first, new.usage),
            "usage": func.coalesce(new.usage, old.usage),
            "usage_daily": func.coalesce(new.usage_daily, old.usage_daily),
            "credit_limit": new.credit_limit,
            "limit_remaining": new.limit_remaining,
            "credits_total": func.coalesce(new.credits_total, old.credits_total),
            "credits_used": func.coalesce(new.credits_used, old.credits_used),
            "readings": old.readings + 1,
            "synced_at": new.synced_at,
        },
    )


async def record(conn: AsyncConnection, key_id: str, snapshot: Snapshot, now: datetime) -> None:
    """Fold one reading into the key's row of the UTC day of `now` (on `conn`, inside the
    caller's transaction)."""
    values = {
        "upstream_key_id": key_id,
        "day": now.astimezone(UTC).date(),
        "usage_first": snapshot.usage,
        "usage": snapshot.usage,
        "usage_daily": snapshot.usage_daily,
        "credit_limit": snapshot.credit_limit,
        "limit_remaining": snapshot.limit_remaining,
        "credits_total": snapshot.credits_total,
        "credits_used": snapshot.credits_used,
        "readings": 1,
        "first_synced_at": now,
        "synced_at": now,
    }
    await conn.execute(_upsert(conn.dialect.name), values)


def with_spend(rows: Sequence[Day]) -> list[Day]:
    """One key's days, oldest first, each with its spend: the rise of the cumulative
    usage since the previous day's last reading, or, without one (the key's first day,
    or a day after a gap), since the day's own first reading. None when it cannot be
    told (no usage, or usage that went down)."""
    out: list[Day] = []
    previous: Day | None = None
    for row in rows:
        base = row.usage_first
        if previous and previous.day == row.day - ONE_DAY and previous.usage is not None:
            base = previous.usage
        spend = None
        if row.usage is not None and base is not None and row.usage >= base:
            spend = round(row.usage - base, SPEND_DIGITS)
        out.append(replace(row, spend=spend))
        previous = row
    return out


async def days(
    db: Database, key_ids: Sequence[str], start: date | None, end: date | None
) -> dict[str, list[Day]]:
    """The days of each key within [start, end] (either open), oldest first, in one
    query; the day before `start` is read too, as the first day's baseline."""
    if not key_ids:
        return {}
    c = upstream_key_history.c
    query = select(upstream_key_history).where(c.upstream_key_id.in_(list(key_ids)))
    if start is not None:
        query = query.where(c.day >= start - ONE_DAY)
    if end is not None:
        query = query.where(c.day <= end)
    grouped: dict[str, list[Day]] = {key_id: [] for key_id in key_ids}
    async with db.engine.connect() as conn:
        for row in await conn.execute(query.order_by(c.upstream_key_id, c.day)):
            grouped[row.upstream_key_id].append(Day(**row._mapping))
    return {
        key_id: [d for d in with_spend(rows) if start is None or d.day >= start]
        for key_id, rows in grouped.items()
    }


async def prune(db: Database, before: date) -> int:
    """Delete the days before `before`; how many rows went."""
    async with db.engine.begin() as conn:
        result = await conn.execute(
            delete(upstream_key_history).where(upstream_key_history.c.day < before)
        )
    return int(result.rowcount or 0)
