"""Seed 004's chat relay through a real `ferryman serve` and a fake n8n on loopback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import jwt
import pytest

from tests.fakes.n8n import FakeN8n
from tests.relay.support import (
    BLOG,
    EVIL,
    SECRET,
    SHOP,
    create_session,
    relay_env,
    relay_gateway,
    send_message,
)
from tests.support import GatewayProcess, client_session

Start = Callable[..., Awaitable[GatewayProcess]]


@pytest.fixture
async def n8n() -> AsyncIterator[FakeN8n]:
    fake = await FakeN8n().start()
    yield fake
    await fake.stop()


@pytest.fixture
async def relay(tmp_path: Path, n8n: FakeN8n) -> AsyncIterator[Start]:
    started: list[GatewayProcess] = []

    async def start(**spec: Any) -> GatewayProcess:
        gw = GatewayProcess(tmp_path, relay_gateway(**spec), relay_env(n8n))
        started.append(gw)
        return await gw.start()

    yield start
    for gw in started:
        await gw.stop()


async def test_a_session_from_an_allowed_origin_and_refused_from_any_other(
    relay: Start,
) -> None:
    gw = await relay()
    async with client_session() as http:
        session_id, token, r = await create_session(http, gw.url)
        cookie = r.headers["Set-Cookie"]
        attributes = [part.strip() for part in cookie.split(";")]
        assert attributes[0] == f"chat_session_id={token}" and session_id not in token
        assert set(attributes[1:]) == {
            "Path=/api/v1", "Max-Age=86400", "HttpOnly", "SameSite=None", "Secure"
        }  # fmt: skip
        assert r.headers["Access-Control-Allow-Origin"] == SHOP
        assert r.headers["Access-Control-Allow-Credentials"] == "true"

        for origin, code in ((EVIL, "origin_not_allowed"), (None, "origin_required")):
            headers = {"Origin": origin} if origin else {}
            async with http.post(
                f"{gw.url}/api/v1/session/create", json={}, headers=headers
            ) as refused:
                assert refused.status == 403
                assert (await refused.json())["error"] == code
                assert "Set-Cookie" not in refused.headers
        async with http.options(
            f"{gw.url}/api/v1/chat/stream",
            headers={"Origin": SHOP, "Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "content-type"},
        ) as pre:  # fmt: skip
            assert pre.status == 204
            assert pre.headers["Access-Control-Allow-Headers"] == "content-type"

        cookie_header = {"Cookie": f"chat_session_id={token}"}
        async with http.get(
            f"{gw.url}/api/v1/session/validate", headers={"Origin": SHOP, **cookie_header}
        ) as ok:
            body = await ok.json()
        assert body["valid"] is True and body["session_id"] == session_id
        assert body["origin_domain"] == "shop.example"
        # The same cookie from another allowed origin's page is not that session.
        async with http.get(
            f"{gw.url}/api/v1/session/validate", headers={"Origin": BLOG, **cookie_header}
        ) as other:
            assert other.status == 403
            assert (await other.json())["error"] == "session_origin_mismatch"
        sse = await send_message(http, gw.url, token, "hi", origin=BLOG)
        assert sse.status == 403
        async with http.get(
            f"{gw.url}/api/v1/session/validate",
            headers={"Origin": SHOP, "Cookie": "chat_session_id=forged"},
        ) as forged:
            assert (await forged.json()) == {"valid": False}


async def test_a_message_streams_back_before_the_workflow_finished_with_a_jwt_it_can_verify(
    relay: Start, n8n: FakeN8n
) -> None:
    gw = await relay()
    n8n.mode, n8n.interval = "ndjson", 0.3
    async with client_session() as http:
        session_id, token, _ = await create_session(http, gw.url)
        sent = time.time()
        sse = await send_message(http, gw.url, token, "Where is my order?")
    assert sse.status == 200
    assert sse.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    assert sse.headers["X-Accel-Buffering"] == "no"
    assert sse.kinds == ["begin", "chunk", "chunk", "chunk", "chunk", "done"]
    assert sse.text == "Hello, world!"
    first_chunk = next(at for at, kind, _ in sse.events if kind == "chunk")
    assert first_chunk < n8n.finished_at[0] - 0.5  # three more pieces were still to come
    assert sse.comments  # heartbeats while the workflow thought

    (request,) = n8n.requests
    assert request.body["action"] == "sendMessage"
    assert request.body["sessionId"] == session_id
    assert request.body["chatInput"] == "Where is my order?"
    assert request.body["metadata"]["origin"] == SHOP
    scheme, _, token_sent = request.headers["Authorization"].partition(" ")
    assert scheme == "Bearer"
    claims = jwt.decode(token_sent, SECRET, algorithms=["HS256"])
    assert claims["sub"] == session_id and claims["origin"] == SHOP
    assert claims["exp"] - claims["iat"] == 30 and claims["exp"] <= sent + 31
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token_sent, "another secret" * 3, algorithms=["HS256"])
    assert token not in str(request.headers) and token not in str(request.body)


@pytest.mark.parametrize("mode", ["json", "text", "sse"])
async def test_json_text_and_sse_answers_become_the_same_stream(
    relay: Start, n8n: FakeN8n, mode: str
) -> None:
    gw = await relay()
    n8n.mode = mode
    async with client_session() as http:
        _, token, _ = await create_session(http, gw.url)
        sse = await send_message(http, gw.url, token, "hello", path="/api/v1/chat/message")
    assert sse.kinds[0] == "begin" and sse.kinds[-1] == "done"
    assert sse.text == "Hello, world!"


async def test_history_in_order_and_not_readable_by_another_session(
    relay: Start, n8n: FakeN8n
) -> None:
    gw = await relay()
    n8n.mode = "ndjson"
    async with client_session() as http:
        session_id, token, _ = await create_session(http, gw.url)
        for text in ("first", "second"):
            assert (await send_message(http, gw.url, token, text)).kinds[-1] == "done"
        url = f"{gw.url}/api/v1/chat/history/{session_id}"
        mine = {"Origin": SHOP, "Cookie": f"chat_session_id={token}"}
        async with http.get(url, headers=mine) as r:
            body = await r.json()
        assert r.status == 200
        assert [(m["role"], m["content"]) for m in body["messages"]] == [
            ("user", "first"), ("assistant", "Hello, world!"),
            ("user", "second"), ("assistant", "Hello, world!"),
        ]  # fmt: skip
        stamps = [m["created_at"] for m in body["messages"]]
        assert stamps == sorted(stamps) and all(s.endswith("Z") for s in stamps)
        async with http.get(url, params={"limit": "3"}, headers=mine) as r:
            page = await r.json()
        assert len(page["messages"]) == 3 and page["next"] == page["messages"][-1]["id"]
        async with http.get(url, params={"after": page["next"]}, headers=mine) as r:
            rest = await r.json()
        assert [m["content"] for m in rest["messages"]] == ["Hello, world!"]
        assert rest["next"] is None

        _, other, _ = await create_session(http, gw.url)
        theirs = {"Origin": SHOP, "Cookie": f"chat_session_id={other}"}
        async with http.get(url, headers=theirs) as r:
            assert r.status == 404
            assert (await r.json())["error"] == "history_not_found"
        async with http.get(url, headers={"Origin": SHOP}) as r:
            assert r.status == 401


async def test_limits_per_session_and_per_ip(relay: Start, n8n: FakeN8n) -> None:
    gw = await relay(limits={"session": ["2/minute"], "ip": ["3/minute"]})
    async with client_session() as http:
        _, one, _ = await create_session(http, gw.url)
        assert [(await send_message(http, gw.url, one, "x")).status for _ in range(3)] == [
            200, 200, 429
        ]  # fmt: skip
        refused = await send_message(http, gw.url, one, "x")
        assert refused.of("json")[0]["error"] == "rate_limited"
        assert "session" in refused.of("json")[0]["message"]
        assert int(refused.headers["Retry-After"]) > 0
        _, two, _ = await create_session(http, gw.url)
        assert (await send_message(http, gw.url, two, "x")).status == 200  # the IP's third
        refused = await send_message(http, gw.url, two, "x")
        assert refused.status == 429 and "ip" in refused.of("json")[0]["message"]
    assert len(n8n.requests) == 3


async def test_bad_messages_get_a_clear_error_and_reach_no_workflow(
    relay: Start, n8n: FakeN8n
) -> None:
    gw = await relay(message_max=10)
    async with client_session() as http:
        _, token, _ = await create_session(http, gw.url)
        headers = {"Origin": SHOP, "Cookie": f"chat_session_id={token}"}
        cases: list[tuple[Any, int, str]] = [
            (b"{not json", 400, "invalid_json"),
            (b"[1, 2]", 400, "invalid_body"),
            (b'{"message": 5}', 400, "invalid_body"),
            (b'{"message": "   "}', 400, "invalid_body"),
            (b'{"message": "' + b"x" * 11 + b'"}', 413, "message_too_long"),
            (b'{"message": "' + b"x" * 100_000 + b'"}', 413, "body_too_large"),
        ]
        for body, status, code in cases:
            async with http.post(f"{gw.url}/api/v1/chat/stream", data=body, headers=headers) as r:
                assert (r.status, (await r.json())["error"]) == (status, code), body[:20]
        async with http.get(f"{gw.url}/api/v1/chat/stream", headers=headers) as r:
            assert r.status == 405
    assert n8n.requests == []


@pytest.mark.parametrize(
    ("mode", "code"),
    [
        ("hang", "workflow_timeout"),
        ("die", "workflow_disconnected"),
        ("error", "workflow_failed"),
        ("status", "workflow_failed"),
        ("garbage", "workflow_failed"),
    ],
)
async def test_a_workflow_that_hangs_dies_or_fails_ends_with_an_error_event(
    relay: Start, n8n: FakeN8n, mode: str, code: str
) -> None:
    gw = await relay(upstream_spec={"timeout": {"read": 1}})
    n8n.mode = mode
    async with client_session() as http:
        _, token, _ = await create_session(http, gw.url)
        started = time.monotonic()
        sse = await asyncio.wait_for(send_message(http, gw.url, token, "hello"), 10)
    assert sse.status == 200 and sse.kinds[0] == "begin" and sse.kinds[-1] == "error"
    (error,) = sse.of("error")
    assert error["error"] == code
    assert sse.ended_at - started < 5  # the stream was closed, nothing hangs
    await gw.stop()
    output = gw.output() + str(error)
    for secret in (SECRET, token, str(n8n.port), n8n.webhook_url):
        assert secret not in str(error)
    assert SECRET not in output and token not in output


async def test_the_breaker_in_front_of_the_workflow(relay: Start, n8n: FakeN8n) -> None:
    breaker = {"failures": 2, "failure_rate": None, "open_for": 30}
    gw = await relay(upstream_spec={"breaker": breaker})
    n8n.mode = "status"
    async with client_session() as http:
        _, token, _ = await create_session(http, gw.url)
        for _ in range(2):
            assert (await send_message(http, gw.url, token, "x")).kinds[-1] == "error"
        refused = await send_message(http, gw.url, token, "x")
        assert refused.status == 503
        assert refused.of("json")[0]["error"] == "upstream_circuit_open"
        assert refused.headers["Access-Control-Allow-Origin"] == SHOP
    assert len(n8n.requests) == 2


async def test_a_widget_that_leaves_cancels_the_workflow_call(relay: Start, n8n: FakeN8n) -> None:
    gw = await relay()
    n8n.mode = "hang"
    async with client_session() as http:
        _, token, _ = await create_session(http, gw.url)
        headers = {"Origin": SHOP, "Cookie": f"chat_session_id={token}"}
        async with http.post(
            f"{gw.url}/api/v1/chat/stream", json={"message": "x"}, headers=headers
        ) as r:
            await r.content.readline()  # the begin event
            while not n8n.requests:  # the workflow is thinking
                await asyncio.sleep(0.01)
    await asyncio.wait_for(n8n.cancelled.wait(), 5)
    await gw.stop()
    (line,) = [e for e in gw.lines() if e.get("path") == "/api/v1/chat/stream"]
    assert (line["status"], line["error"]) == (499, "client_disconnected")


def test_check_config_names_a_missing_variable(tmp_path: Path) -> None:
    import subprocess
    import sys

    import yaml

    path = tmp_path / "relay.yaml"
    path.write_text(yaml.safe_dump(relay_gateway()))
    out = subprocess.run(
        [sys.executable, "-m", "ferryman", "check-config", str(path)],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert out.returncode != 0
    assert "N8N_WEBHOOK_URL" in out.stdout + out.stderr


async def test_the_shipped_example_runs_as_shipped(tmp_path: Path, n8n: FakeN8n) -> None:
    example = Path(__file__).parents[2] / "examples" / "chat-relay.yaml"
    env = relay_env(n8n)
    gw = GatewayProcess(tmp_path, None, env, args=["--config", str(example)])
    await gw.start()
    n8n.mode = "ndjson"
    try:
        async with client_session() as http:
            session_id, token, r = await create_session(http, gw.url)
            assert "chat_session_id=" in r.headers["Set-Cookie"]
            sse = await send_message(http, gw.url, token, "Hello")
            async with http.post(
                f"{gw.url}/api/v1/session/create", json={}, headers={"Origin": EVIL}
            ) as refused:
                assert refused.status == 403
    finally:
        await gw.stop()
    assert sse.text == "Hello, world!" and sse.kinds[-1] == "done"
    claims = jwt.decode(n8n.requests[0].headers["Authorization"][7:], SECRET, algorithms=["HS256"])
    assert claims["sub"] == session_id
