"""The usage tables: raw records and the daily aggregate they add up to.

A batch is written in one transaction: its records, then one upsert per aggregate row it
touches, in key order (so two instances writing overlapping batches take row locks in
the same order and cannot deadlock).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import Table, and_, bindparam, delete, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from ferryman.store import dialects
from ferryman.store.engine import Database
from ferryman.store.tables import usage_daily, usage_daily_totals, usage_records

#: What an absent dimension is stored as in the aggregate's key.
NONE = ""


class UsageRow(NamedTuple):
    """One proxied request's record, its fields in the order of the insert's parameters
    (`at` is stored as each database wants it)."""

    id: str
    at: float
    """When the request finished, in seconds since the epoch."""
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


FIELDS = UsageRow._fields


#: The raw records' insert compiled once per driver, with positional parameters in
#: FIELDS order: executed on the driver (one executemany of the rows, their time made
#: what the database wants) it costs a fraction of SQLAlchemy binding each row's values.
@functools.cache
def insert_sql(backend: str) -> str:
    statement = usage_records.insert().inline().values({n: bindparam(n) for n in FIELDS})
    compiled = statement.compile(dialect=dialects.dialect(backend))
    if tuple(compiled.positiontup or ()) != FIELDS:
        raise RuntimeError(f"usage insert parameters out of order: {compiled.positiontup}")
    return str(compiled)


_EPOCH = date(1970, 1, 1)
#: Formatted seconds and days, by the number since the epoch (a batch's rows share few).
_SECONDS: dict[int, str] = {}
_DAYS: dict[int, date] = {}
_CACHED = 4096


def sqlite_time(at: float) -> str:
    """What SQLAlchemy stores in a SQLite DateTime column (UTC, naive, microseconds)."""
    second, micro = divmod(round(at * 1_000_000), 1_000_000)
    text = _SECONDS.get(second)
    if text is None:
        if len(_SECONDS) >= _CACHED:
            _SECONDS.clear()
        text = _SECONDS[second] = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(second))
    return f"{text}.{micro:06d}"


def day_of(at: float) -> date:
    """The UTC day of a time in seconds since the epoch."""
    number = int(at // 86_400)
    day = _DAYS.get(number)
    if day is None:
        if len(_DAYS) >= _CACHED:
            _DAYS.clear()
        day = _DAYS[number] = _EPOCH + timedelta(days=number)
    return day


def start_of(day: date) -> float:
    """The first second of a UTC day, in seconds since the epoch."""
    return (day - _EPOCH).days * 86_400.0


def _records(backend: str, rows: Sequence[UsageRow]) -> list[tuple[Any, ...]]:
    if backend == "sqlite":
        return [(row[0], sqlite_time(row[1]), *row[2:]) for row in rows]
    return [(row[0], datetime.fromtimestamp(row[1], UTC), *row[2:]) for row in rows]


AggregateKey = tuple[date, str, str, str, str]


def aggregate(rows: Sequence[UsageRow]) -> dict[AggregateKey, list[float]]:
    """requests, errors, prompt, completion, cost, cost_unknown per aggregate key."""
    out: dict[AggregateKey, list[float]] = {}
    for row in rows:
        (
            _, at, _, user, credential, _, upstream_key, model, status, _, _, _, _, _,
            prompt, completion, _, cost, _,
        ) = row  # fmt: skip
        key = (day_of(at), user or NONE, credential or NONE, upstream_key or NONE, model or NONE)
        sums = out.get(key)
        if sums is None:
            sums = out[key] = [0, 0, 0, 0, 0.0, 0]
        sums[0] += 1
        if status >= 400:
            sums[1] += 1
        if prompt:
            sums[2] += prompt
        if completion:
            sums[3] += completion
        if cost is not None:
            sums[4] += cost
        elif prompt or completion:
            sums[5] += 1
    return out


SUMS = ("requests", "errors", "prompt_tokens", "completion_tokens", "cost", "cost_unknown")


@functools.cache
def upsert(backend: str, table: Table, keys: tuple[str, ...]) -> Any:
    """Add a batch's sums to the table's rows (made once per backend and table)."""
    insert = dialects.insert(backend)
    statement = insert(table)
    excluded = statement.excluded
    return statement.on_conflict_do_update(
        index_elements=list(keys), set_={name: table.c[name] + excluded[name] for name in SUMS}
    )


DAILY_KEYS = ("day", "user_id", "credential_id", "upstream_key_id", "model")
TOTALS_KEYS = ("day", "upstream_key_id", "model")


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


Batch = tuple[list[tuple[Any, ...]], list[dict[str, Any]], list[dict[str, Any]]]


def batch(backend: str, rows: Sequence[UsageRow]) -> Batch:
    """What one batch writes: its records, then its daily and total sums in key order."""
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
    return _records(backend, rows), daily, totals(daily)


async def write(db: Database, rows: Sequence[UsageRow]) -> None:
    """Write a batch through the engine, in one transaction."""
    if not rows:
        return
    records, daily, total = batch(db.backend, rows)
    async with db.engine.begin() as conn:
        await conn.exec_driver_sql(insert_sql(db.backend), records)
        # One executemany each, in key order (rows locked in the same order everywhere).
        await conn.execute(upsert(db.backend, usage_daily, DAILY_KEYS), daily)
        await conn.execute(upsert(db.backend, usage_daily_totals, TOTALS_KEYS), total)


#: How far out of time order records may be written (batches are appended in the order
#: requests finished, give or take a flush interval; instances of a fleet, each its own
#: interval): the pruning bound's margin.
DISORDER = timedelta(hours=1)


async def prune(db: Database, before: datetime) -> int:
    """Delete raw records older than `before`; the aggregates stay.

    Records carry no index on their time (every insert would pay for it): `seq` grows
    with it, so a bisection over the key finds a bound past which nothing is older than
    `before` (a few dozen reads by key), and the delete walks the key up to there."""
    async with db.engine.begin() as conn:
        bound = await _first_seq_at_or_after(conn, before + DISORDER)
        condition = usage_records.c.at < before
        if bound is not None:
            condition = and_(usage_records.c.seq < bound, condition)
        result = await conn.execute(delete(usage_records).where(condition))
    return int(result.rowcount or 0)


async def _first_seq_at_or_after(conn: AsyncConnection, when: datetime) -> int | None:
    """The first `seq` whose record is at or after `when`, taking the records' times to
    grow with `seq`; None when every record is older."""
    seq = usage_records.c.seq
    low = await conn.scalar(select(func.min(seq)))
    high = await conn.scalar(select(func.max(seq)))
    if low is None or high is None:
        return None
    high += 1  # exclusive: "none is that recent" until a probe finds one
    found: int | None = None
    while low < high:
        middle = (low + high) // 2
        probe = (
            await conn.execute(
                select(seq, usage_records.c.at).where(seq >= middle).order_by(seq).limit(1)
            )
        ).first()
        if probe is None or probe.at >= when:
            high = middle
            if probe is not None:
                found = probe.seq
        else:
            low = probe.seq + 1
    return found
