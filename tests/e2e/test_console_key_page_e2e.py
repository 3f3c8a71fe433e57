"""A client key's own console page in a real browser against a real `ferryman serve`:
its owner changes its scopes (the proxy obeys at once) but not its caps; an admin sets
its requests a minute and its budget (the proxy obeys at once), a bad value is refused
with its reason and changes nothing; and all of it works from the keyboard alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Imported here, not in a test: the first import takes longer than the event loop's
# watchdog allows a step (tests/conftest.py).
from playwright.async_api import async_playwright

from tests.e2e.console_support import keyed_gateway, log_in
from tests.e2e.test_web_app_e2e import CHROMIUM, browser_or_skip
from tests.fakes.upstream import FakeUpstream
from tests.support import PASSWORD, Api, GatewayProcess, client_session

ENV = {
    "FERRYMAN_SESSION_COOKIE_SECURE": "false",
    "FERRYMAN_REGISTRATION_ENABLED": "true",
    "FERRYMAN_ADMIN_USERNAME": "root",
    "FERRYMAN_ADMIN_PASSWORD": PASSWORD,
}


async def test_scopes_limits_and_budget_are_set_on_a_key_s_page_and_the_proxy_obeys(
    tmp_path: Path,
) -> None:
    browser_or_skip()
    upstream = await FakeUpstream().start()
    gateway = keyed_gateway(upstream.url)
    gw = await GatewayProcess(tmp_path, gateway, ENV).start()
    try:
        async with client_session() as http:
            api = Api(http, gw.url)
            _, uma = await api.user("uma")
            key = await api.new_key(uma, "laptop")

            async def shown() -> Any:
                return (await api.call("GET", f"/keys/{key['id']}", token=uma))[1]

            async def proxied() -> int:
                headers = {"X-API-Key": key["key"]}
                async with http.get(f"{gw.url}/up/echo/x", headers=headers) as r:
                    return r.status

            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
                try:
                    page = await (await browser.new_context()).new_page()
                    await log_in(page, gw.url, "uma")
                    await page.get_by_role("link", name="Client keys").click()
                    await page.get_by_role("link", name="Details of laptop").click()
                    assert await page.text_content("h1") == "Key “laptop”"
                    assert await page.get_by_role("button", name="Save limits").count() == 0
                    assert "An admin sets these." in await page.content()

                    await page.get_by_label("proxy").uncheck()
                    await page.get_by_label("stats:read").check()
                    await page.get_by_role("button", name="Save scopes").click()
                    await page.wait_for_selector("[role=status]")
                    assert await proxied() == 403  # at once: the cached key was dropped
                    await page.get_by_label("stats:read").uncheck()
                    await page.get_by_role("button", name="Save scopes").click()
                    code = await page.get_attribute("[role=alert]", "data-code")
                    assert code == "invalid_scope"  # none at all is refused
                    await page.get_by_label("proxy").check()
                    await page.get_by_role("button", name="Save scopes").click()
                    await page.wait_for_selector("[role=status]")
                    assert await proxied() == 200

                    # Her own caps, by a hand-made form: refused as the API refuses it.
                    token = await page.get_attribute("input[name=csrf]", "value")
                    refused = await page.request.post(
                        f"{gw.url}/console/keys/{key['id']}/limits",
                        form={"csrf": token or "", "rpm": "100000"},
                    )
                    assert refused.status == 403
                    assert 'data-code="admin_required"' in await refused.text()

                    admin = await (await browser.new_context()).new_page()
                    admin.on("dialog", lambda dialog: dialog.accept())
                    await log_in(admin, gw.url, "root")
                    await admin.get_by_role("link", name="Client keys").click()
                    await admin.get_by_role("link", name="Everyone's keys").click()
                    await admin.get_by_role("link", name="Details of laptop").click()
                    assert "uma" in (await admin.text_content("dl") or "")
                    await admin.get_by_label("Requests a minute").fill("lots")
                    await admin.get_by_role("button", name="Save limits").click()
                    assert await admin.get_attribute("[role=alert]", "data-code") == "invalid_limit"
                    await admin.get_by_label("Requests a minute").fill("1")
                    await admin.get_by_label("Budget", exact=True).fill("0")
                    await admin.get_by_role("button", name="Save limits").click()
                    assert await admin.get_attribute("[role=alert]", "data-code") == "invalid_limit"
                    assert (await shown())["rpm"] is None

                    await admin.get_by_label("Requests a minute").fill("1")
                    await admin.get_by_label("Budget", exact=True).fill("2.5")
                    await admin.get_by_label("Per").select_option("days")
                    await admin.get_by_label("Rolling days").fill("30")
                    await admin.get_by_role("button", name="Save limits").click()
                    await admin.wait_for_selector("[role=status]")
                    now = await shown()
                    assert now["rpm"] == 1
                    assert now["budget"] == {"amount": 2.5, "period": "30 days"}
                    assert await proxied() == 200
                    assert await proxied() == 429  # one a minute, at once
                    spent = await admin.text_content("#budget-spent") or ""
                    assert spent.startswith("$0 of $2.5 spent")

                    await admin.get_by_label("Requests a minute").fill("")
                    await admin.get_by_label("Budget", exact=True).fill("")
                    await admin.get_by_role("button", name="Save limits").click()
                    await admin.wait_for_selector("[role=status]")
                    now = await shown()
                    assert now["rpm"] is None and now["budget"] is None
                    assert await proxied() == 200

                    # Revoked on its page: the proxy refuses it, its scopes are frozen.
                    await admin.get_by_role("button", name="Revoke").click()
                    await admin.wait_for_selector(".state-revoked")
                    assert await proxied() == 401
                    assert await admin.get_by_role("button", name="Save scopes").count() == 0
                finally:
                    await browser.close()
    finally:
        await gw.stop()
        await upstream.stop()
    assert key["key"] not in gw.output()


async def tab_to(page: Any, target: Any, most: int = 60) -> None:
    """Press Tab until `target` has the focus (fails if it never does), and check the
    focus is visible there."""
    for _ in range(most):
        await page.keyboard.press("Tab")
        if await target.evaluate("el => el === document.activeElement"):
            outline = await target.evaluate("el => getComputedStyle(el).outlineStyle")
            assert outline not in ("", "none"), "the focus is not visible"
            return
    raise AssertionError(f"{target} cannot be reached with Tab")


async def test_a_user_makes_and_narrows_a_key_with_the_keyboard_alone(tmp_path: Path) -> None:
    browser_or_skip()
    gw = await GatewayProcess(tmp_path, None, ENV).start()
    try:
        async with client_session() as http:
            await Api(http, gw.url).register("uma")
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
                try:
                    page = await browser.new_page()
                    await page.goto(f"{gw.url}/console/login")
                    await tab_to(page, page.get_by_label("Username or email"))
                    await page.keyboard.type("uma")
                    await tab_to(page, page.get_by_label("Password"))
                    await page.keyboard.type(PASSWORD)
                    await page.keyboard.press("Enter")
                    await page.wait_for_url(f"{gw.url}/console/")

                    await tab_to(page, page.get_by_role("link", name="Skip to content"), most=1)
                    await tab_to(page, page.get_by_role("link", name="Client keys"))
                    await page.keyboard.press("Enter")
                    await page.wait_for_url(f"{gw.url}/console/keys")
                    await tab_to(page, page.get_by_label("Name", exact=True))
                    await page.keyboard.type("by keyboard")
                    await tab_to(page, page.get_by_role("button", name="Create key"))
                    await page.keyboard.press("Enter")
                    await page.wait_for_selector("#new-key")
                    await tab_to(page, page.get_by_role("button", name="Copy"))

                    await page.goto(f"{gw.url}/console/keys")
                    await tab_to(page, page.get_by_role("link", name="Details of by keyboard"))
                    await page.keyboard.press("Enter")
                    await page.wait_for_selector("h1:has-text('by keyboard')")
                    await tab_to(page, page.get_by_label("stats:read"))
                    await page.keyboard.press("Space")
                    await tab_to(page, page.get_by_role("button", name="Save scopes"))
                    await page.keyboard.press("Enter")
                    await page.wait_for_selector("[role=status]")
                    assert await page.get_by_label("stats:read").is_checked()
                    assert await page.get_by_label("proxy").is_checked()

                    await tab_to(page, page.get_by_role("button", name="Log out"))
                    await page.keyboard.press("Enter")
                    await page.wait_for_url(f"{gw.url}/console/login")
                finally:
                    await browser.close()
    finally:
        await gw.stop()
