"""A pass a browser carries: in the query once, then in a cookie bound to it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from yarl import URL

from ferryman.clock import FakeClock
from ferryman.config.settings import Settings
from tests.api.helpers import cookie_attributes
from tests.fakes.upstream import FakeUpstream
from tests.fakes.websockets import FakeWebSocketUpstream
from tests.support import Api, Running, client_session, serve_app

PAGE = {"Accept": "text/html,application/xhtml+xml", "Sec-Fetch-Mode": "navigate"}


@pytest.fixture
async def wsup() -> AsyncIterator[FakeWebSocketUpstream]:
    fake = await FakeWebSocketUpstream().start()
    yield fake
    await fake.stop()


def gateway(upstream: FakeUpstream, wsup: FakeWebSocketUpstream) -> dict[str, Any]:
    common = {"strip_prefix": True, "auth": ["access_pass"],
              "browser_pass": {"secure_cookie": False}}  # fmt: skip
    return {
        "upstreams": {"up": {"url": upstream.url}, "ws": {"url": wsup.url}},
        "routes": [
            {"name": "app", "path": "/app", "upstream": "up", "upstream_path": "/echo", **common},
            {"name": "other", "path": "/other", "upstream": "up", "upstream_path": "/echo",
             **common},
            {"name": "live", "path": "/live", "upstream": "ws", **common},
            {"name": "strict", "path": "/strict", "upstream": "up", "upstream_path": "/echo",
             "strip_prefix": True, "auth": ["access_pass"], "missing_credential_status": 403,
             "browser_pass": False},
        ],
    }  # fmt: skip


@dataclass
class Browser:
    gw: Running
    http: aiohttp.ClientSession
    api: Api
    clock: FakeClock

    async def get(self, path: str, **headers: str) -> tuple[int, Any, aiohttp.ClientResponse]:
        async with self.http.get(
            self.gw.url + path, headers=headers, allow_redirects=False
        ) as response:
            body = await response.read()
            is_json = response.headers.get("Content-Type", "").startswith("application/json")
            return response.status, (await response.json()) if is_json else body, response


@asynccontextmanager
async def browser(
    settings_factory: Callable[..., Settings], upstream: FakeUpstream, wsup: FakeWebSocketUpstream
) -> AsyncIterator[Browser]:
    clock = FakeClock()
    async with (
        serve_app(settings_factory(), gateway(upstream, wsup), clock=clock) as gw,
        # A cookie jar that keeps cookies for 127.0.0.1, as a browser would for its host.
        client_session(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http,
    ):
        yield Browser(gw, http, Api(http, gw.url), clock)


async def a_pass(b: Browser, name: str) -> dict[str, Any]:
    _, token = await b.api.user(name)
    record: dict[str, Any] = await b.api.new_pass(token, hours=1)
    record["jwt"] = token
    return record


async def test_a_page_opened_with_its_pass_is_sent_on_with_a_cookie_that_admits_the_rest(
    settings_factory: Callable[..., Settings], upstream: FakeUpstream, wsup: FakeWebSocketUpstream
) -> None:
    async with browser(settings_factory, upstream, wsup) as b:
        record = await a_pass(b, "pia")
        status, _, r = await b.get(f"/app/index.html?lang=en&token={record['token']}", **PAGE)
        assert status == 303
        assert r.headers["Location"] == "/app/index.html?lang=en"
        (line,) = r.headers.getall("Set-Cookie")
        name, _, rest = line.partition("=")
        handle = rest.split(";", 1)[0]
        assert name == "ferryman_pass" and record["token"] not in line
        attributes = cookie_attributes(line)
        assert attributes["path"] == "/app" and attributes["samesite"] == "Lax"
        assert "httponly" in attributes and "secure" not in attributes
        assert 3590 <= int(attributes["max-age"]) <= 3600  # the pass's hour
        # The page's own requests: the cookie alone, which never reaches the upstream.
        status, echo, _ = await b.get("/app/api/data?x=1")
        assert status == 200
        assert echo["query"] == "x=1"
        cookies = [v for k, v in echo["headers"] if k.lower() == "cookie"]
        assert cookies == [] or all("ferryman_pass" not in c for c in cookies)
        # A page whose route also serves its WebSocket: the cookie admits that too.
        assert (await b.get(f"/live/?token={record['token']}", **PAGE))[0] == 303
        base = b.gw.url.replace("http://", "ws://")
        async with b.http.ws_connect(f"{base}/live/ws") as ws:
            await ws.send_str("from the page")
            assert await ws.receive_str(timeout=2) == "from the page"
        # The handle admits its own route only.
        b.http.cookie_jar.update_cookies({"ferryman_pass": handle})  # now sent everywhere
        status, body, _ = await b.get("/other/x", Cookie=f"ferryman_pass={handle}")
        assert (status, body["error"]) == (401, "invalid_credential")
        status, _, _ = await b.get("/api/v1/users/me", Cookie=f"ferryman_pass={handle}")
        assert status == 401


async def test_a_pass_in_the_query_of_a_script_or_websocket_is_taken_out_not_redirected(
    settings_factory: Callable[..., Settings], upstream: FakeUpstream, wsup: FakeWebSocketUpstream
) -> None:
    async with browser(settings_factory, upstream, wsup) as b:
        record = await a_pass(b, "quinn")
        status, echo, r = await b.get(f"/app/data?token={record['token']}&a=b")
        assert status == 200 and "Set-Cookie" not in r.headers
        assert echo["query"] == "a=b"
        base = b.gw.url.replace("http://", "ws://")
        async with b.http.ws_connect(f"{base}/live/ws?token={record['token']}&v=2") as ws:
            await ws.send_str("headers")
            seen = await ws.receive_json(timeout=2)
        assert seen["query"] == "v=2"
        assert seen["headers"]["X-Token-Id"] == record["id"]


async def test_revoking_or_expiring_the_pass_ends_the_cookie_at_once(
    settings_factory: Callable[..., Settings], upstream: FakeUpstream, wsup: FakeWebSocketUpstream
) -> None:
    async with browser(settings_factory, upstream, wsup) as b:
        first, second = await a_pass(b, "rae"), await a_pass(b, "sol")
        for record in (first, second):
            b.http.cookie_jar.clear()
            assert (await b.get(f"/app/?token={record['token']}", **PAGE))[0] == 303
            assert (await b.get("/app/x"))[0] == 200
            record["cookie"] = b.http.cookie_jar.filter_cookies(URL(b.gw.url + "/app/"))
        b.http.cookie_jar.clear()  # each handle is sent explicitly below
        await b.api.call("POST", f"/tokens/{first['id']}/revoke", token=first["jwt"], expect=200)
        handle = first["cookie"]["ferryman_pass"].value
        status, body, _ = await b.get("/app/x", Cookie=f"ferryman_pass={handle}")
        assert (status, body["error"]) == (401, "revoked_credential")
        # Its WebSocket handshake too, with the pass in the query as seed 002 sends it.
        base = b.gw.url.replace("http://", "ws://")
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await b.http.ws_connect(f"{base}/live/ws?token={first['token']}")
        assert refused.value.status == 401
        b.clock.advance(minutes=61)
        handle = second["cookie"]["ferryman_pass"].value
        status, body, _ = await b.get("/app/x", Cookie=f"ferryman_pass={handle}")
        assert (status, body["error"]) == (401, "invalid_credential")  # the handle ran out


async def test_a_forged_handle_is_refused_and_a_route_may_answer_403_when_nothing_is_sent(
    settings_factory: Callable[..., Settings], upstream: FakeUpstream, wsup: FakeWebSocketUpstream
) -> None:
    async with browser(settings_factory, upstream, wsup) as b:
        record = await a_pass(b, "tao")
        assert (await b.get(f"/app/?token={record['token']}", **PAGE))[0] == 303
        handle = b.http.cookie_jar.filter_cookies(URL(b.gw.url + "/app/"))["ferryman_pass"].value
        b.http.cookie_jar.clear()
        version, pass_id, until, mac = handle.split(".")
        for forged in (
            f"{version}.{pass_id}.{int(until) + 86400}.{mac}",  # longer life
            f"{version}.{pass_id}.{until}.{'A' * 43}",
            "p1.x.1.y",
        ):
            status, body, _ = await b.get("/app/x", Cookie=f"ferryman_pass={forged}")
            assert (status, body["error"]) == (401, "invalid_credential"), forged
        status, body, _ = await b.get("/strict/x")
        assert (status, body["error"]) == (403, "missing_credential")
        status, body, _ = await b.get("/strict/x", **{"X-Access-Token": "nonsense"})
        assert (status, body["error"]) == (401, "invalid_credential")
        status, body, _ = await b.get(f"/strict/x?token={record['token']}")
        assert (status, body["error"]) == (403, "missing_credential")  # not taken there


async def test_an_open_websocket_ends_with_its_pass_revoked_or_run_out(
    settings_factory: Callable[..., Settings], upstream: FakeUpstream, wsup: FakeWebSocketUpstream
) -> None:
    async with browser(settings_factory, upstream, wsup) as b:
        base = b.gw.url.replace("http://", "ws://")
        first = await a_pass(b, "uli")
        async with b.http.ws_connect(f"{base}/live/ws?token={first['token']}") as ws:
            await ws.send_str("open")
            assert await ws.receive_str(timeout=2) == "open"
            await b.api.call(
                "POST", f"/tokens/{first['id']}/revoke", token=first["jwt"], expect=200
            )
            msg = await ws.receive(timeout=2)
            assert (msg.type, msg.data, msg.extra) == (
                aiohttp.WSMsgType.CLOSE, 1008, "credential revoked",
            )  # fmt: skip
        second = await a_pass(b, "vic")
        assert (await b.get(f"/app/x?token={second['token']}"))[0] == 200  # activated
        b.clock.advance(minutes=59, seconds=59.5)  # half a second left
        async with b.http.ws_connect(f"{base}/live/ws?token={second['token']}") as ws:
            msg = await ws.receive(timeout=3)
            assert (msg.type, msg.data, msg.extra) == (
                aiohttp.WSMsgType.CLOSE, 1008, "credential expired",
            )  # fmt: skip
        assert b.gw.app.auth is not None and b.gw.app.auth.watchers.watched == 0
