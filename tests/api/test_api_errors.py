"""How the management API answers what it cannot serve: always one JSON error, with the
status its OpenAPI document gives, and one log line for a bug of ours."""

from __future__ import annotations

from typing import Any

import pytest

from ferryman.config.settings import Settings
from tests.api.helpers import assert_error, make_admin, running
from tests.conftest import LogReader


async def test_a_bug_in_the_api_is_a_json_500_logged_once(
    settings: Settings, logs: LogReader, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ferryman.store import users

    async def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("a bug in the management API")

    async with running(settings) as (_, client):
        _, token = await client.user("ada")
        monkeypatch.setattr(users, "get", broken)
        reply = await client.send("GET", "/users/me", token=token)
        monkeypatch.undo()
        assert reply.status == 500
        assert_error(reply, 500, "internal_error")
        assert "bug" not in reply.text
        assert (await client.send("GET", "/users/me", token=token)).status == 200
    (told,) = logs.events("unhandled_error")
    assert told["correlation_id"] == reply.json["correlation_id"]
    assert "RuntimeError: a bug in the management API" in told["exception"]
    (line,) = [e for e in logs.events("request") if e["status"] == 500]
    assert line["error"] == "internal_error"
    assert not logs.events("Exception in ASGI application")


async def test_a_wrong_method_lists_every_method_of_the_path(settings: Settings) -> None:
    async with running(settings) as (_, client):
        _, token = await client.user("bob")
        for path, methods in (
            ("/keys", "GET, POST"),
            ("/keys/some-id", "DELETE, GET, PATCH"),
            ("/auth/login", "POST"),
        ):
            reply = await client.send("PUT", path, token=token)
            assert_error(reply, 405, "method_not_allowed")
            assert reply.headers["Allow"] == methods, path


async def test_a_body_that_is_not_utf8_is_refused_as_malformed_json(settings: Settings) -> None:
    async with running(settings) as (_, client):
        for body in (b"\xff\xfe{", b'{"name": "k"'):
            reply = await client.send(
                "POST", "/auth/login", data=body, headers={"Content-Type": "application/json"}
            )
            assert_error(reply, 422, "validation_error")
            assert reply.json["details"][0]["field"] == "(body)"


@pytest.mark.parametrize(
    "query",
    [
        "/admin/users?offset=9999999999999999999",
        "/admin/users?offset=1000000001",
        "/admin/users?limit=501",
        "/usage?page=97693427969633520",
        "/usage?page=1&limit=100000",
        "/stats/provider-keys?page=1000001",
        "/stats?start_date=0",
        "/stats?start_date=2026-1-1",
        "/usage?end_date=20261206",
        "/credits?limit=-1",
    ],
)
async def test_numbers_and_dates_out_of_bounds_are_422(settings: Settings, query: str) -> None:
    async with running(settings) as (gw, client):
        _, admin = await make_admin(gw, client)
        reply = await client.send("GET", query, token=admin)
        assert_error(reply, 422, "validation_error")


async def test_the_furthest_pages_answer_empty(settings: Settings) -> None:
    async with running(settings) as (gw, client):
        _, admin = await make_admin(gw, client)
        for query in (
            "/admin/users?offset=1000000000",
            "/usage?page=1000000&limit=1000",
            "/stats/provider-keys?page=1000000&end_date=0001-01-02",
            "/stats/provider-keys/none/history?start_date=0001-01-01&end_date=9999-12-31",
        ):
            reply = await client.send("GET", query, token=admin)
            assert reply.status in (200, 404), (query, reply.json)
            if reply.status == 200:
                assert reply.json["items"] == [], query
