"""Schemathesis against the management API of a real `ferryman serve`.

Every operation of the OpenAPI document, with its examples, its coverage cases (each
bound, each type, each missing field) and fuzzed requests, with every check on: no
server error, every status and content type documented, every answer on its schema,
every schema-valid request accepted (but for the refusals tests/api/schemathesis.toml
lists, each for a reason no schema can state) and every schema-violating one refused,
an `Allow` true to the document. The seed is fixed, so a failure here fails the same
way on every machine; `st replay` in the output reproduces a case.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.openrouter import FakeOpenRouter
from tests.support import Api, GatewayProcess, client_session

pytestmark = pytest.mark.timeout(600)

CONFIG = Path(__file__).with_name("schemathesis.toml")
SEED = "20261206"
EXAMPLES = "25"
PROVIDER_KEY = "sk-or-v1-" + "f" * 40

ENV = {
    "FERRYMAN_DOCS_ENABLED": "true",
    "FERRYMAN_ADMIN_USERNAME": "root",
    "FERRYMAN_ADMIN_PASSWORD": "root password long",
    "FERRYMAN_REGISTRATION_ENABLED": "true",
    # The run makes a few thousand calls from one address: the API's own limits would
    # answer most of them 429 (documented, but nothing else would be tested).
    "FERRYMAN_AUTH_RATE_LIMIT": "1000000/minute",
    "FERRYMAN_STATS_RATE_LIMIT": "1000000/hour",
    "FERRYMAN_PASSWORD_HASH_TIME_COST": "1",
    "FERRYMAN_PASSWORD_HASH_MEMORY_KIB": "64",
    "FERRYMAN_PASSWORD_HASH_PARALLELISM": "1",
}


@pytest.fixture
async def openrouter() -> AsyncIterator[FakeOpenRouter]:
    fake = await FakeOpenRouter().start()
    fake.add_key(PROVIDER_KEY, label="fuzz")
    yield fake
    await fake.stop()


def gateway(openrouter_url: str) -> dict[str, Any]:
    return {
        "upstreams": {
            "openrouter": {
                "url": openrouter_url,
                "provider": "openrouter",
                "credential": {"kind": "pool", "probe_interval": 0},
            }
        },
        "routes": [{"name": "llm", "path": "/v1", "upstream": "openrouter", "strip_prefix": True}],
    }


async def seed(url: str, role: str) -> dict[str, str]:
    """Things for the operations on an id to find, owned by the caller; the ids and
    the caller's token, for the config file."""
    async with client_session() as http:
        api = Api(http, url)
        admin = await api.login("root", "root password long")
        user, token = await api.user("sam")
        if role == "admin":
            token = admin
        key = await api.new_key(token)
        record = await api.new_pass(token)
        _, provider_key = await api.call(
            "POST",
            "/upstream-keys",
            token=admin,
            json={"upstream": "openrouter", "name": "fuzz", "key": PROVIDER_KEY},
            expect=201,
        )
    return {
        "FM_TOKEN": token,
        "FM_USER_ID": user["id"],
        "FM_KEY_ID": key["id"],
        "FM_PASS_ID": record["id"],
        "FM_UPSTREAM_KEY_ID": provider_key["id"],
    }


@pytest.mark.parametrize("role", ["admin", "user"])
async def test_the_management_api_answers_as_its_openapi_document_says(
    tmp_path: Path, openrouter: FakeOpenRouter, role: str
) -> None:
    gw = GatewayProcess(tmp_path, gateway(openrouter.base_url), ENV)
    await gw.start()
    try:
        ids = await seed(gw.url, role)
        st = Path(sys.executable).with_name("st")
        run = await asyncio.create_subprocess_exec(
            *(str(st), "--config-file", str(CONFIG), "--no-color", "run"),
            f"{gw.url}/openapi.json",
            *("--checks", "all", "--phases", "examples,coverage,fuzzing"),
            *("--max-examples", EXAMPLES, "--seed", SEED, "--workers", "1"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, **ids},
            cwd=tmp_path,
        )
        output, _ = await run.communicate()
    finally:
        await gw.stop()
    report = output.decode(errors="replace")
    assert run.returncode == 0, report
    assert "35 operations" in report or "Tested: 35" in report, report
    # Nothing the fuzzer sent was a bug of ours, even where its answer was documented.
    assert not [e for e in gw.lines() if e.get("event") == "unhandled_error"]
    statuses = [e["status"] for e in gw.lines() if e.get("event") == "request"]
    assert len(statuses) > 1000 and 500 not in statuses
