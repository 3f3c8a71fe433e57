"""Usage batches on SQLite through a connection of their own: the same rows as the
engine writes, one transaction per batch, and a locked file waited for off the loop."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from ferryman.config.settings import Settings
from ferryman.store import migrate, usage
from ferryman.store.engine import Database, create_database
from ferryman.store.tables import usage_daily, usage_daily_totals, usage_records
from ferryman.store.usage_sqlite import SqliteUsage
from tests.metering.test_usage_store import DAY, row

BATCHES = [
    [row(1), row(2, status=502), row(3, cost=None, model=None, user=None)],
    [row(4, at=DAY.replace(day=21)), row(5, model="other"), row(6, user="u2")],
]


async def contents(db: Database) -> dict[str, list[Any]]:
    async with db.engine.connect() as conn:
        return {
            table.name: sorted(map(tuple, (await conn.execute(select(table))).all()), key=str)
            for table in (usage_records, usage_daily, usage_daily_totals)
        }


async def test_writes_what_the_engine_writes(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    through_engine = create_database(settings_factory(database_url=f"sqlite:///{tmp_path}/a.db"))
    direct = create_database(settings_factory(database_url=f"sqlite:///{tmp_path}/b.db"))
    writer = SqliteUsage.of(direct)
    assert writer is not None
    try:
        for db in (through_engine, direct):
            await migrate.upgrade(db)
        for rows in BATCHES:
            await usage.write(through_engine, rows)
            await writer.write(rows)
        expected = await contents(through_engine)
        assert len(expected["usage_records"]) == 6 and len(expected["usage_daily"]) == 5
        assert await contents(direct) == expected
    finally:
        await writer.close()
        await through_engine.dispose()
        await direct.dispose()


async def test_a_failed_batch_leaves_nothing_and_the_next_one_goes_in(settings: Settings) -> None:
    db = create_database(settings)
    writer = SqliteUsage.of(db)
    assert writer is not None
    try:
        await migrate.upgrade(db)
        bad = [row(1), row(2)._replace(route=None)]  # type: ignore[arg-type]  # NOT NULL
        with pytest.raises(sqlite3.IntegrityError):
            await writer.write(bad)
        assert await contents(db) == {
            "usage_records": [],
            "usage_daily": [],
            "usage_daily_totals": [],
        }
        await writer.write([row(3)])
        assert [r[1] for r in (await contents(db))["usage_records"]] == [f"{3:032x}"]
    finally:
        await writer.close()
        await db.dispose()


async def test_a_write_lock_held_elsewhere_is_waited_for_off_the_event_loop(
    settings: Settings,
) -> None:
    db = create_database(settings)
    writer = SqliteUsage.of(db)
    assert writer is not None
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    try:
        await migrate.upgrade(db)
        ticker = asyncio.create_task(tick())
        async with db.engine.connect() as conn:
            await conn.execute(text("BEGIN IMMEDIATE"))  # the engine holds the write lock
            started = time.monotonic()
            write = asyncio.create_task(writer.write([row(1)]))
            await asyncio.sleep(0.3)
            assert not write.done()  # waiting for the lock...
            before = ticks
            await conn.execute(text("COMMIT"))
        await write
        waited = time.monotonic() - started
        ticker.cancel()
        assert waited >= 0.3 and before >= 15  # ...while the loop kept running
        assert len((await contents(db))["usage_records"]) == 1
    finally:
        await writer.close()
        await db.dispose()


def test_only_a_sqlite_file_is_written_directly(settings_factory: Callable[..., Settings]) -> None:
    memory = create_database(settings_factory(database_url="sqlite:///:memory:"))
    uri = create_database(settings_factory(database_url="sqlite:///x.db?mode=ro&uri=true"))
    postgres = create_database(settings_factory(database_url="postgresql://u@127.0.0.1:9/db"))
    assert [SqliteUsage.of(db) for db in (memory, uri, postgres)] == [None, None, None]
