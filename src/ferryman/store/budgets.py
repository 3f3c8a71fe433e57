"""What budgets read and write: spend summed from the daily usage aggregate, and the
thresholds already announced."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Literal

from sqlalchemy import func, select

from ferryman.store import dialects
from ferryman.store.engine import Database
from ferryman.store.tables import budget_alerts, usage_daily

Scope = Literal["credential", "user"]


async def spend(
    db: Database, scope: Scope, subjects: Sequence[str], start: date
) -> dict[str, float]:
    """Each subject's cost summed over the days from `start` on (absent: nothing spent)."""
    column = usage_daily.c.credential_id if scope == "credential" else usage_daily.c.user_id
    query = (
        select(column, func.sum(usage_daily.c.cost))
        .where(column.in_(list(subjects)), usage_daily.c.day >= start)
        .group_by(column)
    )
    async with db.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return {subject: float(total or 0.0) for subject, total in rows}


async def claim_alert(
    db: Database,
    *,
    scope: Scope,
    subject_id: str,
    window_start: date,
    threshold: int,
    spent: float,
    budget: float,
    now: datetime,
) -> bool:
    """Record that this threshold of this budget's window is announced; False if some
    instance already did."""
    insert = dialects.insert(db.backend)
    statement = (
        insert(budget_alerts)
        .values(
            scope=scope,
            subject_id=subject_id,
            window_start=window_start,
            threshold=threshold,
            spend=spent,
            budget=budget,
            created_at=now,
        )
        .on_conflict_do_nothing()
    )
    async with db.engine.begin() as conn:
        result = await conn.execute(statement)
    return bool(result.rowcount)
