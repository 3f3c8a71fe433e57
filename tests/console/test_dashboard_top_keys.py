"""Everyone's top client keys on an admin's dashboard: the page never waits long for
them; until they are counted it carries a placeholder that the console's script fills
from `/dashboard/top-keys` (a real browser here), and later views have them at once.
Only admins may ask for the fragment."""

from __future__ import annotations

import time
import uuid

import pytest
from playwright.async_api import async_playwright

from ferryman.config.settings import Settings
from ferryman.console import dashboard
from ferryman.store import usage
from ferryman.store.usage import UsageRow
from tests.api.helpers import database_of, make_admin, running
from tests.e2e.test_web_app_e2e import CHROMIUM, browser_or_skip


def record(user_id: str, key_id: str) -> UsageRow:
    return UsageRow(
        str(uuid.uuid4()), time.time(), "llm", user_id, key_id, "up", None, "m", 200,
        1.0, 1.0, 1.0, 10, 10, 5, 7, 12, 0.25, "c",
    )  # fmt: skip


async def test_everyone_s_top_keys_come_later_on_a_first_view_and_at_once_after(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Counting them takes about a second on 10 million records; here the page is not
    # allowed to wait at all, so the first view always has the placeholder.
    monkeypatch.setattr(dashboard, "EVERYONE_WAIT", 0.0)
    settings = settings.model_copy(update={"session_cookie_secure": False})
    async with running(settings) as (gw, client):
        await make_admin(gw, client)
        uma, uma_token = await client.user("uma")
        key = await client.new_key(uma_token, "busy key")
        hostile = await client.new_key(uma_token, '<img src=x onerror="alert(1)">')
        await usage.write(database_of(gw), [record(uma["id"], key["id"])] * 3)
        await usage.write(database_of(gw), [record(uma["id"], hostile["id"])])
        root_cookie, _, _ = await client.session("root")
        uma_cookie, _, _ = await client.session("uma")

        async def get(path: str, cookie: str) -> tuple[int, str]:
            headers = {"Cookie": f"session_token={cookie}"}
            async with client.http.get(gw.url + "/console" + path, headers=headers) as r:
                return r.status, await r.text()

        status, html = await get("/?days=7", root_cookie)
        assert status == 200
        assert 'data-fill="/console/dashboard/top-keys?days=7"' in html
        assert "busy key" not in html

        status, fragment = await get("/dashboard/top-keys?days=7", root_cookie)
        assert status == 200
        assert f'<a href="/console/keys/{key["id"]}">busy key</a>' in fragment
        assert '<td class="num">3</td>' in fragment
        # A key's name is its owner's text, and the script puts the fragment in the page
        # as HTML: it arrives escaped.
        assert "<img" not in fragment
        assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in fragment

        status, html = await get("/?days=7", root_cookie)
        assert "data-fill" not in html and "busy key" in html

        status, refused = await get("/dashboard/top-keys?days=7", uma_cookie)
        assert status == 403 and 'data-code="admin_required"' in refused
        status, own = await get("/?days=7", uma_cookie)  # her own: never deferred
        assert "data-fill" not in own and "busy key" in own

        browser_or_skip()
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            try:
                context = await browser.new_context()
                await context.add_cookies(
                    [{"name": "session_token", "value": root_cookie, "url": gw.url}]
                )
                page = await context.new_page()
                await page.goto(f"{gw.url}/console/?days=30")  # not counted yet
                link = page.locator("#top-keys a", has_text="busy key")
                await link.wait_for()
                assert await page.locator("[data-fill]").count() == 0
                assert await page.locator("#top-keys img").count() == 0
                hostile_cell = page.locator("#top-keys a", has_text="onerror")
                assert await hostile_cell.text_content() == hostile["name"]
                await link.click()
                assert await page.text_content("h1") == "Key “busy key”"
            finally:
                await browser.close()
