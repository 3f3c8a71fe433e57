"""A backend's SQL dialect is loaded when first used, and only that backend's."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ferryman.store import dialects


def test_a_gateway_on_sqlite_never_loads_the_postgresql_dialect() -> None:
    probe = (
        "import sys, ferryman.app; from ferryman.store import dialects;"
        "dialects.insert('sqlite'); dialects.dialect('sqlite');"
        "print(sorted(m for m in sys.modules if m.startswith('sqlalchemy.dialects.postgres')))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_each_backend_has_its_own_upsert_and_an_unknown_one_is_refused() -> None:
    assert dialects.insert("postgresql").__module__.startswith("sqlalchemy.dialects.postgresql")
    assert dialects.insert("sqlite").__module__.startswith("sqlalchemy.dialects.sqlite")
    assert dialects.dialect("postgresql").driver == "asyncpg"
    assert dialects.dialect("sqlite").driver == "aiosqlite"
    with pytest.raises(ValueError, match="mysql"):
        dialects.insert("mysql")
