"""Fixtures of the management API tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from ferryman.config.settings import Settings
from tests.api.helpers import Client, Template, running
from tests.support import Running


@pytest.fixture(scope="session", autouse=True)
def database_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Where the migrated database every gateway here starts from is kept."""
    Template.directory = tmp_path_factory.mktemp("database-template")
    yield
    Template.directory, Template.ready = None, False


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[tuple[Running, Client]]:
    """The app with default test settings, and a client for its management API."""
    async with running(settings) as (gw, client):
        yield gw, client
