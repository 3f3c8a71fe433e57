"""Usage batches on SQLite and PostgreSQL: records in, aggregates summed by upsert,
old records pruned while the aggregates stay."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone

from sqlalchemy import func, select, text

from ferryman.config.settings import Settings
from ferryman.store import migrate, usage
from ferryman.store.engine import create_database
from ferryman.store.tables import usage_daily, usage_daily_totals, usage_records
from ferryman.store.usage import UsageRow

DAY = datetime(2026, 11, 20, 12, tzinfo=UTC)


def row(n: int, *, at: datetime = DAY, status: int = 200, cost: float | None = 0.5,
        model: str | None = "m", user: str | None = "u1") -> UsageRow:  # fmt: skip
    return UsageRow(
        id=f"{n:032x}",
        at=at.timestamp(),
        route="llm",
        user_id=user,
        credential_id="k1",
        upstream="up",
        upstream_key_id="p1",
        model=model,
        status=status,
        duration_ms=12.5,
        ttfb_ms=3.0,
        upstream_ms=10.0,
        bytes_in=100,
        bytes_out=200,
        prompt_tokens=10,
        completion_tokens=20,
        total_tokens=30,
        cost=cost,
        correlation_id=f"c{n}",
    )


async def test_batches_add_up_in_the_daily_aggregate(db_settings: Settings) -> None:
    db = create_database(db_settings)
    try:
        await migrate.upgrade(db)
        first = [row(1), row(2, status=502), row(3, model=None, cost=None, user=None)]
        second = [row(4, cost=None), row(5, at=DAY + timedelta(days=1))]
        # Two instances writing overlapping batches at once: upserts in key order.
        await asyncio.gather(usage.write(db, first), usage.write(db, second))
        async with db.engine.connect() as conn:
            count = (await conn.execute(select(func.count()).select_from(usage_records))).scalar()
            daily = {
                (r.day.isoformat(), r.user_id, r.model): r
                for r in await conn.execute(select(usage_daily))
            }
        assert count == 5
        main = daily[("2026-11-20", "u1", "m")]
        assert (main.requests, main.errors, main.prompt_tokens, main.completion_tokens) == (
            3,
            1,
            30,
            60,
        )
        assert main.cost == 1.0 and main.cost_unknown == 1
        assert daily[("2026-11-20", "", "")].requests == 1  # absent dimensions kept apart
        assert daily[("2026-11-21", "u1", "m")].requests == 1
        async with db.engine.connect() as conn:
            fleet = {
                (r.day.isoformat(), r.model): r
                for r in await conn.execute(select(usage_daily_totals))
            }
        assert fleet[("2026-11-20", "m")].requests == 3  # u1's rows, summed without user
        assert fleet[("2026-11-20", "")].requests == 1
        assert fleet[("2026-11-20", "m")].cost == 1.0
        removed = await usage.prune(db, DAY + timedelta(hours=12))
        assert removed == 4
        async with db.engine.connect() as conn:
            left = (await conn.execute(select(func.count()).select_from(usage_records))).scalar()
            kept = (await conn.execute(select(func.sum(usage_daily.c.requests)))).scalar()
        assert left == 1 and kept == 5
    finally:
        await db.dispose()


async def test_a_record_reads_back_as_written_every_field(db_settings: Settings) -> None:
    """Records go in through the driver (plain tuples); SQLAlchemy reads them back the
    same, the time as the same aware UTC instant (given in another zone, with and without
    microseconds), and the prune bound compares with it correctly."""
    db = create_database(db_settings)
    try:
        await migrate.upgrade(db)
        plus_two = timezone(timedelta(hours=2))
        written = [
            row(1, at=datetime(2026, 11, 20, 14, 30, 5, 123456, tzinfo=plus_two)),
            row(2, at=datetime(2026, 11, 20, 12, 0, 0, tzinfo=UTC), cost=None, model=None),
        ]
        await usage.write(db, written)
        async with db.engine.connect() as conn:
            read = {r.id: r._mapping for r in await conn.execute(select(usage_records))}
        for record in written:
            got = read[record.id]
            for name in usage.FIELDS:
                if name != "at":
                    assert got[name] == getattr(record, name), name
            assert got["at"] == datetime.fromtimestamp(record.at, UTC)
            assert got["at"].utcoffset() == timedelta(0)
        assert await usage.prune(db, datetime(2026, 11, 20, 12, 30, 5, tzinfo=UTC)) == 1
        assert await usage.prune(db, datetime(2026, 11, 20, 12, 30, 6, tzinfo=UTC)) == 1
    finally:
        await db.dispose()


async def test_pruning_finds_its_bound_by_key_and_keeps_stragglers_right(
    db_settings: Settings,
) -> None:
    """Records have no time index: the prune bisects on `seq`. Forty days written a day
    at a time, a few records written late (out of time order, as batches of a fleet
    are), and records at the very bound: exactly those before it go."""
    db = create_database(db_settings)
    try:
        await migrate.upgrade(db)
        assert await usage.prune(db, DAY) == 0  # an empty table
        start = DAY - timedelta(days=40)
        bound = start + timedelta(days=30)
        # Finished just before the bound, written in the next batch (out of time order).
        late = [row(n, at=bound - timedelta(seconds=5)) for n in (10_000, 10_001)]
        number = 0
        for day in range(40):
            rows = late if day == 30 else []
            for minute in range(0, 24 * 60, 97):
                number += 1
                rows.append(row(number, at=start + timedelta(days=day, minutes=minute)))
            await usage.write(db, rows)
        await usage.write(db, [row(10_002, at=bound)])  # exactly at the bound: kept
        async with db.engine.connect() as conn:
            before = (await conn.execute(
                select(func.count()).select_from(usage_records).where(usage_records.c.at < bound)
            )).scalar()  # fmt: skip
            total = (await conn.execute(select(func.count()).select_from(usage_records))).scalar()
        assert await usage.prune(db, bound) == before
        async with db.engine.connect() as conn:
            left = (await conn.execute(select(usage_records.c.at))).scalars().all()
        assert len(left) == total - before
        assert min(left) == bound
        # Every record older than anything left: all of them go, the table's end is found.
        assert await usage.prune(db, DAY + timedelta(days=1)) == len(left)
    finally:
        await db.dispose()


async def test_the_sequence_key_migration_keeps_every_record(db_settings: Settings) -> None:
    """0009 rebuilds usage_records with a `seq` key: records written before it stay,
    numbered in time order, and going back down keeps them too."""
    db = create_database(db_settings)
    columns = ", ".join(usage.FIELDS)
    try:
        await migrate.upgrade(db, "0008")
        written = [row(3, at=DAY + timedelta(hours=2)), row(1), row(2, at=DAY + timedelta(hours=1))]
        stamp = (
            usage.sqlite_time
            if db.backend == "sqlite"
            else (lambda at: datetime.fromtimestamp(at, UTC))
        )
        marks = ", ".join(f":{name}" for name in usage.FIELDS)
        async with db.engine.begin() as conn:
            for record in written:
                values = {name: getattr(record, name) for name in usage.FIELDS}
                values["at"] = stamp(record.at)
                await conn.execute(
                    text(f"INSERT INTO usage_records ({columns}) VALUES ({marks})"), values
                )
        await migrate.upgrade(db)
        async with db.engine.connect() as conn:
            after = (await conn.execute(select(usage_records).order_by("seq"))).all()
        assert [r.id for r in after] == [f"{n:032x}" for n in (1, 2, 3)]
        assert after[0].cost == 0.5 and after[2].at == DAY + timedelta(hours=2)
        await usage.write(db, [row(4)])  # new records are numbered after them
        await migrate.downgrade(db, "0008")
        async with db.engine.connect() as conn:
            ids = [r[0] for r in await conn.execute(text("SELECT id FROM usage_records"))]
        assert sorted(ids) == [f"{n:032x}" for n in (1, 2, 3, 4)]
    finally:
        await db.dispose()
