"""The `ferryman` command."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, ParamSpec, TypeVar

import click

from ferryman import __version__
from ferryman.config.loading import load_gateway_file, load_settings
from ferryman.errors import FerrymanError
from ferryman.observability.logging import configure_logging

if TYPE_CHECKING:
    from ferryman.auth.services import Auth

P = ParamSpec("P")
R = TypeVar("R")

EXIT_ERROR = 1


def _friendly(func: Callable[P, R]) -> Callable[P, R]:
    """Report Ferryman's own errors as one readable message, never a traceback."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except FerrymanError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_ERROR)

    return wrapper


def _export(**values: object) -> None:
    """Command-line options win over the environment, in this process and its workers."""
    for name, value in values.items():
        if value is not None:
            os.environ[f"FERRYMAN_{name.upper()}"] = str(value)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="ferryman")
def main() -> None:
    """Ferryman: a self-hosted access gateway for HTTP APIs.

    Settings come from FERRYMAN_* environment variables (and a .env file); the
    gateway's upstreams and routes from the YAML file given by --config or
    FERRYMAN_CONFIG. Without one, the built-in OpenRouter gateway is served.
    """


@main.command()
@click.option(
    "--config", "-c", type=click.Path(dir_okay=False, path_type=Path),
    help="Gateway YAML file (default: FERRYMAN_CONFIG, else the built-in OpenRouter gateway).",
)  # fmt: skip
@click.option("--host", help="Address to bind (default: FERRYMAN_HOST or 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), help="Port (default: 8080).")
@click.option("--workers", type=click.IntRange(1, 256), help="Worker processes (default: 1).")
@_friendly
def serve(config: Path | None, host: str | None, port: int | None, workers: int | None) -> None:
    """Run the gateway until SIGTERM or Ctrl-C.

    Start-up checks the configuration, generates missing secrets into the data
    directory, and applies database migrations (unless FERRYMAN_MIGRATE_ON_START is
    false). On SIGTERM, in-flight requests get FERRYMAN_SHUTDOWN_GRACE seconds to end.
    """
    from ferryman.server import serve as run

    _export(config=config.resolve() if config else None, host=host, port=port, workers=workers)
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    run(settings)


@main.command("check-config")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@_friendly
def check_config(file: Path) -> None:
    """Validate a gateway YAML file and report every problem with its field path."""
    gateway = load_gateway_file(file)
    for warning in gateway.warnings():
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"{file}: OK ({len(gateway.upstreams)} upstreams, {len(gateway.routes)} routes)")


@main.command()
@click.option("--revision", default="head", show_default=True, help="Upgrade to this revision.")
@click.option("--downgrade", "down_to", metavar="REVISION", help="Revert to this revision.")
@click.option("--status", is_flag=True, help="Only show the current and newest revisions.")
@_friendly
def migrate(revision: str, down_to: str | None, status: bool) -> None:
    """Apply database migrations (FERRYMAN_DATABASE_URL, default SQLite in the data dir)."""
    from ferryman.store import migrate as migrations
    from ferryman.store.engine import create_database

    settings = load_settings()
    configure_logging("warning", settings.log_format, stream=sys.stderr.buffer)

    async def run() -> str:
        database = create_database(settings)
        try:
            if status:
                at = await migrations.current(database)
                head = migrations.head_revision()
                state = "up to date" if at == head else "migrations pending"
                return f"{database.display_url}: at {at or 'nothing'}, newest {head} ({state})"
            if down_to:
                before, after = await migrations.downgrade(database, down_to)
            else:
                before, after = await migrations.upgrade(database, revision)
            if before == after:
                return f"{database.display_url}: already at {after or 'nothing'}"
            return f"{database.display_url}: {before or 'nothing'} -> {after or 'nothing'}"
        finally:
            await database.dispose()

    click.echo(asyncio.run(run()))


@asynccontextmanager
async def _identity() -> AsyncIterator[Auth]:
    """The identity services on the configured database (migrated first if allowed)."""
    from ferryman.app import prepare_database
    from ferryman.auth.services import Auth
    from ferryman.clock import Clock
    from ferryman.config.secrets import ensure_secrets
    from ferryman.store.engine import create_database

    settings = load_settings()
    configure_logging("warning", settings.log_format, stream=sys.stderr.buffer)
    secrets = ensure_secrets(settings)
    database = create_database(settings)
    try:
        await prepare_database(database, settings.migrate_on_start)
        yield Auth(database, settings, secrets, Clock())
    finally:
        await database.dispose()


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    password: str = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return password


@main.group()
def admin() -> None:
    """Administrator accounts."""


@admin.command("create")
@click.option("--username", required=True, help="The admin's username.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@_friendly
def admin_create(username: str, password_stdin: bool) -> None:
    """Create an admin account (or make an existing account an admin).

    The password is asked for on the terminal, or read from stdin with
    --password-stdin; it never appears on the command line.
    """
    from ferryman.store import users

    password = _read_password(password_stdin)

    async def run() -> str:
        async with _identity() as auth:
            existing = await users.by_login(auth.db, username.strip().lower())
            user = await auth.users.ensure_admin(username, password)
            if existing is None:
                return f"created admin {user.username} ({user.id})"
            return f"{user.username} already exists; it is an active admin ({user.id})"

    click.echo(asyncio.run(run()))


@main.group()
def keys() -> None:
    """Client API keys."""


@keys.command("create")
@click.option("--user", "username", required=True, help="Username (or email) of the owner.")
@click.option("--name", required=True, help="A name for the key.")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    help="A scope (repeatable): proxy, stats:read. Default: proxy.",
)
@_friendly
def keys_create(username: str, name: str, scopes: tuple[str, ...]) -> None:
    """Create a client API key and print it (shown once, never stored in clear).

    The key alone goes to standard output, its id and details to standard error, so
    `KEY=$(ferryman keys create ...)` captures just the key.
    """
    from ferryman.errors import NotFound
    from ferryman.store import users

    async def run() -> tuple[str, str]:
        async with _identity() as auth:
            user = await users.by_login(auth.db, username.strip().lower())
            if user is None:
                raise NotFound(f"no user {username!r}")
            key, raw = await auth.api_keys.create(user.id, name, scopes or ("proxy",))
            details = f"key {key.id} ({key.masked}) for {user.username}, scopes {list(key.scopes)}"
            return raw, details

    raw, details = asyncio.run(run())
    click.echo(details, err=True)
    click.echo(raw)
