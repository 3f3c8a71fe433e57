"""Widget sessions' life (expiry, ending), other engines' requests, the daily budget per
origin, and history turned off: a served gateway in this process, a fake n8n."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from ferryman.clock import FakeClock
from ferryman.config.settings import Settings
from tests.fakes.n8n import FakeN8n
from tests.relay.support import SECRET, SHOP, create_session, send_message
from tests.support import client_session, serve_app


@pytest.fixture
async def n8n() -> AsyncIterator[FakeN8n]:
    fake = await FakeN8n().start()
    yield fake
    await fake.stop()


@pytest.fixture(autouse=True)
def secrets_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SESSION_SECRET_KEY", SECRET)
    monkeypatch.setenv("SIGNING_KEY", "signing-" + "k" * 32)


def gateway(n8n: FakeN8n, **relay: Any) -> dict[str, Any]:
    spec = {
        "upstream": "n8n",
        "allow_origins": [SHOP],
        "workflow": {"token": {"secret_env": "SESSION_SECRET_KEY"}},
        **relay,
    }
    return {"upstreams": {"n8n": {"url": n8n.webhook_url}}, "routes": [], "relays": [spec]}


async def validate(http: Any, base: str, token: str) -> dict[str, Any]:
    headers = {"Origin": SHOP, "Cookie": f"chat_session_id={token}"}
    async with http.get(f"{base}/api/v1/session/validate", headers=headers) as r:
        assert r.status == 200
        body: dict[str, Any] = await r.json()
        return body


async def test_a_session_expires_after_its_max_age(settings: Settings, n8n: FakeN8n) -> None:
    clock = FakeClock()
    config = gateway(n8n, session={"max_age": 3600})
    async with serve_app(settings, config, clock=clock) as gw, client_session() as http:
        _, token, r = await create_session(http, gw.url)
        assert "Max-Age=3600" in r.headers["Set-Cookie"]
        assert (await validate(http, gw.url, token))["valid"] is True
        clock.advance(seconds=3601)
        assert await validate(http, gw.url, token) == {"valid": False}
        sse = await send_message(http, gw.url, token, "still there?")
        assert (sse.status, sse.of("json")[0]["error"]) == (401, "session_invalid")
    assert n8n.requests == []


async def test_a_widget_ends_its_session(settings: Settings, n8n: FakeN8n) -> None:
    async with serve_app(settings, gateway(n8n)) as gw, client_session() as http:
        _, token, _ = await create_session(http, gw.url)
        headers = {"Origin": SHOP, "Cookie": f"chat_session_id={token}"}
        async with http.delete(f"{gw.url}/api/v1/session", headers=headers) as r:
            assert r.status == 204
            assert "Max-Age=0" in r.headers["Set-Cookie"]
        assert await validate(http, gw.url, token) == {"valid": False}
        assert (await send_message(http, gw.url, token, "x")).status == 401
        async with http.delete(f"{gw.url}/api/v1/session", headers=headers) as r:
            assert r.status == 401


async def test_a_template_engine_gets_its_body_and_a_signature_it_can_check(
    settings: Settings, n8n: FakeN8n
) -> None:
    workflow = {
        "engine": "template",
        "template": {"query": "{{message}}", "user": "{{session_id}}", "site": "{{origin}}",
                     "fixed": [1, "two"]},
        "signature": {"secret_env": "SIGNING_KEY"},
    }  # fmt: skip
    async with serve_app(settings, gateway(n8n, workflow=workflow)) as gw, client_session() as http:
        session_id, token, _ = await create_session(http, gw.url)
        assert (await send_message(http, gw.url, token, "hi there")).text == "Hello, world!"
    (request,) = n8n.requests
    assert request.body == {
        "query": "hi there", "user": session_id, "site": SHOP, "fixed": [1, "two"]
    }  # fmt: skip
    stamp, mac = (
        part.split("=", 1)[1] for part in request.headers["X-Ferryman-Signature"].split(",")
    )
    signed = stamp.encode() + b"." + orjson.dumps(request.body)
    expected = hmac.new(b"signing-" + b"k" * 32, signed, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(mac, expected)
    assert "Authorization" not in request.headers  # no token configured


async def test_an_origin_s_daily_budget_counts_every_session(
    settings: Settings, n8n: FakeN8n
) -> None:
    config = gateway(n8n, limits={"origin_daily": 2})
    async with serve_app(settings, config) as gw, client_session() as http:
        for _ in range(2):
            _, token, _ = await create_session(http, gw.url)
            assert (await send_message(http, gw.url, token, "x")).status == 200
        _, token, _ = await create_session(http, gw.url)
        refused = await send_message(http, gw.url, token, "x")
        assert refused.status == 429
        assert "2 per 86400 s" in refused.of("json")[0]["message"]
        assert "origin" in refused.of("json")[0]["message"]
    assert len(n8n.requests) == 2


async def test_history_can_be_turned_off(settings: Settings, n8n: FakeN8n) -> None:
    config = gateway(n8n, history={"enabled": False})
    async with serve_app(settings, config) as gw, client_session() as http:
        session_id, token, _ = await create_session(http, gw.url)
        assert (await send_message(http, gw.url, token, "x")).status == 200
        headers = {"Origin": SHOP, "Cookie": f"chat_session_id={token}"}
        async with http.get(f"{gw.url}/api/v1/chat/history/{session_id}", headers=headers) as r:
            assert r.status == 404
        assert gw.app.database is not None
        from ferryman.store import relay as rows

        assert await rows.messages(gw.app.database, session_id, None, 10) == []
