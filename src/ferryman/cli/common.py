"""What the `ferryman` commands share: error reporting, settings from options, the
identity services on the configured database."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import wraps
from typing import TYPE_CHECKING, ParamSpec, TypeVar

import click

from ferryman.config.loading import load_settings
from ferryman.errors import FerrymanError
from ferryman.observability.logging import configure_logging

if TYPE_CHECKING:
    from ferryman.auth.services import Auth

P = ParamSpec("P")
R = TypeVar("R")

EXIT_ERROR = 1


def friendly(func: Callable[P, R]) -> Callable[P, R]:
    """Report Ferryman's own errors as one readable message, never a traceback."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except FerrymanError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_ERROR)

    return wrapper


def export(**values: object) -> None:
    """Command-line options win over the environment, in this process and its workers."""
    for name, value in values.items():
        if value is not None:
            os.environ[f"FERRYMAN_{name.upper()}"] = str(value)


@asynccontextmanager
async def identity() -> AsyncIterator[Auth]:
    """The identity services on the configured database (migrated first if allowed)."""
    from ferryman.auth.services import Auth
    from ferryman.clock import Clock
    from ferryman.config.secrets import ensure_secrets
    from ferryman.store import migrate
    from ferryman.store.engine import create_database

    settings = load_settings()
    configure_logging("warning", settings.log_format, stream=sys.stderr.buffer)
    secrets = ensure_secrets(settings)
    database = create_database(settings)
    try:
        await migrate.prepare(database, settings.migrate_on_start)
        yield Auth(database, settings, secrets, Clock())
    finally:
        await database.dispose()


def read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    password: str = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return password
