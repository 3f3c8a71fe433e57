"""`FERRYMAN_ADMIN_USERNAME`'s account, made by whichever worker starts first: several
workers starting at once on one database must all start (a race once stopped one)."""

from __future__ import annotations

import asyncio

from ferryman.config.settings import Settings
from ferryman.store import users as rows
from tests.api.helpers import auth_of
from tests.support import PASSWORD, gateway_dict, serve_app


async def test_workers_making_the_admin_at_once_all_get_it(settings: Settings) -> None:
    async with serve_app(settings, gateway_dict("http://127.0.0.1:9")) as gw:
        auth = auth_of(gw)
        made = await asyncio.gather(*(auth.users.ensure_admin("boss", PASSWORD) for _ in range(5)))
        assert len({user.id for user in made}) == 1
        assert {user.role for user in made} == {"admin"}
        found = await rows.by_login(auth.db, "boss")
        assert found is not None and found.id == made[0].id
