"""Fixtures: settings in a temp dir, fake upstreams, the gateway in-process, secrets."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ferryman.config.settings import Settings
from ferryman.observability.logging import configure_logging
from tests.fakes.openrouter import FakeOpenRouter
from tests.fakes.upstream import FakeUpstream

#: Secrets the tests used; none may appear in any log line of the run.
USED_SECRETS: set[str] = set()

TEST_DATABASE_URL = os.environ.get("FERRYMAN_TEST_DATABASE_URL")

# A developer's own FERRYMAN_* settings must not leak into the tests.
for _name in list(os.environ):
    if _name.startswith("FERRYMAN_") and not _name.startswith("FERRYMAN_TEST_"):
        del os.environ[_name]
TEST_REDIS_URL = os.environ.get("FERRYMAN_TEST_REDIS_URL")


@pytest.fixture(scope="session", autouse=True)
def session_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every in-process log line of the run goes to one file, grepped for secrets at the end."""
    path = tmp_path_factory.mktemp("logs") / "ferryman-tests.log"
    stream = path.open("ab", buffering=0)
    configure_logging("debug", "json", stream=stream)  # type: ignore[arg-type]
    yield path
    stream.close()
    text = path.read_text(errors="replace")
    leaked = sorted(secret for secret in USED_SECRETS if secret in text)
    assert not leaked, f"secrets found in the test run's logs: {leaked}"


@pytest.fixture
def secret() -> Callable[[str], str]:
    """Make a secret value and remember it for the end-of-run log check."""

    def make(prefix: str = "") -> str:
        value = prefix + uuid.uuid4().hex + uuid.uuid4().hex
        USED_SECRETS.add(value)
        return value

    return make


@pytest.fixture(autouse=True)
def no_blocking(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test whose code blocks the event loop for more than 0.25 s."""
    slow: list[str] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            message = record.getMessage()
            # Start-up and shut-down (the lifespan task: migrations, opening every
            # stored key) run while the server takes no requests; a slow step there
            # delays nobody.
            if message.startswith("Executing") and "LifespanOn.main" not in message:
                slow.append(message)

    handler = Catch()
    logger = logging.getLogger("asyncio")
    logger.addHandler(handler)
    yield
    logger.removeHandler(handler)
    if slow and "allow_blocking" not in request.keywords:
        pytest.fail(f"event loop blocked: {slow[0]}")


@pytest.fixture(autouse=True)
async def _slow_callback_watch() -> AsyncIterator[None]:
    # asyncio reports callbacks slower than this only in debug mode.
    loop = asyncio.get_running_loop()
    loop.set_debug(True)
    loop.slow_callback_duration = 0.25
    yield


@pytest.fixture
def settings_factory(tmp_path: Path) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            "secret_key": "test-secret-key-" + "x" * 32,
            "encryption_keys": "k1:" + "A" * 43 + "=",
            "key_pepper": "test-pepper-" + "p" * 32,
            "password_hash_time_cost": 1,
            "password_hash_memory_kib": 64,
            "password_hash_parallelism": 1,
            "log_flush_interval": 0,
            # Most tests make accounts through the API; closed by default is tested on its own.
            "registration_enabled": True,
            # Tests register and log in many accounts from 127.0.0.1 within a minute;
            # the defaults (5 a minute, 100 an hour) are tested on their own.
            "auth_rate_limit": "10000/minute",
            "stats_rate_limit": "100000/hour",
            **overrides,
        }
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    return make


@pytest.fixture
def settings(settings_factory: Callable[..., Settings]) -> Settings:
    return settings_factory()


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    fake = await FakeUpstream().start()
    yield fake
    await fake.stop()


@pytest.fixture
async def openrouter() -> AsyncIterator[FakeOpenRouter]:
    """The fake OpenRouter, knowing no key (folders and modules that need some have
    their own)."""
    fake = await FakeOpenRouter().start()
    yield fake
    await fake.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_settings(
    request: pytest.FixtureRequest, settings_factory: Callable[..., Settings]
) -> AsyncIterator[Settings]:
    """Settings for an empty database of each backend (a schema of its own on PostgreSQL,
    dropped afterwards)."""
    if request.param == "sqlite":
        yield settings_factory()
        return
    if not TEST_DATABASE_URL:
        pytest.skip("FERRYMAN_TEST_DATABASE_URL is not set")
    from sqlalchemy import text

    from ferryman.store.engine import create_database

    schema = f"ferryman_test_{uuid.uuid4().hex[:12]}"
    yield settings_factory(database_url=TEST_DATABASE_URL, database_schema=schema)
    admin = create_database(settings_factory(database_url=TEST_DATABASE_URL))
    async with admin.engine.begin() as conn:
        await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    await admin.dispose()


@pytest.fixture
def postgres_url() -> str:
    if not TEST_DATABASE_URL:
        pytest.skip("FERRYMAN_TEST_DATABASE_URL is not set")
    return TEST_DATABASE_URL


@pytest.fixture
def redis_url() -> str:
    if not TEST_REDIS_URL:
        pytest.skip("FERRYMAN_TEST_REDIS_URL is not set")
    return TEST_REDIS_URL


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A redis-server of the test's own on a free port, to kill or freeze (never the
    shared one); its URL and process."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    port = _free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0", proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


class LogReader:
    """The rendered JSON lines the app wrote since the test began."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0

    def text(self) -> str:
        with self.path.open("rb") as fh:
            fh.seek(self.offset)
            return fh.read().decode("utf-8", "replace")

    def events(self, event: str | None = None) -> list[dict[str, Any]]:
        out = []
        for line in self.text().splitlines():
            if line.strip():
                record = json.loads(line)
                if event is None or record.get("event") == event:
                    out.append(record)
        return out


@pytest.fixture
def logs(session_log: Path) -> LogReader:
    return LogReader(session_log)
