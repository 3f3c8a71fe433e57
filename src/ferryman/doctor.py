"""`ferryman doctor`: what a gateway needs, checked one thing at a time.

Each check names what it looked at and says `ok`, `warn` (works, but probably not as
meant) or `FAIL` (the gateway would not start, or a part of it would not work). It
changes nothing: no secret is generated, no migration applied, no credential sent
upstream. Secrets are never printed, only where they come from.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from ferryman.config.gateway import Gateway
from ferryman.config.loading import load_gateway
from ferryman.config.secrets import read_stored
from ferryman.config.settings import Settings, master_keys_problem, secret_too_short
from ferryman.config.upstreams import BasicCredential, FixedCredential, Upstream
from ferryman.errors import FerrymanError
from ferryman.store.engine import normalise_url
from ferryman.store.upstream_keys import UpstreamKeyRow
from ferryman.upstreams.crypto import MasterKeys
from ferryman.upstreams.keyring import bound_to

OK, WARN, FAIL = "ok", "warn", "FAIL"
UPSTREAM_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class Check:
    status: str
    name: str
    detail: str

    def line(self) -> str:
        return f"{self.status:<5} {self.name:<22} {self.detail}"


def configuration(settings: Settings) -> tuple[Check, Gateway | None]:
    source = str(settings.config) if settings.config else "the built-in OpenRouter gateway"
    try:
        gateway = load_gateway(settings)
    except FerrymanError as exc:
        return Check(FAIL, "configuration", f"{source}: {exc}"), None
    registration = gateway.registration_open(settings.registration_enabled)
    warnings = gateway.warnings(registration_open=registration)
    counts = f"{len(gateway.upstreams)} upstream(s), {len(gateway.routes)} route(s)"
    if warnings:
        return Check(WARN, "configuration", f"{source}: {counts}; " + "; ".join(warnings)), gateway
    return Check(OK, "configuration", f"{source}: {counts}"), gateway


def secrets(settings: Settings) -> list[Check]:
    """Where each secret comes from, and whether it is usable; never its value."""
    try:
        path, stored = read_stored(settings)
    except FerrymanError as exc:
        return [Check(FAIL, "secrets", str(exc))]
    out = []
    for name in ("secret_key", "key_pepper", "encryption_keys"):
        env = f"FERRYMAN_{name.upper()}"
        if getattr(settings, name) is not None:
            out.append(Check(OK, f"secret {name}", f"from {env}"))
            continue
        value = stored.get(name)
        if not value:
            out.append(Check(WARN, f"secret {name}", f"not set: generated into {path} at start"))
            continue
        check = master_keys_problem if name == "encryption_keys" else secret_too_short
        problem = check(value)
        if problem:
            out.append(Check(FAIL, f"secret {name}", f"{path}: {problem}"))
        elif settings.redis_url:
            # Each instance of a fleet would have its own unless the data dir is shared.
            out.append(
                Check(WARN, f"secret {name}", f"from {path}; a fleet must share it: set {env}")
            )
        else:
            out.append(Check(OK, f"secret {name}", f"from {path}"))
    return out


async def database(settings: Settings) -> Check:
    from ferryman.store import migrate
    from ferryman.store.engine import create_database

    missing = _missing_sqlite(settings)
    if missing is not None:
        return Check(WARN, "database", f"{missing} does not exist yet: created at first start")
    db = create_database(settings)
    try:
        await db.ping()
        at, head = await migrate.current(db), migrate.head_revision()
    except Exception as exc:
        return Check(FAIL, "database", f"{db.display_url}: {_reason(exc)}")
    finally:
        await db.dispose()
    if at == head:
        return Check(OK, "database", f"{db.display_url}: connected, schema at {head} (newest)")
    pending = "applied at start" if settings.migrate_on_start else "run `ferryman migrate`"
    status = WARN if settings.migrate_on_start else FAIL
    where = at or "nothing"
    return Check(
        status, "database", f"{db.display_url}: schema at {where}, newest {head} ({pending})"
    )


async def stored_keys(settings: Settings) -> Check | None:
    """Every stored provider key opens under the master keys (when both are there)."""
    from ferryman.store import upstream_keys
    from ferryman.store.engine import create_database

    raw = settings.encryption_keys
    try:
        text = raw.get_secret_value() if raw else read_stored(settings)[1].get("encryption_keys")
    except FerrymanError:
        return None  # the secrets check says why
    if not text or master_keys_problem(text) or _missing_sqlite(settings) is not None:
        return None
    keys = MasterKeys.parse(text)
    db = create_database(settings)
    try:
        rows = await upstream_keys.listing(db, everyone=True)
    except Exception:
        return None  # no database, or no table yet: the database check says why
    finally:
        await db.dispose()
    sealed = [f"{row.name} ({row.master_key_id})" for row in rows if not _opens(keys, row)]
    if sealed:
        return Check(
            FAIL, "upstream keys", "do not open with the master keys: " + ", ".join(sealed)
        )
    return Check(OK, "upstream keys", f"{len(rows)} stored, all open with {', '.join(keys.ids)}")


def _opens(keys: MasterKeys, row: UpstreamKeyRow) -> bool:
    try:
        keys.open(row.master_key_id, row.sealed_key, bound_to(row.id))
    except FerrymanError:
        return False
    return True


async def redis(settings: Settings) -> Check:
    if not settings.redis_url:
        alone = "not set: limits, caps, the login throttle and budgets count per process"
        return Check(OK, "redis", alone)
    from ferryman.store.redis import connect_redis

    try:
        client = connect_redis(settings.redis_url)
    except FerrymanError as exc:
        return Check(FAIL, "redis", str(exc))
    shown = _without_password(settings.redis_url)
    try:
        async with asyncio.timeout(3):
            info = await client.info("server")
    except Exception as exc:
        return Check(FAIL, "redis", f"{shown}: {_reason(exc)}")
    finally:
        await client.aclose()
    version = info.get("redis_version", "?")
    return Check(OK, "redis", f"{shown}: redis {version}, keys under {settings.redis_prefix!r}")


async def upstream(name: str, spec: Upstream) -> Check:
    """Reachable: any HTTP answer to a plain GET of its URL (no credential sent)."""
    label = f"upstream {name}"
    credential = spec.credential
    needed: tuple[str, ...] = ()
    if isinstance(credential, FixedCredential):
        needed = (credential.value_env,)
    elif isinstance(credential, BasicCredential):
        needed = (credential.user_env, credential.password_env)
    for variable in needed:
        if not os.environ.get(variable):
            return Check(FAIL, label, f"credential: {variable} is not set")
    url = spec.url
    timeout = aiohttp.ClientTimeout(total=UPSTREAM_TIMEOUT)
    started = time.perf_counter()
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout, trust_env=False) as http,
            http.get(url, ssl=bool(spec.tls_verify), allow_redirects=False) as response,
        ):
            status = response.status
    except Exception as exc:
        return Check(FAIL, label, f"{url}: {_reason(exc)}")
    ms = (time.perf_counter() - started) * 1000
    return Check(OK, label, f"{url}: reachable (HTTP {status} in {ms:.0f} ms)")


async def run(settings: Settings) -> list[Check]:
    """Every check, in the order a start-up meets them."""
    checks: list[Check] = []
    config, gateway = configuration(settings)
    checks.append(config)
    checks += secrets(settings)
    checks.append(await database(settings))
    keys = await stored_keys(settings)
    if keys is not None:
        checks.append(keys)
    checks.append(await redis(settings))
    if gateway is not None:
        jobs: list[Awaitable[Check]] = [upstream(n, s) for n, s in gateway.upstreams.items()]
        checks += await asyncio.gather(*jobs)
    return checks


def _missing_sqlite(settings: Settings) -> Path | None:
    """The SQLite file the settings name, if it does not exist (connecting would make
    it, and its directory, with the wrong mode: `serve` makes them properly)."""
    url, backend = normalise_url(settings.resolved_database_url)
    if backend != "sqlite" or not url.database or url.database == ":memory:":
        return None
    path = Path(url.database)
    return None if path.exists() else path


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, TimeoutError) or not text:
        return type(exc).__name__ if not isinstance(exc, TimeoutError) else "no answer in time"
    return f"{type(exc).__name__}: {text[:200]}"


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
