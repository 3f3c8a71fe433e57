"""The SQLAlchemy async engine, for SQLite (default) or PostgreSQL.

Backends are chosen by URL scheme and their drivers imported only when used, so the
PostgreSQL driver stays an optional extra.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ferryman.config.settings import Settings
from ferryman.errors import ConfigError

Backend = Literal["sqlite", "postgresql"]

_DRIVERS: dict[Backend, tuple[str, str, str]] = {
    # backend: (SQLAlchemy driver name, module to import, extra that provides it)
    "sqlite": ("aiosqlite", "aiosqlite", "ferryman"),
    "postgresql": ("asyncpg", "asyncpg", "ferryman[postgres]"),
}

SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=5000",
)


@dataclass(frozen=True)
class Database:
    """An engine and what it talks to."""

    engine: AsyncEngine
    backend: Backend
    url: URL
    schema: str | None = None

    @property
    def display_url(self) -> str:
        """The URL with any password hidden, fit for logs and health details."""
        return self.url.render_as_string(hide_password=True)

    async def ping(self) -> dict[str, Any]:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return {"backend": self.backend}

    async def dispose(self) -> None:
        await self.engine.dispose()


def normalise_url(raw: str) -> tuple[URL, Backend]:
    """Map `sqlite://`, `postgres://` and `postgresql://` to their async drivers."""
    try:
        url = make_url(raw)
    except ArgumentError:
        raise ConfigError(f"FERRYMAN_DATABASE_URL: not a database URL: {raw!r}") from None
    backend_name = url.get_backend_name()
    backend: Backend
    if backend_name == "sqlite":
        backend = "sqlite"
    elif backend_name in ("postgresql", "postgres"):
        backend = "postgresql"
    else:
        raise ConfigError(
            f"FERRYMAN_DATABASE_URL: unsupported database {backend_name!r} "
            "(use sqlite or postgresql)"
        )
    driver, module, extra = _DRIVERS[backend]
    if "+" in url.drivername and url.get_driver_name() != driver:
        raise ConfigError(
            f"FERRYMAN_DATABASE_URL: driver {url.get_driver_name()!r} is not async; "
            f"use {backend}+{driver}://"
        )
    if importlib.util.find_spec(module) is None:
        raise ConfigError(f"the {backend} driver is not installed: pip install '{extra}'")
    return url.set(drivername=f"{backend}+{driver}"), backend


def create_database(settings: Settings) -> Database:
    """The engine for these settings; nothing connects until first use."""
    url, backend = normalise_url(settings.resolved_database_url)
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if backend == "sqlite":
        database = url.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, **kwargs)

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_connection: Any, _: Any) -> None:
            cursor = dbapi_connection.cursor()
            for pragma in SQLITE_PRAGMAS:
                cursor.execute(pragma)
            cursor.close()

        return Database(engine=engine, backend=backend, url=url)

    connect_args: dict[str, Any] = {}
    if settings.database_schema:
        connect_args["server_settings"] = {"search_path": settings.database_schema}
    engine = create_async_engine(
        url,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_pool_size,
        connect_args=connect_args,
        **kwargs,
    )
    return Database(engine=engine, backend=backend, url=url, schema=settings.database_schema)
