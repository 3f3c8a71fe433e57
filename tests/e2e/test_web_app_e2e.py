"""Seed 002 end to end: a single-page app written for its host's root, served under a
pass route by a real `ferryman serve`, used by a real browser (Debian's Chromium) that
carries nothing but the pass it was given in the URL."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.fakes.webapp import FakeWebApp
from tests.support import PASSWORD, Api, GatewayProcess, client_session

CHROMIUM = "/usr/bin/chromium"


def browser_or_skip() -> None:
    """CI (`.ci/run`) installs Chromium and sets FERRYMAN_REQUIRE_BROWSER: there a
    missing browser fails the test; elsewhere it is skipped, saying why."""
    if shutil.which(CHROMIUM) is None:
        if os.environ.get("FERRYMAN_REQUIRE_BROWSER"):
            pytest.fail(f"{CHROMIUM} is missing (apt-get install -y chromium)")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install -y chromium)")


@pytest.fixture
async def webapp() -> AsyncIterator[FakeWebApp]:
    app = await FakeWebApp().start()
    yield app
    await app.stop()


def gateway(app: FakeWebApp) -> dict[str, Any]:
    return {
        "accounts": {"registration": "open"},
        "upstreams": {"app": {"url": app.url}},
        "routes": [
            {
                "name": "app",
                "path": "/p",
                "upstream": "app",
                "strip_prefix": True,
                "auth": ["access_pass"],
                "browser_pass": {"secure_cookie": False},  # plain http on loopback
                "rewrite": {"body": ["html", "css", "js", "json"]},
            }
        ],
    }


async def test_the_app_works_under_the_prefix_in_a_real_browser_with_the_pass_alone(
    tmp_path: Path, webapp: FakeWebApp
) -> None:
    browser_or_skip()
    from playwright.async_api import async_playwright

    gw = await GatewayProcess(tmp_path, gateway(webapp)).start()
    try:
        async with client_session() as http:
            api = Api(http, gw.url)
            _, jwt = await api.user("uma")
            token = (await api.new_pass(jwt))["token"]
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            try:
                page = await browser.new_page()
                seen: list[str] = []
                page.on("request", lambda request: seen.append(request.url))
                failed: list[str] = []
                page.on("requestfailed", lambda request: failed.append(request.url))
                await page.goto(f"{gw.url}/p/?token={token}")
                await page.wait_for_function(
                    "document.querySelector('#ws').textContent === 'pong:ping'", timeout=10_000
                )
                assert await page.text_content("#data") == "hello from the app"
                # The app's own absolute URL in its JSON, made public.
                assert await page.text_content("#link") == "/p/api/data"
                assert urlsplit(page.url).path == "/p/done"  # history.pushState, mapped
                assert await page.get_attribute("#about", "href") == "/p/about"
                cookies = {c["name"]: c for c in await page.context.cookies()}
            finally:
                await browser.close()
    finally:
        await gw.stop()
    assert failed == []
    # Nothing the page asked for left the prefix; only the first URL carried the pass.
    paths = [urlsplit(url).path for url in seen]
    assert paths and all(p == "/p" or p.startswith("/p/") for p in paths), paths
    assert sum(token in url for url in seen) == 1
    # The upstream saw its own paths, its WebSocket included, and never the pass.
    assert {"/", "/login", "/static/app.css", "/static/app.js", "/api/data", "/ws"} <= {
        p.split("?")[0] for p in webapp.paths
    }
    assert not any(token in p for p in webapp.paths)
    # The gateway's cookie is a handle scoped to the route; the app's cookie moved there.
    assert cookies["ferryman_pass"]["path"] == "/p" and cookies["ferryman_pass"]["httpOnly"]
    assert token not in cookies["ferryman_pass"]["value"]
    assert cookies["app_session"]["path"] == "/p"
    output = gw.output()
    assert token not in output and PASSWORD not in output
