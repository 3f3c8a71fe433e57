"""Provider keys' figures per day (upstream_key_history) on SQLite and PostgreSQL alike:
the last reading of a day wins, the first usage stays, spend is told across days, rows go
with their key and with age, and migration 0011 goes up and down."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, inspect, select

from ferryman.errors import StorageError
from ferryman.store import key_history, migrate, users
from ferryman.store import upstream_keys as rows
from ferryman.store.engine import Database
from ferryman.store.tables import upstream_key_history
from ferryman.store.tables import users as users_table
from ferryman.store.upstream_keys import Snapshot, UpstreamKeyRow

DAY1 = datetime(2026, 3, 1, 10, tzinfo=UTC)


@pytest.fixture
async def db(database: Database) -> Database:
    await migrate.upgrade(database)
    return database


def key_row(now: datetime, owner_id: str | None = None) -> UpstreamKeyRow:
    return UpstreamKeyRow(
        id=str(uuid.uuid4()), upstream="openrouter", owner_id=owner_id, name="k",
        sealed_key="sealed", master_key_id="k1", prefix="sk-or-v1", last4="abcd", weight=1,
        enabled=True, state="healthy", state_until=None, last_error=None, last_error_at=None,
        last_checked_at=now, last_used_at=None, request_count=0, failure_count=0, usage=1.0,
        credit_limit=10.0, limit_remaining=9.0, credits_total=None, credits_used=None,
        synced_at=now, validated_at=now, created_at=now, updated_at=now,
    )  # fmt: skip


async def history_rows(db: Database) -> int:
    async with db.engine.connect() as conn:
        return int(
            (await conn.execute(select(func.count()).select_from(upstream_key_history))).scalar()
            or 0
        )


async def test_a_day_keeps_its_first_usage_and_its_last_reading(db: Database) -> None:
    row = key_row(DAY1)
    # Validating the key when it is added is the day's first reading.
    added = Snapshot(usage=1.0, credit_limit=10.0, limit_remaining=9.0, usage_daily=0.25)
    await rows.create(db, row, per_user_limit=None, reading=added)
    # A probe reads /key only: no account credit.
    probe = Snapshot(usage=1.2, credit_limit=10.0, limit_remaining=8.8, usage_daily=0.45)
    await rows.store_snapshot(db, row.id, probe, DAY1 + timedelta(hours=2))
    sync = Snapshot(
        usage=1.5, credit_limit=10.0, limit_remaining=8.5, credits_total=25.0,
        credits_used=4.0, usage_daily=0.75,
    )  # fmt: skip
    await rows.store_snapshot(db, row.id, sync, DAY1 + timedelta(hours=8))
    # The limit taken off the key: null means no limit, not "unknown".
    later = Snapshot(usage=1.6, credit_limit=None, limit_remaining=None, usage_daily=None)
    await rows.store_snapshot(db, row.id, later, DAY1 + timedelta(hours=10))

    stored = await rows.get(db, row.id)
    assert stored is not None
    assert (stored.usage, stored.credit_limit, stored.limit_remaining) == (1.6, None, None)
    # The last probe did not wipe the credit the sync read.
    assert (stored.credits_total, stored.credits_used) == (25.0, 4.0)
    assert stored.synced_at == DAY1 + timedelta(hours=10)

    (day,) = (await key_history.days(db, [row.id], None, None))[row.id]
    assert day.day == date(2026, 3, 1)
    assert (day.usage_first, day.usage, day.spend) == (1.0, 1.6, 0.6)
    assert day.usage_daily == 0.75  # kept: the last reading did not say
    assert (day.credit_limit, day.limit_remaining) == (None, None)
    assert (day.credits_total, day.credits_used) == (25.0, 4.0)
    assert day.readings == 4
    assert (day.first_synced_at, day.synced_at) == (DAY1, DAY1 + timedelta(hours=10))


async def test_spend_across_days_gaps_and_ranges(db: Database) -> None:
    row = key_row(DAY1)
    await rows.create(db, row, per_user_limit=None)
    readings = [
        (DAY1, 1.0),
        (DAY1 + timedelta(hours=12), 1.6),
        (DAY1 + timedelta(days=1), 2.0),  # day 2: since day 1's last reading
        (DAY1 + timedelta(days=3), 3.0),  # day 4, after a day without readings
        (DAY1 + timedelta(days=3, hours=10), 3.5),
        (DAY1 + timedelta(days=4), 3.25),  # day 5: usage went down, no spend to tell
    ]
    for at, usage in readings:
        await rows.store_snapshot(db, row.id, Snapshot(usage=usage), at)
    other = key_row(DAY1)
    await rows.create(db, other, per_user_limit=None)

    every = await key_history.days(db, [row.id, other.id], None, None)
    assert every[other.id] == []
    days = every[row.id]
    assert [d.day.day for d in days] == [1, 2, 4, 5]
    assert [d.spend for d in days] == [0.6, 0.4, 0.5, None]
    assert [d.readings for d in days] == [2, 1, 2, 1]

    # A range starting on day 2 still measures day 2 from day 1's last reading.
    ranged = (await key_history.days(db, [row.id], date(2026, 3, 2), date(2026, 3, 4)))[row.id]
    assert [(d.day.day, d.spend) for d in ranged] == [(2, 0.4), (4, 0.5)]
    assert await key_history.days(db, [], None, None) == {}

    # Retention: days before the bound go, the rest stay.
    assert await key_history.prune(db, date(2026, 3, 4)) == 2
    assert [d.day.day for d in (await key_history.days(db, [row.id], None, None))[row.id]] == [
        4,
        5,
    ]


async def test_history_goes_with_its_key(db: Database) -> None:
    owner = await users.create(db, username="ann", password_hash="h", now=DAY1)
    row = key_row(DAY1, owner.id)
    await rows.create(db, row, per_user_limit=5, reading=Snapshot(usage=1.0))
    kept = key_row(DAY1)
    await rows.create(db, kept, per_user_limit=None, reading=Snapshot(usage=2.0))
    assert await history_rows(db) == 2
    assert await rows.delete(db, row.id)
    assert await history_rows(db) == 1
    # A reading that arrives after its key was deleted is dropped, not an error.
    await rows.store_snapshot(db, row.id, Snapshot(usage=3.0), DAY1 + timedelta(hours=1))
    assert await history_rows(db) == 1
    # And deleting the owner deletes their keys, and so their history.
    again = key_row(DAY1, owner.id)
    await rows.create(db, again, per_user_limit=5, reading=Snapshot(usage=1.0))
    async with db.engine.begin() as conn:
        await conn.execute(users_table.delete().where(users_table.c.id == owner.id))
    assert await history_rows(db) == 1


async def tables(db: Database) -> set[str]:
    async with db.engine.connect() as conn:
        return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))


async def test_migration_0011_up_and_down(database: Database) -> None:
    await migrate.upgrade(database, "0010")
    assert "upstream_key_history" not in await tables(database)
    await migrate.upgrade(database, "0011")
    assert await migrate.current(database) == "0011"
    assert "upstream_key_history" in await tables(database)
    # A username as long as an email address fits (registration by email alone).
    long_name = "a" * 60 + "@" + "b" * 60 + ".example.com"
    user = await users.create(database, username=long_name, password_hash="h", now=DAY1)
    assert (await users.get(database, user.id)) == user
    if database.backend == "postgresql":
        # The older schema cannot hold it: going down fails and changes nothing.
        with pytest.raises(StorageError, match="too long"):
            await migrate.downgrade(database, "0010")
        assert await migrate.current(database) == "0011"
        async with database.engine.begin() as conn:
            await conn.execute(users_table.delete().where(users_table.c.id == user.id))
    await migrate.downgrade(database, "0010")
    assert await migrate.current(database) == "0010"
    assert "upstream_key_history" not in await tables(database)
    await migrate.upgrade(database, "0011")
    assert "upstream_key_history" in await tables(database)
