"""The `ferryman` command."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import ParamSpec, TypeVar

import click

from ferryman import __version__
from ferryman.config.loading import load_gateway_file, load_settings
from ferryman.errors import FerrymanError
from ferryman.observability.logging import configure_logging

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
    configure_logging("warning", settings.log_format)

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
