"""Queries of the daily usage aggregate (never the raw records, so they stay fast on a
long history)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import Select, func, select

from ferryman.store.engine import Database
from ferryman.store.tables import usage_daily
from ferryman.store.usage import NONE


@dataclass(frozen=True)
class Filters:
    user_id: str | None = None
    """None: every user (admins)."""
    start: date | None = None
    end: date | None = None
    model: str | None = None
    credential_id: str | None = None


def _where(query: Select[Any], f: Filters) -> Select[Any]:
    c = usage_daily.c
    if f.user_id is not None:
        query = query.where(c.user_id == f.user_id)
    if f.start is not None:
        query = query.where(c.day >= f.start)
    if f.end is not None:
        query = query.where(c.day <= f.end)
    if f.model is not None:
        query = query.where(c.model == f.model)
    if f.credential_id is not None:
        query = query.where(c.credential_id == f.credential_id)
    return query


def _sums() -> list[Any]:
    c = usage_daily.c
    return [
        func.coalesce(func.sum(c.requests), 0).label("requests"),
        func.coalesce(func.sum(c.errors), 0).label("errors"),
        func.coalesce(func.sum(c.prompt_tokens), 0).label("tokens_input"),
        func.coalesce(func.sum(c.completion_tokens), 0).label("tokens_output"),
        func.coalesce(func.sum(c.cost), 0).label("cost"),
    ]


async def summary(db: Database, f: Filters) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Totals, and totals per model (most requests first)."""
    c = usage_daily.c
    async with db.engine.connect() as conn:
        total = (await conn.execute(_where(select(*_sums()), f))).one()._mapping
        models = await conn.execute(
            _where(select(c.model, *_sums()), f)
            .group_by(c.model)
            .order_by(func.sum(c.requests).desc(), c.model)
        )
        by_model = [dict(row._mapping) for row in models]
    for row in by_model:
        row["model"] = row["model"] or None
    return dict(total), by_model


async def per_day_and_model(
    db: Database, f: Filters, *, offset: int, limit: int
) -> tuple[list[dict[str, Any]], int]:
    """Rows of day and model, newest first, and how many there are in all."""
    c = usage_daily.c
    grouped = _where(select(c.day, c.model, *_sums()), f).group_by(c.day, c.model)
    async with db.engine.connect() as conn:
        total = (
            await conn.execute(select(func.count()).select_from(grouped.subquery()))
        ).scalar_one()
        rows = await conn.execute(
            grouped.order_by(c.day.desc(), c.model).offset(offset).limit(limit)
        )
        items = [dict(row._mapping) for row in rows]
    for row in items:
        row["model"] = row["model"] or None
    return items, int(total)


async def per_dimension(db: Database, f: Filters, column: str) -> list[dict[str, Any]]:
    """Totals per client key (`credential_id`) or per upstream key (`upstream_key_id`)."""
    col = usage_daily.c[column]
    async with db.engine.connect() as conn:
        rows = await conn.execute(
            _where(select(col.label("id"), *_sums()), f)
            .where(col != NONE)
            .group_by(col)
            .order_by(func.sum(usage_daily.c.requests).desc(), col)
        )
        return [dict(row._mapping) for row in rows]
