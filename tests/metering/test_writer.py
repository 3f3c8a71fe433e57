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
from ferryman.metering.reading import Reading
from ferryman.metering.writer import UsageWriter
from ferryman.observability.access_log import Record
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


def access_record(n: int) -> Record:
    cid = f"{n:032x}"
    return (
        1_763_640_000.0 + n, 20, "POST", b"/v1/chat/completions", b"", "llm", 200, 0.01,
        "up", 0.002, 0.009, 80, 500, cid, "127.0.0.1", "u1", "k1", None, "p1", 1, None,
    )  # fmt: skip


async def test_records_are_made_rows_oldest_first_in_slices(settings: Settings) -> None:
    db = create_database(settings)
    try:
        writer = UsageWriter(db, PriceTable(), capacity=10, batch=100)
        answer = b'{"model": "m", "usage": {"prompt_tokens": 3, "completion_tokens": 4}}'
        for n in range(5):
            reading = Reading(b'{"model": "asked"}')
            reading.answer(answer)
            writer.record(access_record(n), reading)
        writer.record(access_record(5), None)  # a route metered without usage (http)
        writer.settle(2)
        assert (len(writer._pending), len(writer._queue)) == (4, 2)
        writer.settle()
        rows = list(writer._queue)
        assert [r.id for r in rows] == [f"{n:032x}" for n in range(6)]
        assert rows[0].model == "m" and rows[0].total_tokens == 7 and rows[0].duration_ms == 10.0
        assert rows[5].model is None and rows[5].prompt_tokens is None
        assert (writer.unpriced, rows[0].user_id, rows[0].upstream_key_id) == (5, "u1", "p1")
    finally:
        await db.dispose()
