"""`ferryman doctor` as a real process: a line per check naming what it looked at,
nothing changed, no secret shown, exit 1 when something fails."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from ferryman.upstreams.crypto import new_master_key
from tests.fakes.openrouter import FakeOpenRouter
from tests.upstreams.conftest import pooled_gateway
from tests.upstreams.test_cli_upstream_keys import Cli, Result

pytestmark = pytest.mark.e2e

LINE = re.compile(r"^(ok|warn|FAIL) +(\S+(?: \S+)?) +(.+)$")


@pytest.fixture
def cli(tmp_path: Path, openrouter: FakeOpenRouter) -> Cli:
    """`ferryman` in front of the fake, the pool lent only to client keys (an open route
    spending the pool would rightly be a warning of its own)."""
    runner = Cli(tmp_path, openrouter)
    gateway = pooled_gateway(openrouter.base_url, auth=["api_key"])
    Path(runner.env["FERRYMAN_CONFIG"]).write_text(yaml.safe_dump(gateway))
    return runner


def checks(result: Result) -> dict[str, tuple[str, str]]:
    """Check name -> (status, detail), every stdout line being one check."""
    out = {}
    for line in result.stdout.splitlines():
        match = LINE.match(line)
        assert match, line
        status, name, detail = match.groups()
        out[name.strip()] = (status, detail)
    return out


async def test_a_fresh_installation_is_checked_without_being_touched(cli: Cli) -> None:
    result = await cli("doctor")
    assert result.code == 0, result
    found = checks(result)
    assert found["configuration"] == (
        "ok",
        f"{cli.env['FERRYMAN_CONFIG']}: 1 upstream(s), 1 route(s)",
    )
    for name in ("secret_key", "key_pepper", "encryption_keys"):
        assert found[f"secret {name}"][0] == "warn"
        assert "generated into" in found[f"secret {name}"][1]
    assert found["database"][0] == "warn" and "does not exist yet" in found["database"][1]
    assert found["redis"][0] == "ok" and found["redis"][1].startswith("not set")
    status, detail = found["upstream openrouter"]
    assert status == "ok" and "reachable (HTTP " in detail
    assert "0 failed, 4 warnings" in result.stderr
    assert not cli.data_dir.exists()  # no secret generated, no database made


async def test_an_installation_in_use_is_all_ok_and_no_secret_is_printed(
    cli: Cli, secret: Callable[[str], str]
) -> None:
    key = secret("sk-or-v1-")
    assert (await cli.add(key, "--no-validate")).code == 0  # secrets, database, a key
    result = await cli("doctor")
    assert result.code == 0, result
    found = checks(result)
    assert {status for status, _ in found.values()} == {"ok"}, found
    assert found["secret key_pepper"][1] == f"from {cli.secrets_file.resolve()}"
    assert found["database"][1].endswith("(newest)")
    assert found["upstream keys"][1] == "1 stored, all open with k1"
    for value in (key, *cli.secrets().values()):
        assert value not in result.output


async def test_what_fails_is_named_and_the_exit_code_says_so(
    cli: Cli, tmp_path: Path, openrouter: FakeOpenRouter, secret: Callable[[str], str]
) -> None:
    assert (await cli.add(secret("sk-or-v1-"), "--no-validate", name="old")).code == 0
    gateway = pooled_gateway(openrouter.base_url, auth=["api_key"])
    gateway["upstreams"]["gone"] = {"url": "http://127.0.0.1:9"}  # nothing listens
    gateway["upstreams"]["fixed"] = {
        "url": openrouter.base_url,
        "credential": {"kind": "fixed", "value_env": "DOCTOR_TEST_UNSET"},
    }
    config = tmp_path / "broken.yaml"
    config.write_text(yaml.safe_dump(gateway))
    other = f"k9:{new_master_key()}"
    result = await cli(
        "doctor",
        "--config",
        str(config),
        env={"FERRYMAN_REDIS_URL": "redis://:hunter2hunter2@127.0.0.1:1/0",
             "FERRYMAN_ENCRYPTION_KEYS": other},
    )  # fmt: skip
    assert result.code == 1, result
    found = checks(result)
    assert found["upstream keys"] == ("FAIL", "do not open with the master keys: old (k1)")
    assert found["redis"][0] == "FAIL"
    assert found["redis"][1].startswith("redis://:***@127.0.0.1:1/0: ")
    assert found["upstream gone"][0] == "FAIL"
    assert found["upstream gone"][1].startswith("http://127.0.0.1:9: ")
    assert found["upstream fixed"] == ("FAIL", "credential: DOCTOR_TEST_UNSET is not set")
    assert found["upstream openrouter"][0] == "ok"
    assert "4 failed" in result.stderr
    assert "hunter2" not in result.output and other.split(":", 1)[1] not in result.output
    assert "Traceback" not in result.output


async def test_a_fleet_member_is_told_to_share_its_secrets(cli: Cli, redis_url: str) -> None:
    assert (await cli("migrate")).code == 0
    result = await cli("doctor", env={"FERRYMAN_REDIS_URL": redis_url})
    found = checks(result)
    assert found["redis"][0] == "ok" and re.search(r": redis \d+\.\d+", found["redis"][1])
    # migrate makes no secrets: they would be generated per instance at start.
    assert found["secret secret_key"][0] == "warn"
    assert (await cli.add("sk-or-v1-" + "z" * 64, "--no-validate")).code == 0
    found = checks(await cli("doctor", env={"FERRYMAN_REDIS_URL": redis_url}))
    status, detail = found["secret secret_key"]
    assert status == "warn" and detail.endswith("a fleet must share it: set FERRYMAN_SECRET_KEY")
