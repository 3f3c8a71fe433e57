"""The usage tables: raw records and the daily aggregate they add up to.

A batch is written in one transaction: its records, then one upsert per aggregate row it
touches, in key order (so two instances writing overlapping batches take row locks in
the same order and cannot deadlock).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Dialect, Table, bindparam, delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import asyncpg

from ferryman.store.engine import Database
from ferryman.store.tables import usage_daily, usage_daily_totals, usage_records

#: What an absent dimension is stored as in the aggregate's key.
NONE = ""


@dataclass(slots=True)
class UsageRow:
    """One proxied request's record (built on the request path: kept cheap, not frozen)."""

    id: str
    at: datetime
    route: str
    user_id: str | None
    credential_id: str | None
    upstream: str | None
    upstream_key_id: str | None
    model: str | None
    status: int
    duration_ms: float
    ttfb_ms: float | None
    upstream_ms: float | None
    bytes_in: int
    bytes_out: int
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None
    cost: float | None
    correlation_id: str


FIELDS = tuple(UsageRow.__dataclass_fields__)


#: The raw records' insert compiled once per driver, with positional parameters in
#: FIELDS order: executed on the driver (one executemany of plain tuples) it costs about
#: half of SQLAlchemy binding each row's values.
def _compiled_insert(dialect: Dialect) -> str:
    statement = usage_records.insert().inline().values({n: bindparam(n) for n in FIELDS})
    compiled = statement.compile(dialect=dialect)
    if tuple(compiled.positiontup or ()) != FIELDS:
        raise RuntimeError(f"usage insert parameters out of order: {compiled.positiontup}")
    return str(compiled)


_INSERT = {
    "sqlite": _compiled_insert(sqlite.dialect()),
    "postgresql": _compiled_insert(asyncpg.dialect()),  # type: ignore[no-untyped-call]
}


def _sqlite_time(at: datetime) -> str:
    """What SQLAlchemy stores in a SQLite DateTime column (UTC, naive, microseconds)."""
    if at.tzinfo is not UTC:
        at = at.astimezone(UTC)
    return at.replace(tzinfo=None).isoformat(" ", "microseconds")


def _records(backend: str, rows: Sequence[UsageRow]) -> list[tuple[Any, ...]]:
    stamp = _sqlite_time if backend == "sqlite" else lambda at: at
    return [
        (
            r.id,
            stamp(r.at),
            r.route,
            r.user_id,
            r.credential_id,
            r.upstream,
            r.upstream_key_id,
            r.model,
            r.status,
            r.duration_ms,
            r.ttfb_ms,
            r.upstream_ms,
            r.bytes_in,
            r.bytes_out,
            r.prompt_tokens,
            r.completion_tokens,
            r.total_tokens,
            r.cost,
            r.correlation_id,
        )
        for r in rows
    ]


AggregateKey = tuple[date, str, str, str, str]


def aggregate(rows: Sequence[UsageRow]) -> dict[AggregateKey, list[float]]:
    """requests, errors, prompt, completion, cost, cost_unknown per aggregate key."""
    out: dict[AggregateKey, list[float]] = {}
    for row in rows:
        key = (
            row.at.date(),
            row.user_id or NONE,
            row.credential_id or NONE,
            row.upstream_key_id or NONE,
            row.model or NONE,
        )
        sums = out.get(key)
        if sums is None:
            sums = out[key] = [0, 0, 0, 0, 0.0, 0]
        sums[0] += 1
        sums[1] += 1 if row.status >= 400 else 0
        sums[2] += row.prompt_tokens or 0
        sums[3] += row.completion_tokens or 0
        if row.cost is None:
            sums[5] += 1 if row.prompt_tokens or row.completion_tokens else 0
        else:
            sums[4] += row.cost
    return out


SUMS = ("requests", "errors", "prompt_tokens", "completion_tokens", "cost", "cost_unknown")


def _upsert(db: Database, table: Table, keys: list[str]) -> Any:
    insert = postgresql.insert if db.backend == "postgresql" else sqlite.insert
    statement = insert(table)
    excluded = statement.excluded
    return statement.on_conflict_do_update(
        index_elements=keys, set_={name: table.c[name] + excluded[name] for name in SUMS}
    )


DAILY_KEYS = ["day", "user_id", "credential_id", "upstream_key_id", "model"]
TOTALS_KEYS = ["day", "upstream_key_id", "model"]


def totals(daily: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The daily rows summed without their user and credential, in key order."""
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    for values in daily:
        key = tuple(values[k] for k in TOTALS_KEYS)
        row = out.get(key)
        if row is None:
            out[key] = {**{k: values[k] for k in TOTALS_KEYS}, **{s: values[s] for s in SUMS}}
        else:
            for name in SUMS:
                row[name] += values[name]
    return [out[key] for key in sorted(out)]


async def write(db: Database, rows: Sequence[UsageRow]) -> None:
    if not rows:
        return
    sums = aggregate(rows)
    daily = [
        {
            "day": key[0],
            "user_id": key[1],
            "credential_id": key[2],
            "upstream_key_id": key[3],
            "model": key[4],
            "requests": int(values[0]),
            "errors": int(values[1]),
            "prompt_tokens": int(values[2]),
            "completion_tokens": int(values[3]),
            "cost": float(values[4]),
            "cost_unknown": int(values[5]),
        }
        for key, values in sorted(sums.items())
    ]
    async with db.engine.begin() as conn:
        await conn.exec_driver_sql(_INSERT[db.backend], _records(db.backend, rows))
        upsert = _upsert(db, usage_daily, DAILY_KEYS)
        for values in daily:
            await conn.execute(upsert, values)
        upsert = _upsert(db, usage_daily_totals, TOTALS_KEYS)
        for values in totals(daily):
            await conn.execute(upsert, values)


async def prune(db: Database, before: datetime) -> int:
    """Delete raw records older than `before`; the aggregates stay."""
    async with db.engine.begin() as conn:
        result = await conn.execute(delete(usage_records).where(usage_records.c.at < before))
    return int(result.rowcount or 0)
