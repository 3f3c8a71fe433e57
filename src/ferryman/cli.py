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
    from ferryman.upstreams.service import UpstreamKeys

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
    # FERRYMAN_REGISTRATION_ENABLED, as the gateway would read it, decides with the file.
    registration = gateway.registration_open(load_settings().registration_enabled)
    for warning in gateway.warnings(registration_open=registration):
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


@main.group("upstream-keys")
def upstream_keys() -> None:
    """Provider keys in the encrypted pool."""


@upstream_keys.command("add")
@click.option("--upstream", required=True, help="The pooled upstream the key is for.")
@click.option("--name", required=True, help="A name for the key.")
@click.option("--user", "username", help="Add it as this user's own key (default: shared pool).")
@click.option("--weight", type=click.IntRange(1, 1000), default=1, show_default=True)
@click.option("--no-validate", is_flag=True, help="Store it without asking the provider.")
@click.option(
    "--config",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Gateway YAML file (default: FERRYMAN_CONFIG, else the built-in gateway).",
)
@_friendly
def upstream_keys_add(
    upstream: str,
    name: str,
    username: str | None,
    weight: int,
    no_validate: bool,
    config: Path | None,
) -> None:
    """Add a provider key, read from standard input (never from the command line).

    The key is validated with the provider (unless --no-validate), sealed with the
    newest master key, and from then on shown only masked. A running gateway picks
    it up within FERRYMAN_UPSTREAM_REFRESH_INTERVAL seconds (at once over Redis).
    """
    from ferryman.errors import BadRequest, NotFound
    from ferryman.store import users

    secret = sys.stdin.readline().strip()
    if not secret:
        raise BadRequest('no key on standard input: echo "$KEY" | ferryman upstream-keys add ...')
    _export(config=config)

    async def run() -> str:
        async with _key_pool() as service:
            owner: str | None = None
            if username is not None:
                user = await users.by_login(service.db, username.strip().lower())
                if user is None:
                    raise NotFound(f"no user {username!r}")
                owner = user.id
            row = await service.create(
                upstream=upstream,
                name=name,
                secret=secret,
                owner_id=owner,
                weight=weight,
                validate=not no_validate,
            )
            whose = "the shared pool" if owner is None else f"user {username}"
            click.echo(f"added {row.masked} to {whose} of {upstream} as {row.name}", err=True)
            return row.id

    click.echo(asyncio.run(run()))


@upstream_keys.command("list")
@click.option(
    "--config",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Gateway YAML file (default: FERRYMAN_CONFIG, else the built-in gateway).",
)
@_friendly
def upstream_keys_list(config: Path | None) -> None:
    """Every stored provider key, masked, with its health and usage."""
    _export(config=config)

    async def run() -> list[str]:
        async with _key_pool() as service:
            views = await service.listing(owner_id=None, everyone=True)
        lines = []
        for view in views:
            row = view.row
            owner = "pool" if row.owner_id is None else f"user:{row.owner_id}"
            lines.append(
                f"{row.id}  {row.upstream:<12} {row.name:<20} {row.masked:<16} "
                f"{view.state:<13} {owner:<10} requests={row.request_count} "
                f"failures={row.failure_count}"
            )
        return lines

    for line in asyncio.run(run()):
        click.echo(line)


@asynccontextmanager
async def _key_pool() -> AsyncIterator[UpstreamKeys]:
    """The key pool service on the configured database and gateway (upstreams started
    for validation, every stored key opened: a wrong master key stops here)."""
    from ferryman.app import prepare_database
    from ferryman.clock import Clock
    from ferryman.config.loading import load_gateway
    from ferryman.config.secrets import ensure_secrets
    from ferryman.observability.metrics import LocalMetrics
    from ferryman.proxy.upstream import UpstreamClient
    from ferryman.store.engine import create_database
    from ferryman.upstreams.crypto import MasterKeys
    from ferryman.upstreams.keyring import Keyring
    from ferryman.upstreams.service import UpstreamKeys

    settings = load_settings()
    configure_logging("warning", settings.log_format, stream=sys.stderr.buffer)
    gateway = load_gateway(settings)
    secrets = ensure_secrets(settings)
    master_keys = MasterKeys.parse(secrets.encryption_keys.get_secret_value())
    database = create_database(settings)
    clients = {name: UpstreamClient(name, spec) for name, spec in gateway.upstreams.items()}
    try:
        await prepare_database(database, settings.migrate_on_start)
        for client in clients.values():
            await client.start(credentials=False)
        clock = Clock()
        keyring = Keyring(database, master_keys, clock, LocalMetrics(), clients)
        await keyring.load(strict=True)
        yield UpstreamKeys(
            database,
            keyring,
            clients,
            clock,
            per_user_limit=settings.max_upstream_keys_per_user,
        )
        await keyring.flush()
    finally:
        for client in clients.values():
            await client.close()
        await database.dispose()


@main.group("master-key")
def master_key() -> None:
    """The master keys that seal stored provider keys."""


@master_key.command("rotate")
@click.option(
    "--new-key",
    is_flag=True,
    help="First generate a new master key into the data directory (only when "
    "FERRYMAN_ENCRYPTION_KEYS is not set).",
)
@_friendly
def master_key_rotate(new_key: bool) -> None:
    """Re-encrypt every stored provider key under the newest master key.

    Safe to interrupt and run again: each key is re-sealed in its own transaction and
    every key opens under its old or its new master key until all are done.
    """
    from ferryman.app import prepare_database
    from ferryman.config.secrets import add_master_key, ensure_secrets
    from ferryman.store.engine import create_database
    from ferryman.upstreams.crypto import MasterKeys, new_master_key
    from ferryman.upstreams.rotation import rotate

    settings = load_settings()
    configure_logging("warning", settings.log_format, stream=sys.stderr.buffer)
    secrets = ensure_secrets(settings)
    raw = secrets.encryption_keys.get_secret_value()
    master_keys = MasterKeys.parse(raw)
    if new_key:
        taken = set(master_keys.ids)
        number = len(taken) + 1
        while f"k{number}" in taken:
            number += 1
        raw = add_master_key(settings, f"k{number}", new_master_key())
        master_keys = MasterKeys.parse(raw)
        click.echo(f"new master key k{number} added to {settings.data_dir}", err=True)

    async def run() -> int:
        database = create_database(settings)
        try:
            await prepare_database(database, settings.migrate_on_start)
            report = await rotate(database, master_keys)
        finally:
            await database.dispose()
        click.echo(
            f"{report.resealed} upstream key(s) re-encrypted under {report.newest}; "
            f"{report.current} already were"
        )
        for failure in report.failed:
            click.echo(f"error: {failure}", err=True)
        return EXIT_ERROR if report.failed else 0

    code = asyncio.run(run())
    if code:
        sys.exit(code)
