"""What `ferryman serve` says once it listens: where, what, and what to do next.

On a terminal, one short block that replaces the start-up chatter (see
`observability.console`); in JSON, one `ferryman_ready` event with the same facts. It is
said after the socket is bound, so the address is the real one (`--port 0` included),
by the process that bound it: the server itself with one worker, the supervisor with
several. The next steps come from the database, so steps already done are not shown.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from ferryman import __version__
from ferryman.config.gateway import Gateway
from ferryman.config.secrets import SECRETS_FILE
from ferryman.config.settings import Settings
from ferryman.observability.logging import Sink, scrub
from ferryman.store.progress import Progress

log = structlog.get_logger("ferryman")

#: Where each provider's key usually lives in the operator's shell.
KEY_VARIABLES = {"openrouter": "OPENROUTER_KEY", "openai": "OPENAI_API_KEY"}


@dataclass(frozen=True)
class Step:
    what: str
    commands: tuple[str, ...]


@dataclass(frozen=True)
class Ready:
    """The facts of one start, short of the address (known only once bound)."""

    gateway: str
    docs: bool
    data_dir: Path
    database: str
    """Its URL, any password hidden."""
    own_database: bool
    """FERRYMAN_DATABASE_URL names it (else: SQLite in the data directory)."""
    secrets_generated: bool
    config: Path | None
    admin: str | None
    empty_pools: tuple[tuple[str, str], ...]
    """(upstream, provider) of each pooled upstream with no key in its shared pool."""
    try_path: str | None
    """A path a client key opens, to try one with curl (None: no route takes keys)."""
    client_key: bool

    def steps(self, base: str) -> list[Step]:
        admin = self.admin or "admin"
        steps = []
        if self.admin is None:
            steps.append(
                Step("create an admin account", (f"ferryman admin create --username {admin}",))
            )
        config = f" --config {self.config}" if self.config is not None else ""
        for upstream, provider in self.empty_pools:
            variable = KEY_VARIABLES.get(provider, "API_KEY")
            steps.append(
                Step(
                    f"put a provider key in the {upstream} pool",
                    (
                        f'echo "${variable}" | ferryman upstream-keys add --upstream {upstream}'
                        f" --name main{config}",
                    ),
                )
            )
        if self.try_path is not None and not self.client_key:
            steps.append(
                Step(
                    "make a client key and try it",
                    (
                        f"KEY=$(ferryman keys create --user {admin} --name laptop)",
                        f'curl {base}{self.try_path} -H "Authorization: Bearer $KEY"',
                    ),
                )
            )
        return steps


def facts(
    settings: Settings, gateway: Gateway, done: Progress, database: str, secrets_generated: bool
) -> Ready:
    """The facts of a start: `done` and `database` (its URL, password hidden) as the
    check before serving found them."""
    if settings.config is None:
        paths = " and ".join(route.path for route in gateway.routes)
        described = f"built-in OpenRouter gateway: {paths} to {settings.openrouter_url}"
    else:
        count = len(gateway.routes)
        described = f"{settings.config} ({count} route{'s' if count != 1 else ''})"
    admin = done.admin
    if admin is None and settings.admin_username and settings.admin_password:
        admin = settings.admin_username.strip().lower()  # made at start-up
    pools = tuple(
        (name, spec.provider)
        for name, spec in gateway.upstreams.items()
        if spec.credential.kind == "pool" and name not in done.pooled
    )
    return Ready(
        gateway=described,
        docs=settings.docs_enabled,
        data_dir=settings.data_dir.resolve(),
        database=database,
        own_database=settings.database_url is not None,
        secrets_generated=secrets_generated,
        config=settings.config,
        admin=admin,
        empty_pools=pools,
        try_path=_try_path(gateway),
        client_key=done.client_key,
    )


def _try_path(gateway: Gateway) -> str | None:
    for route in gateway.routes:
        if "api_key" in route.auth:
            upstream = gateway.upstreams[route.upstream]
            if upstream.provider in KEY_VARIABLES:  # OpenAI-compatible: list the models
                return route.path.rstrip("/") + "/models"
            return route.path
    return None


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def addresses(name: Any) -> tuple[str, str]:
    """The bound address as a URL, and a URL a local client can use (not 0.0.0.0)."""
    host, port = str(name[0]), int(name[1])
    local = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return _url(host, port), _url(local, port)


def announce(ready: Ready, sock: socket.socket | Any) -> None:
    """Say it, in the format the logs use."""
    listening, base = addresses(sock.getsockname())
    steps = ready.steps(base)
    docs = f"{base}/docs" if ready.docs else "off (FERRYMAN_DOCS_ENABLED=true serves them at /docs)"
    if Sink.json:
        log.info(
            "ferryman_ready",
            version=__version__,
            listening=listening,
            gateway=ready.gateway,
            docs=docs,
            data_dir=str(ready.data_dir),
            database=ready.database,
            secrets_generated=ready.secrets_generated,
            next_steps=[{"what": s.what, "commands": list(s.commands)} for s in steps],
        )
        return
    if Sink.level > logging.INFO:
        return
    Sink.stream.write(scrub(block(ready, listening, docs, steps)).encode())
    Sink.stream.flush()


def block(ready: Ready, listening: str, docs: str, steps: list[Step]) -> str:
    """The terminal's version: a few lines, commands ready to copy."""
    data = f"{ready.data_dir} ({ready.database if ready.own_database else 'SQLite'}"
    if ready.secrets_generated:
        data += f"; new {SECRETS_FILE}: back it up"
    lines = [
        f"Ferryman {__version__} listening on {listening} (Ctrl-C stops it)",
        f"  gateway   {ready.gateway}",
        f"  API docs  {docs}",
        f"  data      {data})",
    ]
    if steps:
        lines.append("Next steps (in another terminal, same directory and settings):")
        lines += [f"  {command}" for step in steps for command in step.commands]
    return "\n".join(lines) + "\n"
