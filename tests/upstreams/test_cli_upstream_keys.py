"""`ferryman upstream-keys` and `ferryman master-key rotate`, as real processes."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import stat
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from ferryman.upstreams.crypto import new_master_key
from tests.fakes.openrouter import KEY_PATH, FakeOpenRouter
from tests.upstreams.conftest import pooled_gateway

pytestmark = pytest.mark.e2e

FERRYMAN = str(Path(sys.executable).with_name("ferryman"))


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


class Cli:
    """Runs `ferryman` with a data dir of its own and a gateway pooled in front of the fake."""

    def __init__(self, tmp_path: Path, fake: FakeOpenRouter) -> None:
        self.data_dir = tmp_path / "data"
        config = tmp_path / "gateway.yaml"
        config.write_text(yaml.safe_dump(pooled_gateway(fake.base_url)))
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("FERRYMAN_")}
        self.env.update(FERRYMAN_DATA_DIR=str(self.data_dir), FERRYMAN_CONFIG=str(config))
        self.cwd = tmp_path

    async def __call__(
        self, *args: str, stdin: str = "", env: dict[str, str] | None = None
    ) -> Result:
        proc = await asyncio.create_subprocess_exec(
            FERRYMAN,
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**self.env, **(env or {})},
            cwd=self.cwd,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), 30)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            pytest.fail(f"ferryman {' '.join(args)} did not finish")
        assert proc.returncode is not None
        return Result(proc.returncode, out.decode(), err.decode())

    async def add(self, key: str, *extra: str, name: str = "a") -> Result:
        return await self(
            "upstream-keys",
            "add",
            "--upstream",
            "openrouter",
            "--name",
            name,
            *extra,
            stdin=key + "\n",
        )

    @property
    def secrets_file(self) -> Path:
        return self.data_dir / "secrets.json"

    def secrets(self) -> dict[str, str]:
        data: dict[str, str] = json.loads(self.secrets_file.read_text())
        return data

    def stored(self) -> list[tuple[str, str, str]]:
        """(id, name, master key id) of every stored upstream key."""
        with sqlite3.connect(self.data_dir / "ferryman.db") as db:
            return list(db.execute("SELECT id, name, master_key_id FROM upstream_keys"))

    def data_bytes(self) -> bytes:
        return b"".join(p.read_bytes() for p in self.data_dir.iterdir() if p.is_file())


@pytest.fixture
def cli(tmp_path: Path, openrouter: FakeOpenRouter) -> Cli:
    return Cli(tmp_path, openrouter)


def masked(key: str) -> str:
    return f"{key[:8]}…{key[-4:]}"


def clean_failure(result: Result) -> str:
    """Exit 1 with one `error:` message (after any JSON log lines) and no traceback; the
    message."""
    assert result.code == 1, result
    assert result.stdout == ""
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    starts = [n for n, line in enumerate(lines) if line.startswith("error: ")]
    assert starts, result
    for line in lines[: starts[0]]:
        json.loads(line)  # log lines only before the message
    return "\n".join(lines[starts[0] :])


async def test_add_validates_the_key_and_shows_only_its_masked_form(
    cli: Cli, openrouter: FakeOpenRouter, secret: Callable[[str], str]
) -> None:
    key = secret("sk-or-v1-")
    openrouter.add_key(key)
    added = await cli.add(key)
    assert added.code == 0, added
    key_id = added.stdout.strip()
    assert added.stdout == key_id + "\n"
    assert str(uuid.UUID(key_id)) == key_id
    assert f"added {masked(key)} to the shared pool of openrouter as a" in added.stderr
    assert key not in added.output
    assert [(call.method, call.path, call.key) for call in openrouter.requests] == [
        ("GET", KEY_PATH, key)
    ]
    assert openrouter.requests[0].headers["authorization"] == f"Bearer {key}"

    stranger = new_master_key()
    listed, wrong = await asyncio.gather(
        cli("upstream-keys", "list"),
        cli("upstream-keys", "list", env={"FERRYMAN_ENCRYPTION_KEYS": f"k1:{stranger}"}),
    )
    assert listed.code == 0, listed
    [line] = listed.stdout.splitlines()
    assert line.split()[:5] == [key_id, "openrouter", "a", masked(key), "healthy"]
    assert key not in listed.output
    assert cli.stored() == [(key_id, "a", "k1")]
    # Sealed at rest: the database and the secrets file never hold the plaintext.
    assert key.encode() not in cli.data_bytes()
    assert stat.S_IMODE(cli.secrets_file.stat().st_mode) == 0o600

    # With another key under the same id, nothing opens: a clear error, not a traceback.
    message = clean_failure(wrong)
    assert "cannot be decrypted" in message
    assert key_id in message and "does not open with master key 'k1'" in message
    for value in (key, stranger, cli.secrets()["encryption_keys"]):
        assert value not in wrong.output


async def test_a_key_the_provider_refuses_is_not_added(
    cli: Cli, openrouter: FakeOpenRouter, secret: Callable[[str], str]
) -> None:
    key = secret("sk-or-v1-")
    openrouter.add_key(key, behaviour="401")
    result = await cli.add(key)
    assert "401" in clean_failure(result)
    assert key not in result.output
    assert [(call.path, call.status) for call in openrouter.requests] == [(KEY_PATH, 401)]
    assert cli.stored() == []


async def test_add_without_a_key_on_stdin_says_how_to_give_one(
    cli: Cli, openrouter: FakeOpenRouter
) -> None:
    add = ("upstream-keys", "add", "--upstream", "openrouter", "--name", "a")
    for result in await asyncio.gather(*(cli(*add, stdin=given) for given in ("", "  \n"))):
        assert "no key on standard input" in clean_failure(result)
    assert openrouter.requests == []


async def test_add_for_a_user_who_does_not_exist_fails_before_asking_the_provider(
    cli: Cli, openrouter: FakeOpenRouter, secret: Callable[[str], str]
) -> None:
    key = secret("sk-or-v1-")
    openrouter.add_key(key)
    result = await cli.add(key, "--user", "nobody")
    assert "no user 'nobody'" in clean_failure(result)
    assert key not in result.output
    assert openrouter.requests == []
    assert cli.stored() == []


async def test_rotate_with_a_new_key_adds_it_to_the_generated_secrets_and_reseals(
    cli: Cli, openrouter: FakeOpenRouter, secret: Callable[[str], str]
) -> None:
    key = secret("sk-or-v1-")
    added = await cli.add(key, "--no-validate")
    assert added.code == 0, added
    key_id = added.stdout.strip()
    before = cli.secrets()
    assert before["encryption_keys"].startswith("k1:")

    rotated = await cli("master-key", "rotate", "--new-key")
    assert rotated.code == 0, rotated
    assert "1 upstream key(s) re-encrypted under k2; 0 already were" in rotated.stdout
    assert "new master key k2 added" in rotated.stderr
    after = cli.secrets()
    newest, _, rest = after["encryption_keys"].partition(",")
    assert rest == before["encryption_keys"]
    assert newest.startswith("k2:")
    assert {k: v for k, v in after.items() if k != "encryption_keys"} == {
        k: v for k, v in before.items() if k != "encryption_keys"
    }
    assert stat.S_IMODE(cli.secrets_file.stat().st_mode) == 0o600
    materials = [part.partition(":")[2] for part in after["encryption_keys"].split(",")]
    assert all(material and material not in rotated.output for material in materials)
    assert cli.stored() == [(key_id, "a", "k2")]

    # The key opens under the new list; the old master key alone no longer opens it.
    listed, old_only = await asyncio.gather(
        cli("upstream-keys", "list"),
        cli("upstream-keys", "list", env={"FERRYMAN_ENCRYPTION_KEYS": rest}),
    )
    assert listed.code == 0, listed
    assert masked(key) in listed.stdout
    assert key not in listed.output
    message = clean_failure(old_only)
    assert "cannot be decrypted" in message
    assert key_id in message and "master key 'k2'" in message
    assert key not in old_only.output
    assert all(material not in old_only.output for material in materials)
    assert openrouter.requests == []


async def test_rotate_new_key_is_refused_when_the_operator_sets_the_keys(cli: Cli) -> None:
    configured = f"k1:{new_master_key()}"
    result = await cli(
        "master-key", "rotate", "--new-key", env={"FERRYMAN_ENCRYPTION_KEYS": configured}
    )
    message = clean_failure(result)
    assert "FERRYMAN_ENCRYPTION_KEYS is set" in message
    assert "k2:" in message  # which id to add
    assert configured.partition(":")[2] not in result.output
    assert "encryption_keys" not in cli.secrets()
