"""The log format: JSON into files and pipes, readable lines on a terminal."""

from __future__ import annotations

import io
import logging
import os
import pty

import pytest
import structlog

from ferryman.observability.console import QuietUvicorn, quiet_startup, resolve_format


def test_auto_is_console_on_a_terminal_and_json_elsewhere() -> None:
    primary, secondary = pty.openpty()
    try:
        with os.fdopen(secondary, "wb", closefd=False) as terminal:
            assert resolve_format("auto", terminal) == "console"  # type: ignore[arg-type]
            assert resolve_format("json", terminal) == "json"  # type: ignore[arg-type]
    finally:
        os.close(primary)
        os.close(secondary)
    assert resolve_format("auto", io.BytesIO()) == "json"
    assert resolve_format("console", io.BytesIO()) == "console"
    closed = io.BytesIO()
    closed.close()
    assert resolve_format("auto", closed) == "json"


def test_the_ready_block_replaces_the_start_up_events() -> None:
    for event in ("ferryman_started", "secret_generated"):
        with pytest.raises(structlog.DropEvent):
            quiet_startup(None, "info", {"event": event})
    with pytest.raises(structlog.DropEvent):
        quiet_startup(None, "info", {"event": "database_migrated", "before": None})
    upgrade = {"event": "database_migrated", "before": "0009", "after": "0010"}
    assert quiet_startup(None, "info", dict(upgrade)) == upgrade
    assert quiet_startup(None, "info", {"event": "request"}) == {"event": "request"}


def record(name: str, message: str, level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, None, None)


def test_uvicorns_lifecycle_lines_stay_out_but_its_errors_do_not() -> None:
    quiet = QuietUvicorn()
    assert not quiet.filter(record("uvicorn.error", "Uvicorn running on http://x:1"))
    assert not quiet.filter(record("uvicorn.error", "Application startup complete."))
    assert quiet.filter(record("uvicorn.error", "Waiting for connections to close."))
    assert quiet.filter(record("uvicorn.error", "Shutting down", logging.ERROR))
    assert quiet.filter(record("alembic", "Started server process"))
