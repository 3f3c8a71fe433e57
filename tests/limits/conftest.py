from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.fakes.openrouter import FakeOpenRouter
from tests.limits.llm import POOL_KEY


@pytest.fixture
async def openrouter() -> AsyncIterator[FakeOpenRouter]:
    """The fake OpenRouter, knowing the pool key of `tests.limits.llm`."""
    fake = await FakeOpenRouter().start()
    fake.add_key(POOL_KEY, label="k")
    yield fake
    await fake.stop()
