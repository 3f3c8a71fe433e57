"""Helpers for the management API tests: the app with an injectable clock, a client
that shows status, headers and body, and the error-format check."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from multidict import CIMultiDictProxy
from sqlalchemy import Table, select

from ferryman.auth.services import Auth
from ferryman.clock import Clock, FakeClock
from ferryman.config.settings import Settings
from ferryman.store import migrate
from ferryman.store.engine import Database, create_database
from tests.support import PASSWORD, Api, Running, client_session, gateway_dict, serve_app

#: The gateway needs an upstream; these tests never proxy to it.
NOWHERE = "http://127.0.0.1:9"

ERROR_KEYS = {"error", "message", "correlation_id", "timestamp"}


def real_now_clock() -> FakeClock:
    """A fake clock starting at the real time (tokens made outside the app use it)."""
    return FakeClock(datetime.now(UTC))


class Template:
    """An empty, migrated SQLite database that every test's gateway starts from a copy of.

    Migrating from nothing costs ~0.15 s a start. Start-up still checks (and applies)
    migrations on the copy, so a stale template cannot hide a migration problem.
    `directory` is set by a session fixture (tests/api/conftest.py); without it, each
    gateway migrates its own database as usual.
    """

    directory: Path | None = None
    ready = False

    @classmethod
    async def seed(cls, settings: Settings) -> None:
        if cls.directory is None or settings.database_url is not None:
            return
        target = Path(settings.data_dir)
        if (target / "ferryman.db").exists():
            return
        if not cls.ready:
            template = settings.model_copy(update={"data_dir": cls.directory})

            async def build() -> None:
                database = create_database(template)
                try:
                    await migrate.upgrade(database)
                finally:
                    await database.dispose()

            # Alembic's work is synchronous; on its own loop it blocks no test's loop.
            await asyncio.to_thread(asyncio.run, build())
            cls.ready = True
        target.mkdir(parents=True, exist_ok=True)
        for path in cls.directory.glob("ferryman.db*"):
            shutil.copyfile(path, target / path.name)


@contextlib.asynccontextmanager
async def serve(settings: Settings, clock: Clock | None = None) -> AsyncIterator[Running]:
    """`tests.support.serve_app` on a copy of the migrated template database."""
    await Template.seed(settings)
    async with serve_app(settings, gateway_dict(NOWHERE), clock=clock) as gw:
        yield gw


@dataclass
class Reply:
    status: int
    headers: CIMultiDictProxy[str]
    raw: bytes
    cookies: list[str] = field(default_factory=list)

    @property
    def json(self) -> Any:
        return json.loads(self.raw) if self.raw else None

    @property
    def text(self) -> str:
        return self.raw.decode("utf-8", "replace")


class Client(Api):
    """`tests.support.Api` plus full replies (headers, cookies) and cookie/CSRF sending."""

    async def send(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        cookie: str | None = None,
        csrf: str | None = None,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> Reply:
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        if cookie is not None:
            sent["Cookie"] = f"session_token={cookie}"
        if csrf is not None:
            sent["X-CSRF-Token"] = csrf
        async with self.http.request(method, self.base + path, headers=sent, **kwargs) as r:
            raw = await r.read()
            return Reply(r.status, r.headers, raw, r.headers.getall("Set-Cookie", []))

    async def login_reply(
        self, username: str, password: str = PASSWORD, headers: Mapping[str, str] | None = None
    ) -> Reply:
        return await self.send(
            "POST",
            "/auth/login",
            json={"username": username, "password": password},
            headers=headers,
        )

    async def session(self, username: str, password: str = PASSWORD) -> tuple[str, str, Reply]:
        """Log in with a session: the cookie value, the CSRF token and the reply."""
        reply = await self.send(
            "POST", "/auth/session", json={"username": username, "password": password}
        )
        assert reply.status == 200, (reply.status, reply.text)
        cookie = session_cookie(reply)
        assert cookie is not None
        return cookie, reply.json["csrf_token"], reply


@contextlib.asynccontextmanager
async def running(
    settings: Settings, clock: Clock | None = None
) -> AsyncIterator[tuple[Running, Client]]:
    """The app and a client for its management API."""
    async with serve(settings, clock) as gw, client_session() as http:
        yield gw, Client(http, gw.url)


def session_cookie(reply: Reply) -> str | None:
    """The `session_token` value the reply set, if any."""
    for line in reply.cookies:
        name, _, rest = line.partition("=")
        if name.strip() == "session_token":
            return rest.split(";", 1)[0].strip('"')
    return None


def cookie_attributes(set_cookie: str) -> dict[str, str]:
    """A Set-Cookie line's attributes, names lower-cased (flags map to "")."""
    attributes: dict[str, str] = {}
    for part in set_cookie.split(";")[1:]:
        name, _, value = part.strip().partition("=")
        attributes[name.lower()] = value
    return attributes


def assert_error(reply: Reply | tuple[int, Any], status: int, code: str) -> dict[str, Any]:
    """The reply is the gateway's JSON error with this status and code."""
    got_status, body = (reply.status, reply.json) if isinstance(reply, Reply) else reply
    assert got_status == status, (got_status, body)
    assert isinstance(body, dict), body
    assert set(body) >= ERROR_KEYS, body
    assert set(body) - ERROR_KEYS <= {"details"}, body
    assert body["error"] == code, body
    assert isinstance(body["message"], str) and body["message"], body
    assert isinstance(body["correlation_id"], str) and body["correlation_id"], body
    stamp = datetime.fromisoformat(body["timestamp"].replace("Z", "+00:00"))
    assert stamp.tzinfo is not None
    return body


def auth_of(gw: Running) -> Auth:
    assert gw.app.auth is not None
    return gw.app.auth


def database_of(gw: Running) -> Database:
    assert gw.app.database is not None
    return gw.app.database


async def rows(gw: Running, table: Table) -> list[dict[str, Any]]:
    """Every row of a table, as dicts."""
    async with database_of(gw).engine.connect() as conn:
        result = await conn.execute(select(table))
        return [dict(row._mapping) for row in result]


async def row(gw: Running, table: Table, row_id: str) -> dict[str, Any]:
    async with database_of(gw).engine.connect() as conn:
        found = (await conn.execute(select(table).where(table.c.id == row_id))).first()
    assert found is not None, row_id
    return dict(found._mapping)


async def make_admin(gw: Running, client: Client, username: str = "root") -> tuple[Any, str]:
    """A registered user promoted to admin (as an earlier admin would), and their JWT."""
    user = await client.register(username)
    await auth_of(gw).users.set_access(user["id"], role="admin", permissions=None)
    return user, await client.login(username)
