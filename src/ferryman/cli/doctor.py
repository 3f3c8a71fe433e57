"""`ferryman doctor`."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from ferryman.cli.common import EXIT_ERROR, export, friendly
from ferryman.config.loading import load_settings
from ferryman.observability.logging import configure_logging


@click.command()
@click.option(
    "--config", "-c", type=click.Path(dir_okay=False, path_type=Path),
    help="Gateway YAML file (default: FERRYMAN_CONFIG, else the built-in OpenRouter gateway).",
)  # fmt: skip
@friendly
def doctor(config: Path | None) -> None:
    """Check the configuration, secrets, database, Redis and every upstream.

    One line per check, naming what it looked at: ok, warn or FAIL. Nothing is
    changed (no secret generated, no migration applied) and no credential is sent.
    Exits 1 when a check fails.
    """
    from ferryman import doctor as checks

    export(config=config.resolve() if config else None)
    settings = load_settings()
    configure_logging("error", settings.log_format, stream=sys.stderr.buffer)
    results = asyncio.run(checks.run(settings))
    for check in results:
        click.echo(check.line())
    failed = [c for c in results if c.status == checks.FAIL]
    warned = [c for c in results if c.status == checks.WARN]
    click.echo(f"{len(results)} checks: {len(failed)} failed, {len(warned)} warnings", err=True)
    if failed:
        sys.exit(EXIT_ERROR)
