"""Logs for a person at a terminal: readable lines, and a quiet start.

JSON is for log pipelines; someone who just ran `ferryman serve` in a terminal reads
lines, and needs one short block saying where the gateway listens and what to do next
(`ferryman.ready`) rather than the nine JSON lines of start-up chatter it replaces. So on
a terminal the events that block already tells are left out (at `debug` they show).
"""

from __future__ import annotations

import logging
from typing import BinaryIO

import structlog
from structlog.typing import EventDict, WrappedLogger

#: Ferryman's own start-up events whose facts the ready block shows.
QUIET_EVENTS = frozenset({"ferryman_started", "secret_generated"})

#: uvicorn's lifecycle lines, start and stop; what matters of them is in the ready block
#: (the address) or in `ferryman_stopped`.
QUIET_UVICORN = (
    "Started server process",
    "Started parent process",
    "Waiting for application startup.",
    "Application startup complete.",
    "Uvicorn running on",
    "Shutting down",
    "Waiting for application shutdown.",
    "Application shutdown complete.",
    "Finished server process",
    "Stopping parent process",
    "Waiting for child process",
    "Terminated child process",
)


def resolve_format(fmt: str, stream: BinaryIO) -> str:
    """`auto`: `console` when the stream is a terminal, else `json`."""
    if fmt != "auto":
        return fmt
    try:
        return "console" if stream.isatty() else "json"
    except (AttributeError, ValueError):  # no isatty, or already closed
        return "json"


def quiet_startup(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """structlog processor (console only): drop what the ready block says instead."""
    event = event_dict.get("event")
    if event in QUIET_EVENTS:
        raise structlog.DropEvent
    # A fresh database's first migration is part of a first start; an upgrade of an
    # existing one is news and stays.
    if event == "database_migrated" and event_dict.get("before") is None:
        raise structlog.DropEvent
    return event_dict


class QuietUvicorn(logging.Filter):
    """Leaves uvicorn's lifecycle lines out of the console (errors always pass)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO or not record.name.startswith("uvicorn"):
            return True
        return not record.getMessage().startswith(QUIET_UVICORN)


class ConsoleRenderer:
    """structlog's console renderer, without colours, making bytes like the JSON one;
    fields in the order they were given (a request line reads method, path, status...)."""

    def __init__(self) -> None:
        self._inner = structlog.dev.ConsoleRenderer(colors=False, sort_keys=False)

    def __call__(self, logger: WrappedLogger, name: str, event_dict: EventDict) -> bytes:
        return self._inner(logger, name, event_dict).encode()
