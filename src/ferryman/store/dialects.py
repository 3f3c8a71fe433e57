"""The SQL dialect a backend speaks, imported when first asked for.

Upserts need the dialect's own `insert` (`ON CONFLICT`); naming both dialects at import
made a gateway on SQLite load PostgreSQL's dialect and its types (~2 MB resident) that it
never uses. Each is imported here on first use, once.
"""

from __future__ import annotations

import functools
import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.engine import Dialect


@functools.cache
def insert(backend: str) -> Any:
    """The backend's `insert` construct (with `on_conflict_do_update`/`_nothing`)."""
    return importlib.import_module(f"sqlalchemy.dialects.{_known(backend)}").insert


@functools.cache
def dialect(backend: str) -> Dialect:
    """The dialect the backend's async driver compiles for."""
    if _known(backend) == "postgresql":
        from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg

        return asyncpg()  # type: ignore[no-untyped-call]
    from sqlalchemy.dialects.sqlite.aiosqlite import dialect as aiosqlite

    return aiosqlite()


def _known(backend: str) -> str:
    if backend not in ("sqlite", "postgresql"):
        raise ValueError(f"no SQL dialect for backend {backend!r}")
    return backend
