"""The console on a fleet (two `ferryman serve` on PostgreSQL and Redis), in a real
browser: a key made on one instance's console works through the other's proxy; what
an admin or its owner changes on one instance's console (caps, scopes, revocation)
holds on the other at once; the search, the key's page and the dashboard read
PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

from playwright.async_api import async_playwright

from tests.e2e.console_support import key_row, keyed_gateway, log_in
from tests.e2e.test_web_app_e2e import CHROMIUM, browser_or_skip
from tests.fakes.upstream import FakeUpstream
from tests.fleet.conftest import Start
from tests.support import PASSWORD, Api, client_session

ENV = {
    "FERRYMAN_SESSION_COOKIE_SECURE": "false",
    "FERRYMAN_REGISTRATION_ENABLED": "true",
    "FERRYMAN_ADMIN_USERNAME": "root",
    "FERRYMAN_ADMIN_PASSWORD": PASSWORD,
    "FERRYMAN_USAGE_FLUSH_INTERVAL": "0.2",
}


async def test_what_one_instance_s_console_changes_holds_on_the_other(fleet: Start) -> None:
    browser_or_skip()
    upstream = await FakeUpstream().start()
    gateway = keyed_gateway(upstream.url)
    try:
        a, b = await fleet(2, gateway, **ENV)
        async with client_session() as http:
            await Api(http, a.url).register("uma")

            async def proxied(gw: Any, key: str) -> int:
                async with http.get(f"{gw.url}/up/echo/x", headers={"X-API-Key": key}) as r:
                    return r.status

            async def until(gw: Any, key: str, status: int) -> None:
                """The other instance answers `status` within 2 s (a broadcast away)."""
                for _ in range(40):
                    if await proxied(gw, key) == status:
                        return
                    await asyncio.sleep(0.05)
                raise AssertionError(f"{gw.url} never answered {status}")

            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
                try:
                    uma = await (await browser.new_context()).new_page()
                    await log_in(uma, a.url, "uma")
                    await uma.get_by_role("link", name="Client keys").click()
                    await uma.get_by_label("Name", exact=True).fill("fleet key")
                    await uma.get_by_role("button", name="Create key").click()
                    key = (await uma.text_content("#new-key") or "").strip()
                    assert await proxied(b, key) == 200

                    root = await (await browser.new_context()).new_page()
                    root.on("dialog", lambda dialog: dialog.accept())
                    await log_in(root, b.url, "root")
                    await root.goto(f"{b.url}/console/keys?all=1&q=FLEET")
                    assert await root.text_content("#count") == "1 key matching “FLEET”"
                    await root.get_by_role("link", name="Details of fleet key").click()
                    await root.get_by_label("Requests a minute").fill("1")
                    await root.get_by_role("button", name="Save limits").click()
                    await root.wait_for_selector("[role=status]")
                    # One a minute across the fleet: one instance admits, the other refuses.
                    assert [await proxied(a, key), await proxied(b, key)] == [200, 429]

                    # Her scopes, narrowed on A: B refuses the key.
                    await uma.goto(f"{a.url}/console/keys")
                    await uma.get_by_role("link", name="Details of fleet key").click()
                    await uma.get_by_label("proxy").uncheck()
                    await uma.get_by_label("stats:read").check()
                    await uma.get_by_role("button", name="Save scopes").click()
                    await uma.wait_for_selector("[role=status]")
                    await until(b, key, 403)

                    # Her traffic through both, on B's dashboard (PostgreSQL's aggregates).
                    dashboard = f"{b.url}/console/?days=7&user=uma"
                    cells = await key_row(root, dashboard, "fleet key", "2")
                    assert cells[:2] == ["fleet key", "2"]  # the 429 and 403 were not admitted

                    # Revoked on B's key page: A refuses it.
                    await root.goto(f"{b.url}/console/keys?all=1")
                    await root.get_by_role("link", name="Details of fleet key").click()
                    await root.get_by_role("button", name="Revoke").click()
                    await root.wait_for_selector(".state-revoked")
                    await until(a, key, 401)
                finally:
                    await browser.close()
    finally:
        await upstream.stop()
