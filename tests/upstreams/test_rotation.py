"""Master key rotation and the start-up check of the stored key pool, on every backend."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Callable, MutableMapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr

from ferryman.app import Ferryman
from ferryman.config.loading import parse_gateway
from ferryman.config.settings import Settings
from ferryman.store import upstream_keys as rows
from ferryman.store.engine import Database, create_database
from ferryman.store.upstream_keys import UpstreamKeyRow
from ferryman.upstreams.crypto import MasterKeys, new_master_key
from ferryman.upstreams.keyring import bound_to
from ferryman.upstreams.rotation import rotate
from tests.conftest import LogReader
from tests.fakes.openrouter import CHAT_PATH, FakeOpenRouter
from tests.support import client_session, serve_app
from tests.upstreams.conftest import pooled_gateway

OLD = new_master_key()
NEW = new_master_key()
STRANGER = new_master_key()
K1 = f"k1:{OLD}"
K2 = f"k2:{NEW}"
BOTH = f"{K2},{K1}"
CHAT = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def keyed(settings: Settings, encryption_keys: str) -> Settings:
    """The same settings (data dir, database) with another master key list."""
    return settings.model_copy(update={"encryption_keys": SecretStr(encryption_keys)})


@contextlib.asynccontextmanager
async def database(settings: Settings) -> AsyncIterator[Database]:
    db = create_database(settings)
    try:
        yield db
    finally:
        await db.dispose()


async def stored(settings: Settings) -> list[UpstreamKeyRow]:
    async with database(settings) as db:
        return await rows.listing(db, everyone=True)


async def store_keys(settings: Settings, fake: FakeOpenRouter, secrets: list[str]) -> list[str]:
    """Add `secrets` to the pool through a gateway running with `settings`; their ids."""
    ids = []
    async with serve_app(settings, pooled_gateway(fake.base_url)) as gw:
        service = gw.app.upstream_keys
        assert service is not None
        for number, value in enumerate(secrets):
            fake.add_key(value, label=f"key-{number}")
            row = await service.create(
                upstream="openrouter",
                name=f"key-{number}",
                secret=value,
                owner_id=None,
                validate=False,
            )
            ids.append(row.id)
    return ids


async def serve_with(settings: Settings, fake: FakeOpenRouter, secrets: list[str]) -> None:
    """A gateway with `settings` starts, holds exactly `secrets` and serves with each."""
    before = len(fake.requests)
    async with (
        serve_app(settings, pooled_gateway(fake.base_url)) as gw,
        client_session() as http,
    ):
        assert gw.app.keyring is not None
        assert sorted(key.secret for key in gw.app.keyring.every_key()) == sorted(secrets)
        for _ in range(2 * len(secrets)):  # round robin: each key in turn
            async with http.post(gw.url + "/v1/chat/completions", json=CHAT) as response:
                assert response.status == 200, await response.text()
    chats = [call for call in fake.requests[before:] if call.path == CHAT_PATH]
    assert {call.key for call in chats} == set(secrets)
    assert {call.headers["authorization"] for call in chats} == {f"Bearer {s}" for s in secrets}


def assert_sealed_under(found: list[UpstreamKeyRow], key_id: str, plain: dict[str, str]) -> None:
    only = MasterKeys.parse(K2 if key_id == "k2" else K1)
    assert {row.id for row in found} == set(plain)
    for row in found:
        assert row.master_key_id == key_id
        assert plain[row.id] not in row.sealed_key
        assert only.open(key_id, row.sealed_key, bound_to(row.id)) == plain[row.id]


async def test_rotation_reseals_every_key_under_the_newest_master_key(
    db_settings: Settings, openrouter: FakeOpenRouter, secret: Callable[[str], str]
) -> None:
    secrets = [secret("sk-or-v1-") for _ in range(3)]
    ids = await store_keys(keyed(db_settings, K1), openrouter, secrets)
    plain = dict(zip(ids, secrets, strict=True))
    before = await stored(db_settings)
    assert_sealed_under(before, "k1", plain)

    async with database(db_settings) as db:
        report = await rotate(db, MasterKeys.parse(BOTH))
    assert (report.newest, report.resealed, report.current, report.failed) == ("k2", 3, 0, [])
    after = await stored(db_settings)
    assert_sealed_under(after, "k2", plain)
    old_values = {row.id: row.sealed_key for row in before}
    assert all(row.sealed_key != old_values[row.id] for row in after)
    # Nothing but the seal changed.
    assert [(r.id, r.name, r.prefix, r.last4) for r in after] == [
        (r.id, r.name, r.prefix, r.last4) for r in before
    ]

    async with database(db_settings) as db:
        again = await rotate(db, MasterKeys.parse(BOTH))
    assert (again.resealed, again.current, again.failed) == (0, 3, [])
    assert [row.sealed_key for row in await stored(db_settings)] == [r.sealed_key for r in after]

    # The old master key can go now.
    await serve_with(keyed(db_settings, K2), openrouter, secrets)


async def test_an_interrupted_rotation_still_serves_and_finishes_when_run_again(
    db_settings: Settings, openrouter: FakeOpenRouter, secret: Callable[[str], str]
) -> None:
    secrets = [secret("sk-or-v1-") for _ in range(3)]
    ids = await store_keys(keyed(db_settings, K1), openrouter, secrets)
    plain = dict(zip(ids, secrets, strict=True))
    both = MasterKeys.parse(BOTH)
    first = ids[1]
    async with database(db_settings) as db:
        row = await rows.get(db, first)
        assert row is not None
        key_id, sealed = both.seal(
            both.open("k1", row.sealed_key, bound_to(first)), bound_to(first)
        )
        assert await rows.reseal(db, first, was="k1", master_key_id=key_id, sealed_key=sealed)
        # Resealing again from k1 finds the row moved on and leaves it alone.
        assert not await rows.reseal(db, first, was="k1", master_key_id="k1", sealed_key="x")
    halfway = {row.id: row.master_key_id for row in await stored(db_settings)}
    assert halfway == {ids[0]: "k1", ids[1]: "k2", ids[2]: "k1"}

    await serve_with(keyed(db_settings, BOTH), openrouter, secrets)

    async with database(db_settings) as db:
        report = await rotate(db, both)
    assert (report.resealed, report.current, report.failed) == (2, 1, [])
    assert_sealed_under(await stored(db_settings), "k2", plain)
    await serve_with(keyed(db_settings, K2), openrouter, secrets)


async def test_rotation_without_the_old_master_key_reports_every_key_and_changes_none(
    db_settings: Settings, openrouter: FakeOpenRouter, secret: Callable[[str], str]
) -> None:
    secrets = [secret("sk-or-v1-") for _ in range(2)]
    ids = await store_keys(keyed(db_settings, K1), openrouter, secrets)
    before = await stored(db_settings)
    async with database(db_settings) as db:
        report = await rotate(db, MasterKeys.parse(K2))
    assert (report.resealed, report.current) == (0, 0)
    assert len(report.failed) == 2
    for key_id, failure in zip(ids, report.failed, strict=True):
        assert key_id in failure and "'k1'" in failure
    assert all(value not in " ".join(report.failed) for value in secrets)
    assert await stored(db_settings) == before


FAILURES = {
    # keys configured at start-up → what the message must say
    "wrong-master-key": (f"k1:{STRANGER}", "does not open with master key 'k1'"),
    "missing-master-key": (K2, "sealed under master key 'k1', which FERRYMAN_ENCRYPTION_KEYS"),
}


@pytest.mark.parametrize("case", sorted(FAILURES))
async def test_a_gateway_whose_master_keys_do_not_open_the_pool_does_not_start(
    case: str,
    db_settings: Settings,
    openrouter: FakeOpenRouter,
    secret: Callable[[str], str],
    logs: LogReader,
) -> None:
    configured, says = FAILURES[case]
    secrets = [secret("sk-or-v1-")]
    [key_id] = await store_keys(keyed(db_settings, K1), openrouter, secrets)
    after_store = LogReader(logs.path)
    # The ASGI lifespan as a server drives it (serve_app cannot: uvicorn answers a
    # failed start-up with sys.exit, which escapes the test's event loop).
    app = Ferryman(
        keyed(db_settings, configured),
        parse_gateway(pooled_gateway(openrouter.base_url), source="test"),
    )
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "lifespan.startup"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    await app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
    [answer] = sent
    assert answer["type"] == "lifespan.startup.failed"
    message = answer["message"]
    assert "cannot be decrypted" in message
    assert says in message
    assert key_id in message
    assert app.database is None  # what start-up opened is closed again
    [failed] = after_store.events("startup_failed")
    assert failed["error"] == message
    assert "exception" not in failed  # an expected failure, logged without a traceback
    text = after_store.text()
    for value in (*secrets, OLD, NEW, STRANGER):
        assert value not in text
    assert [row.master_key_id for row in await stored(db_settings)] == ["k1"]


def process_env(settings: Settings, encryption_keys: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FERRYMAN_")}
    env.update(
        FERRYMAN_DATA_DIR=str(settings.data_dir),
        FERRYMAN_ENCRYPTION_KEYS=encryption_keys,
        FERRYMAN_LOG_FORMAT="json",
    )
    assert settings.secret_key is not None and settings.key_pepper is not None
    env["FERRYMAN_SECRET_KEY"] = settings.secret_key.get_secret_value()
    env["FERRYMAN_KEY_PEPPER"] = settings.key_pepper.get_secret_value()
    if settings.database_url:
        env["FERRYMAN_DATABASE_URL"] = settings.database_url
    if settings.database_schema:
        env["FERRYMAN_DATABASE_SCHEMA"] = settings.database_schema
    return env


async def run_serve(config: Path, env: dict[str, str], cwd: Path) -> tuple[int, str]:
    """`ferryman serve` until it exits by itself (it is expected to fail to start)."""
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("ferryman")),
        *("serve", "--config", str(config), "--host", "127.0.0.1", "--port", "0"),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
        cwd=cwd,
    )
    try:
        output, _ = await asyncio.wait_for(proc.communicate(), 30)
    except TimeoutError:
        proc.kill()
        output, _ = await proc.communicate()
        pytest.fail(f"ferryman serve kept running:\n{output.decode(errors='replace')}")
    assert proc.returncode is not None
    return proc.returncode, output.decode(errors="replace")


@pytest.mark.e2e
async def test_ferryman_serve_with_master_keys_that_do_not_open_the_pool_exits_clearly(
    db_settings: Settings,
    openrouter: FakeOpenRouter,
    secret: Callable[[str], str],
    tmp_path: Path,
) -> None:
    secrets = [secret("sk-or-v1-")]
    [key_id] = await store_keys(keyed(db_settings, K1), openrouter, secrets)
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump(pooled_gateway(openrouter.base_url)))
    cases = sorted(FAILURES)
    results = await asyncio.gather(
        *(
            run_serve(config, process_env(db_settings, FAILURES[case][0]), tmp_path)
            for case in cases
        )
    )
    for case, (code, output) in zip(cases, results, strict=True):
        says = FAILURES[case][1]
        assert code != 0, (case, output)
        assert "cannot be decrypted" in output, (case, output)
        assert says in output, (case, output)
        assert key_id in output, (case, output)
        assert "Traceback" not in output, (case, output)
        for value in (*secrets, OLD, NEW, STRANGER):
            assert value not in output, case
    assert [row.master_key_id for row in await stored(db_settings)] == ["k1"]


@pytest.mark.e2e
async def test_ferryman_serve_with_several_workers_also_exits_non_zero(
    settings: Settings,
    openrouter: FakeOpenRouter,
    secret: Callable[[str], str],
    tmp_path: Path,
) -> None:
    """Every worker fails to start: the supervisor must see a failure, not a clean exit."""
    secrets = [secret("sk-or-v1-")]
    [key_id] = await store_keys(keyed(settings, K1), openrouter, secrets)
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump(pooled_gateway(openrouter.base_url)))
    env = {**process_env(settings, f"k1:{STRANGER}"), "FERRYMAN_WORKERS": "2"}
    code, output = await run_serve(config, env, tmp_path)
    assert "cannot be decrypted" in output and key_id in output, output
    assert "Traceback" not in output
    assert code != 0, output
