"""`ferryman upstream-keys` and `ferryman master-key`: the encrypted key pool."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ferryman.cli.common import EXIT_ERROR, export, friendly
from ferryman.config.loading import load_settings
from ferryman.observability.logging import configure_logging

if TYPE_CHECKING:
    from ferryman.upstreams.service import UpstreamKeys


@click.group("upstream-keys")
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
@friendly
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
    export(config=config)

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
@friendly
def upstream_keys_list(config: Path | None) -> None:
    """Every stored provider key, masked, with its health and usage."""
    export(config=config)

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
    from ferryman.clock import Clock
    from ferryman.config.loading import load_gateway
    from ferryman.config.secrets import ensure_secrets
    from ferryman.observability.metrics import LocalMetrics
    from ferryman.proxy.upstream import UpstreamClient
    from ferryman.store import migrate
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
        await migrate.prepare(database, settings.migrate_on_start)
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


@click.group("master-key")
def master_key() -> None:
    """The master keys that seal stored provider keys."""


@master_key.command("rotate")
@click.option(
    "--new-key",
    is_flag=True,
    help="First generate a new master key into the data directory (only when "
    "FERRYMAN_ENCRYPTION_KEYS is not set).",
)
@friendly
def master_key_rotate(new_key: bool) -> None:
    """Re-encrypt every stored provider key under the newest master key.

    Safe to interrupt and run again: each key is re-sealed in its own transaction and
    every key opens under its old or its new master key until all are done.
    """
    from ferryman.config.secrets import add_master_key, ensure_secrets
    from ferryman.store import migrate
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
            await migrate.prepare(database, settings.migrate_on_start)
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
