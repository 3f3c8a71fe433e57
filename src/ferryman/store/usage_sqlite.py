"""Usage batches on SQLite, written on a connection of their own in one thread call.

Through the async engine a batch costs a dozen hops between the event loop and
aiosqlite's thread (the pool's ping, begin, the insert, each upsert, commit), each a
pair of context switches; on a busy gateway those switches, and the CPU caches they
empty, cost the proxy more than the writing itself. Here the whole transaction is one
call on a thread of its own; the upserts are the engine path's own statements, compiled
once for SQLite. The file is the engine's: WAL lets the two connections share it, and a
write the other connection holds up waits in this thread (`busy_timeout`), not on the
event loop.

The records go in as multi-row INSERTs of `ROWS_PER_INSERT` rows, not an executemany:
the driver lets go of the GIL around every statement it steps, and with the event loop
wanting it back each time, one statement per record cost more (in thread switches) than
the insert itself.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import Table

from ferryman.store import dialects
from ferryman.store.engine import SQLITE_PRAGMAS, Database
from ferryman.store.tables import usage_daily, usage_daily_totals
from ferryman.store.usage import (
    DAILY_KEYS,
    TOTALS_KEYS,
    UsageRow,
    batch,
    insert_sql,
    upsert,
)


def _compiled(table: Table, keys: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    """The upsert's SQL for SQLite and the order of its parameters."""
    compiled = upsert("sqlite", table, keys).compile(dialect=dialects.dialect("sqlite"))
    return str(compiled), tuple(compiled.positiontup or ())


#: Records per INSERT statement: 50 times 19 parameters stays under SQLite's historical
#: limit of 999 bound variables.
ROWS_PER_INSERT = 50


def _insert_many(count: int) -> str:
    """The records' INSERT with `count` rows of values."""
    head, _, values = insert_sql("sqlite").partition(" VALUES ")
    return f"{head} VALUES {', '.join([values] * count)}"


def _values(rows: list[dict[str, Any]], order: tuple[str, ...]) -> list[tuple[Any, ...]]:
    # A date as SQLAlchemy stores it in SQLite: ISO text.
    return [tuple(r[k].isoformat() if k == "day" else r[k] for k in order) for r in rows]


class SqliteUsage:
    """Writes usage batches into one SQLite file; `close` when done."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="usage-sqlite")
        self._conn: sqlite3.Connection | None = None  # opened, used and closed in _thread
        self._full_insert = _insert_many(ROWS_PER_INSERT)
        self._daily = _compiled(usage_daily, DAILY_KEYS)
        self._totals = _compiled(usage_daily_totals, TOTALS_KEYS)

    @classmethod
    def of(cls, db: Database) -> SqliteUsage | None:
        """For a SQLite database in a plain file; None for anything else (PostgreSQL, an
        in-memory or URI-configured database), which the engine writes."""
        path = db.url.database
        if db.backend != "sqlite" or not path or path == ":memory:" or db.url.query:
            return None
        return cls(path)

    async def write(self, rows: Sequence[UsageRow]) -> None:
        if not rows:
            return
        records, daily, totals = batch("sqlite", rows)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._thread, self._write, records, daily, totals)

    def _write(
        self,
        records: list[tuple[Any, ...]],
        daily: list[dict[str, Any]],
        totals: list[dict[str, Any]],
    ) -> None:
        conn = self._conn
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None)
            for pragma in SQLITE_PRAGMAS:
                conn.execute(pragma)
            self._conn = conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            for start in range(0, len(records), ROWS_PER_INSERT):
                part = records[start : start + ROWS_PER_INSERT]
                sql = self._full_insert if len(part) == ROWS_PER_INSERT else _insert_many(len(part))
                conn.execute(sql, [value for record in part for value in record])
            (daily_sql, daily_order), (totals_sql, totals_order) = self._daily, self._totals
            conn.executemany(daily_sql, _values(daily, daily_order))
            conn.executemany(totals_sql, _values(totals, totals_order))
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._thread, self._close)
        self._thread.shutdown(wait=True)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
