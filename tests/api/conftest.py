"""Fixtures of the management API tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from ferryman.config.settings import Settings
from tests.api.helpers import Client, running
from tests.support import Running


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[tuple[Running, Client]]:
    """The app with default test settings, and a client for its management API."""
    async with running(settings) as (gw, client):
        yield gw, client
