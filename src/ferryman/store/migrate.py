"""Applying Alembic migrations, safely when several processes start at once.

On PostgreSQL a transaction-scoped advisory lock serialises migrators; on SQLite an
exclusive lock on a file beside the database does. Both backends run DDL inside one
transaction, so an interrupted upgrade leaves the previous revision in place.

Alembic (and Mako with it, 11 MB of memory) is imported only to change the schema: a
serving process only reads which revision the database is at, with plain SQL, and
compares it with `HEAD`.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import Connection, inspect, text
from sqlalchemy.exc import SQLAlchemyError

from ferryman.errors import StorageError
from ferryman.store.engine import Database

log = structlog.get_logger("ferryman.migrate")

MIGRATIONS = Path(__file__).parent / "migrations"
_ADVISORY_LOCK = 0x66657272  # "ferr"

#: The newest revision in `migrations/versions` (a test checks it against Alembic's).
HEAD = "0014"


def alembic_config() -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str | None:
    """The newest revision this version of Ferryman knows."""
    return HEAD


def _current(connection: Connection) -> str | None:
    """The revision recorded in Alembic's table (None when never migrated)."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    versions = connection.execute(text("SELECT version_num FROM alembic_version")).scalars()
    found = list(versions)
    if len(found) > 1:
        raise StorageError(f"the database records several revisions: {', '.join(found)}")
    return found[0] if found else None


def _run(connection: Connection, direction: str, revision: str) -> None:
    from alembic import command

    config = alembic_config()
    config.attributes["connection"] = connection
    if direction == "upgrade":
        command.upgrade(config, revision)
    else:
        command.downgrade(config, revision)


@asynccontextmanager
async def _file_lock(db: Database) -> AsyncIterator[None]:
    database = db.url.database
    if db.backend != "sqlite" or not database or database == ":memory:":
        yield
        return
    path = f"{database}.migrate.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


async def _migrate(db: Database, direction: str, revision: str) -> tuple[str | None, str | None]:
    try:
        async with _file_lock(db), db.engine.begin() as conn:
            if db.backend == "postgresql":
                await conn.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK}
                )
                if db.schema:
                    await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{db.schema}"'))
            before = await conn.run_sync(_current)
            if direction == "upgrade" and revision in ("head", HEAD) and before == HEAD:
                # An app started outside `ferryman serve` (which migrates in a forked
                # child) asks this at every start: answered without importing Alembic
                # and Mako, which would stay in its memory for nothing.
                return before, before
            await conn.run_sync(_run, direction, revision)
            after = await conn.run_sync(_current)
    except (SQLAlchemyError, OSError) as exc:
        raise StorageError(
            f"cannot migrate {db.display_url}: {type(exc).__name__}: {exc}".splitlines()[0]
        ) from exc
    if before != after:
        log.info("database_migrated", direction=direction, before=before, after=after)
    return before, after


async def upgrade(db: Database, revision: str = "head") -> tuple[str | None, str | None]:
    """Apply migrations up to `revision`; returns the revisions before and after."""
    return await _migrate(db, "upgrade", revision)


async def downgrade(db: Database, revision: str) -> tuple[str | None, str | None]:
    """Revert migrations down to `revision` (`base` for none)."""
    return await _migrate(db, "downgrade", revision)


async def current(db: Database) -> str | None:
    """The revision the database is at (None when never migrated)."""
    try:
        async with db.engine.connect() as conn:
            return await conn.run_sync(_current)
    except (SQLAlchemyError, OSError) as exc:
        raise StorageError(f"cannot reach {db.display_url}: {type(exc).__name__}: {exc}") from exc


async def prepare(db: Database, migrate_now: bool) -> None:
    """Migrate to the newest schema, or check the database is already there."""
    if migrate_now:
        await upgrade(db)
        return
    at, head = await current(db), head_revision()
    if at != head:
        raise StorageError(
            f"the database schema is at {at or 'nothing'} but this Ferryman needs {head}: "
            "run `ferryman migrate`"
        )
