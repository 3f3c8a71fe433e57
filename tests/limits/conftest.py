from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.openrouter import FakeOpenRouter
from tests.limits.llm import POOL_KEY
from tests.support import GatewayProcess


@pytest.fixture
async def openrouter() -> AsyncIterator[FakeOpenRouter]:
    """The fake OpenRouter, knowing the pool key of `tests.limits.llm`."""
    fake = await FakeOpenRouter().start()
    fake.add_key(POOL_KEY, label="k")
    yield fake
    await fake.stop()


@pytest.fixture
async def processes(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """`await processes(name, gateway, env)` starts `ferryman serve`; all are stopped
    at the end (they share one data directory)."""
    started: list[GatewayProcess] = []

    async def start(name: str, gateway: dict[str, Any], env: dict[str, str]) -> GatewayProcess:
        workdir = tmp_path / name
        workdir.mkdir()
        shared = {"FERRYMAN_DATA_DIR": str(tmp_path / "data"), **env}
        proc = GatewayProcess(workdir, gateway, shared)
        started.append(proc)
        return await proc.start()

    yield start
    for proc in started:
        await proc.stop()
