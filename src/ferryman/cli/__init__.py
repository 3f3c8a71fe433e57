"""The `ferryman` command."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from ferryman import __version__
from ferryman.cli.common import export, friendly, identity, read_password
from ferryman.cli.doctor import doctor
from ferryman.cli.pool import master_key, upstream_keys
from ferryman.config.loading import load_gateway_file, load_settings
from ferryman.observability.logging import configure_logging


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
@friendly
def serve(config: Path | None, host: str | None, port: int | None, workers: int | None) -> None:
    """Run the gateway until SIGTERM or Ctrl-C.

    Start-up checks the configuration, generates missing secrets into the data
    directory, and applies database migrations (unless FERRYMAN_MIGRATE_ON_START is
    false). On SIGTERM, in-flight requests get FERRYMAN_SHUTDOWN_GRACE seconds to end.
    """
    from ferryman.server import serve as run

    export(config=config.resolve() if config else None, host=host, port=port, workers=workers)
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    run(settings)


@main.command("check-config")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@friendly
def check_config(file: Path) -> None:
    """Validate a gateway YAML file and report every problem with its field path."""
    gateway = load_gateway_file(file)
    # FERRYMAN_REGISTRATION_ENABLED, as the gateway would read it, decides with the file.
    settings = load_settings()
    registration = gateway.registration_open(settings.registration_enabled)
    for warning in gateway.warnings(registration_open=registration):
        click.echo(f"warning: {warning}", err=True)
    if settings.console_enabled and (hidden := gateway.shadowed_by(settings.console_path)):
        raise click.ClickException(
            f"{', '.join(hidden)}: inside the console's path {settings.console_path}"
            " (FERRYMAN_CONSOLE_PATH); move them or set FERRYMAN_CONSOLE_ENABLED=false"
        )
    click.echo(f"{file}: OK ({len(gateway.upstreams)} upstreams, {len(gateway.routes)} routes)")


@main.command()
@click.option("--revision", default="head", show_default=True, help="Upgrade to this revision.")
@click.option("--downgrade", "down_to", metavar="REVISION", help="Revert to this revision.")
@click.option("--status", is_flag=True, help="Only show the current and newest revisions.")
@friendly
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


@main.group()
def admin() -> None:
    """Administrator accounts."""


@admin.command("create")
@click.option("--username", required=True, help="The admin's username.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@friendly
def admin_create(username: str, password_stdin: bool) -> None:
    """Create an admin account (or make an existing account an admin).

    The password is asked for on the terminal, or read from stdin with
    --password-stdin; it never appears on the command line.
    """
    from ferryman.store import users

    password = read_password(password_stdin)

    async def run() -> str:
        async with identity() as auth:
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
@friendly
def keys_create(username: str, name: str, scopes: tuple[str, ...]) -> None:
    """Create a client API key and print it (shown once, never stored in clear).

    The key alone goes to standard output, its id and details to standard error, so
    `KEY=$(ferryman keys create ...)` captures just the key.
    """
    from ferryman.errors import NotFound
    from ferryman.store import users

    async def run() -> tuple[str, str]:
        async with identity() as auth:
            user = await users.by_login(auth.db, username.strip().lower())
            if user is None:
                raise NotFound(f"no user {username!r}")
            key, raw = await auth.api_keys.create(user.id, name, scopes or ("proxy",))
            details = f"key {key.id} ({key.masked}) for {user.username}, scopes {list(key.scopes)}"
            return raw, details

    raw, details = asyncio.run(run())
    click.echo(details, err=True)
    click.echo(raw)


main.add_command(doctor)
main.add_command(upstream_keys)
main.add_command(master_key)
