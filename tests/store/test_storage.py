"""The storage foundation on SQLite and PostgreSQL: engine, migrations, a repository."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from ferryman.config.settings import Settings
from ferryman.errors import ConfigError, StorageError
from ferryman.store import meta, migrate
from ferryman.store.engine import Database, create_database, normalise_url


async def table_names(db: Database) -> set[str]:
    async with db.engine.connect() as conn:
        return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))


async def test_migrations_go_up_and_down_and_are_idempotent(database: Database) -> None:
    assert await migrate.current(database) is None
    before, after = await migrate.upgrade(database)
    assert (before, after) == (None, migrate.head_revision())
    assert "ferryman_meta" in await table_names(database)
    assert await migrate.upgrade(database) == (after, after)
    assert await migrate.downgrade(database, "base") == (after, None)
    assert "ferryman_meta" not in await table_names(database)
    await migrate.upgrade(database)
    assert await migrate.current(database) == migrate.head_revision()


def test_the_head_constant_is_alembics_head() -> None:
    """`HEAD` saves a serving process from importing Alembic; it must name the newest
    script (add a migration: move `HEAD` with it)."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(migrate.alembic_config())
    assert script.get_current_head() == migrate.HEAD


def test_a_serving_process_never_imports_alembic() -> None:
    """Reading the revision and building the app leave Alembic and Mako unloaded."""
    import subprocess
    import sys

    code = (
        "import sys, asyncio, tempfile\n"
        "from ferryman.app import Ferryman\n"
        "from ferryman.config.settings import Settings\n"
        "from ferryman.store import migrate\n"
        "from ferryman.store.engine import create_database\n"
        "db = create_database(Settings(_env_file=None, data_dir=tempfile.mkdtemp()))\n"
        "print(asyncio.run(migrate.current(db)), migrate.head_revision())\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('alembic', 'mako')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"None {migrate.HEAD}", "[]"]


def test_a_start_on_a_database_at_head_does_not_import_alembic(tmp_path: Path) -> None:
    """The app migrates at every start when run outside `ferryman serve` (which does it
    in a forked child), e.g. `uvicorn --factory ferryman.app:create_app`: on a database
    already at the newest revision that is one query, and Alembic (with Mako, ~11 MB)
    stays out of the process."""
    import subprocess
    import sys

    code = (
        "import sys, asyncio\n"
        "from ferryman.config.settings import Settings\n"
        "from ferryman.store import migrate\n"
        "from ferryman.store.engine import create_database\n"
        f"db = create_database(Settings(_env_file=None, data_dir={str(tmp_path)!r}))\n"
        "print(*asyncio.run(migrate.upgrade(db)))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('alembic', 'mako')))\n"
    )
    run = [sys.executable, "-c", code]
    first = subprocess.run(run, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines()[-2] == f"None {migrate.HEAD}"  # migrated: Alembic ran
    again = subprocess.run(run, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[-2:] == [f"{migrate.HEAD} {migrate.HEAD}", "[]"]


async def test_concurrent_migrators_do_not_collide(db_settings: Settings) -> None:
    databases = [create_database(db_settings) for _ in range(4)]
    try:
        results = await asyncio.gather(*(migrate.upgrade(db) for db in databases))
    finally:
        for db in databases:
            await db.dispose()
    head = migrate.head_revision()
    assert sorted(results, key=str) == sorted([(None, head)] + [(head, head)] * 3, key=str)


async def test_meta_values_round_trip(database: Database) -> None:
    await migrate.upgrade(database)
    assert await meta.get(database, "colour") is None
    await meta.put(database, "colour", "blue")
    await meta.put(database, "colour", "green")
    assert await meta.get(database, "colour") == "green"
    first = await meta.installation_id(database)
    assert await meta.installation_id(database) == first
    assert len(first) == 32


async def test_ping_reports_the_backend(database: Database) -> None:
    assert (await database.ping())["backend"] == database.backend


async def test_sqlite_runs_in_wal_mode_in_the_data_dir(settings: Settings) -> None:
    db = create_database(settings)
    try:
        async with db.engine.connect() as conn:
            mode = (await conn.execute(text("PRAGMA journal_mode"))).scalar_one()
            keys = (await conn.execute(text("PRAGMA foreign_keys"))).scalar_one()
        assert mode == "wal"
        assert keys == 1
        assert Path(db.url.database or "").parent == settings.data_dir.resolve()
    finally:
        await db.dispose()


def test_urls_are_mapped_to_async_drivers() -> None:
    assert normalise_url("sqlite:///x.db")[0].drivername == "sqlite+aiosqlite"
    assert normalise_url("postgres://u@h/db")[0].drivername == "postgresql+asyncpg"
    assert normalise_url("postgresql://u@h/db")[1] == "postgresql"
    with pytest.raises(ConfigError, match="unsupported database 'mysql'"):
        normalise_url("mysql://u@h/db")
    with pytest.raises(ConfigError, match="not async"):
        normalise_url("postgresql+psycopg2://u@h/db")
    with pytest.raises(ConfigError, match="not a database URL"):
        normalise_url("::::")


async def test_an_unreachable_database_is_a_clear_storage_error(
    settings_factory: object,
) -> None:
    settings = settings_factory(  # type: ignore[operator]
        database_url="postgresql+asyncpg://nobody:secretpw@127.0.0.1:1/none"
    )
    db = create_database(settings)
    try:
        with pytest.raises(StorageError) as info:
            await migrate.upgrade(db)
    finally:
        await db.dispose()
    assert "secretpw" not in str(info.value)
    assert "127.0.0.1:1" in str(info.value)
