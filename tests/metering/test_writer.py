"""The usage writer: a full queue drops and counts, unpriced models are counted, and a
failed write keeps its records for the next round."""

from __future__ import annotations

import contextlib
import sqlite3

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from ferryman.config.settings import Settings
from ferryman.metering.pricing import PriceTable
from ferryman.metering.writer import UsageWriter
from ferryman.observability.metrics import LocalMetrics
from ferryman.store import migrate
from ferryman.store.engine import create_database
from ferryman.store.tables import usage_records
from tests.metering.test_usage_store import row


async def test_drops_unpriced_and_a_failed_write(settings: Settings) -> None:
    db = create_database(settings)
    metrics = LocalMetrics()
    try:
        await migrate.upgrade(db)
        writer = UsageWriter(db, PriceTable(), metrics, capacity=3, batch=10)
        for n in range(5):
            writer.add(row(n)._replace(cost=None))  # model "m" is in no price table
        assert (writer.queued, writer.dropped) == (3, 2)
        await writer.flush()
        assert (writer.written, writer.unpriced) == (3, 3)
        assert metrics.usage == {"dropped": 2, "unpriced": 3, "written": 3}
        body, _ = metrics.render()
        assert b'ferryman_usage_records_total{outcome="dropped"} 2.0' in body

        writer.add(row(10))
        writer.add(row(11)._replace(route=None))  # type: ignore[arg-type]  # NOT NULL: fails
        with pytest.raises((IntegrityError, sqlite3.IntegrityError)):
            await writer.flush()
        assert writer.queued == 2  # kept for the next round, in order
        async with db.engine.connect() as conn:
            count = (await conn.execute(select(func.count()).select_from(usage_records))).scalar()
        assert count == 3  # nothing of the failed batch was written
    finally:
        with contextlib.suppress(IntegrityError, sqlite3.IntegrityError):
            await writer.stop()  # the bad row fails once more
        await db.dispose()
