"""Queries of the daily usage aggregates (never the raw records, so they stay fast on a
long history). Questions about one user or one client key read `usage_daily`; fleet-wide
ones read `usage_daily_totals`, the same sums without the user dimension."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import Select, Table, func, select

from ferryman.store.engine import Database
from ferryman.store.tables import usage_daily, usage_daily_totals
from ferryman.store.usage import NONE


@dataclass(frozen=True)
class Filters:
    user_id: str | None = None
    """None: every user (admins)."""
    start: date | None = None
    end: date | None = None
    model: str | None = None
    credential_id: str | None = None


def _table(f: Filters, column: str | None = None) -> Table:
    personal = f.user_id is not None or f.credential_id is not None
    return usage_daily if personal or column == "credential_id" else usage_daily_totals


def _where(table: Table, query: Select[Any], f: Filters) -> Select[Any]:
    c = table.c
    if f.user_id is not None:
        query = query.where(c.user_id == f.user_id)
    if f.credential_id is not None:
        query = query.where(c.credential_id == f.credential_id)
    if f.start is not None:
        query = query.where(c.day >= f.start)
    if f.end is not None:
        query = query.where(c.day <= f.end)
    if f.model is not None:
        query = query.where(c.model == f.model)
    return query


def _sums(table: Table) -> list[Any]:
    c = table.c
    return [
        func.coalesce(func.sum(c.requests), 0).label("requests"),
        func.coalesce(func.sum(c.errors), 0).label("errors"),
        func.coalesce(func.sum(c.prompt_tokens), 0).label("tokens_input"),
        func.coalesce(func.sum(c.completion_tokens), 0).label("tokens_output"),
        func.coalesce(func.sum(c.cost), 0).label("cost"),
    ]


def _models(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for row in rows:
        row["model"] = row["model"] or None
    return rows


async def summary(db: Database, f: Filters) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Totals, and totals per model (most requests first)."""
    table = _table(f)
    c = table.c
    async with db.engine.connect() as conn:
        total = (await conn.execute(_where(table, select(*_sums(table)), f))).one()._mapping
        models = await conn.execute(
            _where(table, select(c.model, *_sums(table)), f)
            .group_by(c.model)
            .order_by(func.sum(c.requests).desc(), c.model)
        )
        by_model = [dict(row._mapping) for row in models]
    return dict(total), _models(by_model)


async def per_day_and_model(
    db: Database, f: Filters, *, offset: int, limit: int
) -> tuple[list[dict[str, Any]], int]:
    """Rows of day and model, newest first, and how many there are in all."""
    table = _table(f)
    c = table.c
    grouped = _where(table, select(c.day, c.model, *_sums(table)), f).group_by(c.day, c.model)
    async with db.engine.connect() as conn:
        total = (
            await conn.execute(select(func.count()).select_from(grouped.subquery()))
        ).scalar_one()
        rows = await conn.execute(
            grouped.order_by(c.day.desc(), c.model).offset(offset).limit(limit)
        )
        items = [dict(row._mapping) for row in rows]
    return _models(items), int(total)


async def per_day(db: Database, f: Filters) -> list[dict[str, Any]]:
    """Totals per day, oldest first (days without traffic are absent)."""
    table = _table(f)
    c = table.c
    query = _where(table, select(c.day, *_sums(table)), f).group_by(c.day).order_by(c.day)
    async with db.engine.connect() as conn:
        return [dict(row._mapping) for row in await conn.execute(query)]


async def per_dimension(
    db: Database, f: Filters, column: str, limit: int | None = None
) -> list[dict[str, Any]]:
    """Totals per client key (`credential_id`) or per upstream key (`upstream_key_id`)."""
    table = _table(f, column)
    col = table.c[column]
    async with db.engine.connect() as conn:
        rows = await conn.execute(
            _where(table, select(col.label("id"), *_sums(table)), f)
            .where(col != NONE)
            .group_by(col)
            .order_by(func.sum(table.c.requests).desc(), col)
            .limit(limit)
        )
        return [dict(row._mapping) for row in rows]


async def per_upstream_key(
    db: Database,
    key_ids: Sequence[str],
    start: date | None,
    end: date | None,
    user_id: str | None = None,
) -> dict[str, dict[str, Any]]:
    """Totals of each of these upstream keys within [start, end], in one query. Keys of
    one user (`user_id`) carry only that user's traffic, so their totals come from the
    user's rows of `usage_daily` (its user index); any keys, from the fleet-wide totals."""
    if not key_ids:
        return {}
    f = Filters(user_id=user_id, start=start, end=end)
    table = _table(f)
    col = table.c.upstream_key_id
    query = _where(table, select(col.label("id"), *_sums(table)), f)
    async with db.engine.connect() as conn:
        rows = await conn.execute(query.where(col.in_(list(key_ids))).group_by(col))
        return {row.id: dict(row._mapping) for row in rows}
