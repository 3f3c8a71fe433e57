"""The web console in a real browser (Debian's Chromium) against a real `ferryman serve`:
log in through the form, change the password (which ends the other sessions), log out
(the old session is refused by the API too); forms without their CSRF token are
refused; the pages carry a strict policy and load nothing from elsewhere."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.e2e.console_support import key_row, keyed_gateway, log_in
from tests.e2e.test_web_app_e2e import CHROMIUM, browser_or_skip
from tests.support import PASSWORD, Api, GatewayProcess, client_session

# Plain http on loopback; accounts made through the API by the test.
ENV = {"FERRYMAN_SESSION_COOKIE_SECURE": "false", "FERRYMAN_REGISTRATION_ENABLED": "true"}
NEW_PASSWORD = "a brand new passphrase"


async def test_log_in_change_the_password_and_log_out_in_a_browser(tmp_path: Path) -> None:
    browser_or_skip()
    from playwright.async_api import async_playwright

    gw = await GatewayProcess(tmp_path, None, ENV).start()
    try:
        async with client_session() as http:
            api = Api(http, gw.url)
            await api.user("uma")
            other = await api.session_cookie("uma", PASSWORD)  # a second session elsewhere
            assert await api.me_status(other) == 200
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
                try:
                    page = await browser.new_page()
                    seen: list[str] = []
                    page.on("request", lambda request: seen.append(request.url))
                    response = await page.goto(f"{gw.url}/console/")
                    assert response is not None
                    assert urlsplit(page.url).path == "/console/login"
                    policy = response.headers["content-security-policy"]
                    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
                    await page.get_by_label("Username or email").fill("uma")
                    await page.get_by_label("Password").fill("not the password")
                    await page.get_by_role("button", name="Log in").click()
                    assert await page.get_attribute("[role=alert]", "data-code") == "invalid_login"
                    await page.get_by_label("Username or email").fill("uma")
                    await page.get_by_label("Password").fill(PASSWORD)
                    await page.get_by_role("button", name="Log in").click()
                    await page.wait_for_url(f"{gw.url}/console/")
                    assert await page.text_content("h1") == "Dashboard"
                    assert await page.text_content("#total-requests") == "0"

                    await page.get_by_role("link", name="Profile").click()
                    await page.get_by_label("Current password").fill(PASSWORD)
                    await page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
                    await page.get_by_label("New password, again").fill(NEW_PASSWORD)
                    await page.get_by_role("button", name="Change password").click()
                    status = await page.text_content("[role=status]") or ""
                    assert "1 other session ended" in status
                    assert await api.me_status(other) == 401  # the other session is over

                    cookies = {c["name"]: c for c in await page.context.cookies()}
                    session = cookies["session_token"]
                    assert session["httpOnly"] and session["sameSite"] == "Lax"
                    await page.get_by_role("button", name="Log out").click()
                    await page.wait_for_url(f"{gw.url}/console/login")
                    # The cookie the browser held is refused by the management API too.
                    assert await api.me_status(session["value"]) == 401
                    await page.goto(f"{gw.url}/console/profile")
                    assert urlsplit(page.url).path == "/console/login"
                finally:
                    await browser.close()
            assert await api.login_status("uma", NEW_PASSWORD) == 200
            assert await api.login_status("uma", PASSWORD) == 401
    finally:
        await gw.stop()
    hosts = {urlsplit(url).netloc for url in seen}
    assert hosts == {urlsplit(gw.url).netloc}  # nothing from a CDN
    assert PASSWORD not in gw.output() and NEW_PASSWORD not in gw.output()


async def test_forms_without_their_csrf_token_are_refused(tmp_path: Path) -> None:
    gw = await GatewayProcess(tmp_path, None, ENV).start()
    try:
        async with client_session() as http:
            api = Api(http, gw.url)
            await api.user("uma")
            login = {"username": "uma", "password": PASSWORD}
            async with http.post(f"{gw.url}/console/login", data=login, allow_redirects=False) as r:
                assert r.status == 403
                assert 'data-code="csrf_failed"' in await r.text()
                assert "Set-Cookie" not in r.headers or "session_token" not in str(
                    r.headers.getall("Set-Cookie")
                )
            cookie = await api.session_cookie("uma", PASSWORD)
            headers = {"Cookie": f"session_token={cookie}"}
            for path, data in (
                ("/console/logout", {}),
                ("/console/logout", {"csrf": "forged"}),
                ("/console/profile/password",
                 {"current_password": PASSWORD, "new_password": NEW_PASSWORD,
                  "confirm_password": NEW_PASSWORD}),
            ):  # fmt: skip
                async with http.post(
                    gw.url + path, data=data, headers=headers, allow_redirects=False
                ) as r:
                    assert r.status == 403, path
            assert await api.me_status(cookie) == 200  # still logged in
            assert await api.login_status("uma", PASSWORD) == 200  # password unchanged
    finally:
        await gw.stop()


async def test_a_key_made_in_the_console_works_through_the_proxy_until_revoked_there(
    tmp_path: Path,
) -> None:
    browser_or_skip()
    from playwright.async_api import async_playwright

    from tests.fakes.upstream import FakeUpstream

    upstream = await FakeUpstream().start()
    gw = await GatewayProcess(tmp_path, keyed_gateway(upstream.url), ENV).start()
    try:
        async with client_session() as http:
            api = Api(http, gw.url)
            _, bob = await api.user("bob")
            bobs_key = await api.new_key(bob, "bob's own")
            await api.user("uma")

            async def proxied(key: str) -> int:
                async with http.get(f"{gw.url}/up/echo/x", headers={"X-API-Key": key}) as r:
                    return r.status

            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
                try:
                    page = await browser.new_page()
                    page.on("dialog", lambda dialog: dialog.accept())
                    await log_in(page, gw.url, "uma")
                    await page.get_by_role("link", name="Client keys").click()
                    assert await page.text_content("#count") == "0 keys"
                    await page.get_by_label("Name", exact=True).fill("laptop")
                    await page.get_by_role("button", name="Create key").click()
                    key = (await page.text_content("#new-key") or "").strip()
                    assert key.startswith("fm_")
                    assert await proxied(key) == 200

                    await page.goto(f"{gw.url}/console/keys")
                    assert key not in await page.content()  # shown once, never again
                    assert "bob's own" not in await page.content()
                    await page.get_by_role("button", name="Disable laptop").click()
                    await page.wait_for_selector("text=Enable laptop")
                    assert await proxied(key) == 401
                    await page.get_by_role("button", name="Enable laptop").click()
                    await page.wait_for_selector("text=Disable laptop")
                    assert await proxied(key) == 200
                    await page.get_by_role("button", name="Revoke laptop").click()
                    await page.wait_for_selector(".state-revoked")
                    assert await proxied(key) == 401

                    # The key's two admitted requests on the dashboard (written within
                    # a usage flush interval).
                    cells = await key_row(page, f"{gw.url}/console/?days=7", "laptop", "2")
                    assert cells[:2] == ["laptop", "2"]
                    assert await page.text_content("#total-requests") == "2"
                    assert "bob's own" not in await page.content()

                    # Another user's key, by URL: as unknown as a made-up id.
                    token = await page.get_attribute("input[name=csrf]", "value")
                    refused = await page.request.post(
                        f"{gw.url}/console/keys/{bobs_key['id']}/revoke",
                        form={"csrf": token or ""},
                    )
                    assert refused.status == 404
                    assert 'data-code="key_not_found"' in await refused.text()
                finally:
                    await browser.close()
            assert await proxied(bobs_key["key"]) == 200
    finally:
        await gw.stop()
        await upstream.stop()


async def test_an_admin_manages_users_and_a_user_cannot_reach_that_page(
    tmp_path: Path,
) -> None:
    browser_or_skip()
    from playwright.async_api import async_playwright

    env = {**ENV, "FERRYMAN_ADMIN_USERNAME": "root", "FERRYMAN_ADMIN_PASSWORD": PASSWORD}
    gw = await GatewayProcess(tmp_path, None, env).start()
    try:
        async with client_session() as http:
            api = Api(http, gw.url)
            await api.user("uma")
            umas = await api.session_cookie("uma")

            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
                try:
                    page = await browser.new_page()
                    page.on("dialog", lambda dialog: dialog.accept())

                    await log_in(page, gw.url, "root")
                    await page.get_by_role("link", name="Users").click()
                    assert await page.text_content("#count") == "2 accounts"
                    await page.get_by_label("Search by username or email").fill("um")
                    await page.get_by_role("button", name="Search").click()
                    assert await page.text_content("#count") == "1 account"
                    await page.get_by_role("button", name="Disable uma").click()
                    await page.wait_for_selector("text=Enable uma")
                    assert await api.me_status(umas) == 401  # at once
                    await page.get_by_role("button", name="Enable uma").click()
                    await page.wait_for_selector("text=Disable uma")
                    await page.get_by_role("button", name="Reset password of uma").click()
                    fresh = (await page.text_content("#new-password") or "").strip()
                    assert len(fresh) >= 16
                    assert await api.me_status(umas) == 401  # her sessions ended
                    assert await api.login_status("uma", PASSWORD) == 401
                    await page.get_by_role("button", name="Log out").click()

                    await log_in(page, gw.url, "uma", fresh)
                    assert await page.get_by_role("link", name="Users").count() == 0
                    response = await page.goto(f"{gw.url}/console/users")
                    assert response is not None and response.status == 403
                    assert await page.get_attribute("[role=alert]", "data-code") == "admin_required"
                finally:
                    await browser.close()
    finally:
        await gw.stop()
    assert fresh not in gw.output()


async def test_a_user_buys_a_pass_uses_it_refunds_and_revokes_in_the_console(
    tmp_path: Path,
) -> None:
    browser_or_skip()
    from playwright.async_api import async_playwright

    from tests.fakes.upstream import FakeUpstream

    upstream = await FakeUpstream().start()
    gateway = {
        "upstreams": {"app": {"url": upstream.url}},
        "routes": [{"name": "app", "path": "/app", "upstream": "app", "strip_prefix": True,
                    "auth": ["access_pass"]}],
    }  # fmt: skip
    env = {**ENV, "FERRYMAN_ADMIN_USERNAME": "root", "FERRYMAN_ADMIN_PASSWORD": PASSWORD,
           "FERRYMAN_ACCESS_PASS_PRICES": "1:2.50,24:20"}  # fmt: skip
    gw = await GatewayProcess(tmp_path, gateway, env).start()
    try:
        async with client_session() as http:
            api = Api(http, gw.url)
            uma, _ = await api.user("uma")
            root = await api.login("root")
            await api.call("POST", "/credits/top-up", token=root, expect=201,
                           json={"user_id": uma["id"], "amount": "10"})  # fmt: skip

            async def through(token: str) -> int:
                async with http.get(f"{gw.url}/app/echo/x", headers={"X-Access-Token": token}) as r:
                    return r.status

            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
                try:
                    page = await browser.new_page()
                    page.on("dialog", lambda dialog: dialog.accept())
                    await page.goto(f"{gw.url}/console/login")
                    await page.get_by_label("Username or email").fill("uma")
                    await page.get_by_label("Password").fill(PASSWORD)
                    await page.get_by_role("button", name="Log in").click()
                    await page.get_by_role("link", name="Passes").click()
                    assert await page.text_content("#balance") == "10.00"
                    await page.get_by_label("1 h — 2.50").check()
                    await page.get_by_role("button", name="Buy pass").click()
                    first = (await page.text_content("#new-pass") or "").strip()
                    assert await page.text_content("#balance") == "7.50"
                    short = await page.get_attribute("tbody tr", "data-pass") or ""
                    await page.get_by_role("button", name=f"Refund {short[:8]}").click()
                    assert "Refunded 2.50" in (await page.text_content("[role=status]") or "")
                    assert await page.text_content("#balance") == "10.00"
                    assert await through(first) == 401  # refunded: revoked too

                    await page.get_by_label("1 h — 2.50").check()
                    await page.get_by_role("button", name="Buy pass").click()
                    second = (await page.text_content("#new-pass") or "").strip()
                    assert await through(second) == 200
                    await page.goto(f"{gw.url}/console/passes")
                    assert second not in await page.content()
                    assert await page.text_content("tbody tr:first-child .state") == "active"
                    live = await page.get_attribute("tbody tr:first-child", "data-pass") or ""
                    await page.get_by_role("button", name=f"Revoke {live[:8]}").click()
                    await page.wait_for_selector("tbody tr:first-child .state-revoked")
                    assert await through(second) == 401
                    assert await page.text_content("#balance") == "7.50"
                    await page.get_by_label("24 h — 20.00").check()
                    await page.get_by_role("button", name="Buy pass").click()
                    code = await page.get_attribute("[role=alert]", "data-code")
                    assert code == "insufficient_balance"
                finally:
                    await browser.close()
    finally:
        await gw.stop()
        await upstream.stop()


async def test_an_admin_adds_an_upstream_key_and_sees_its_health(tmp_path: Path) -> None:
    browser_or_skip()
    from playwright.async_api import async_playwright

    from tests.fakes.openrouter import FakeOpenRouter
    from tests.upstreams.conftest import pooled_gateway

    provider = await FakeOpenRouter().start()
    good, bad = "sk-or-v1-" + "g" * 64, "sk-or-v1-" + "b" * 64
    provider.add_key(good, limit=25.0, usage=5.0)
    env = {**ENV, "FERRYMAN_ADMIN_USERNAME": "root", "FERRYMAN_ADMIN_PASSWORD": PASSWORD}
    gw = await GatewayProcess(tmp_path, pooled_gateway(provider.base_url), env).start()
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            try:
                page = await browser.new_page()
                page.on("dialog", lambda dialog: dialog.accept())
                await page.goto(f"{gw.url}/console/login")
                await page.get_by_label("Username or email").fill("root")
                await page.get_by_label("Password").fill(PASSWORD)
                await page.get_by_role("button", name="Log in").click()
                await page.get_by_role("link", name="Upstream keys").click()

                await page.get_by_label("Name", exact=True).fill("bad one")
                await page.get_by_label("Key", exact=True).fill(bad)
                await page.get_by_role("button", name="Add key").click()
                assert await page.get_attribute("[role=alert]", "data-code") == (
                    "invalid_upstream_key"
                )
                await page.get_by_label("Name", exact=True).fill("main")
                await page.get_by_label("Key", exact=True).fill(good)
                await page.get_by_role("button", name="Add key").click()
                assert "added" in (await page.text_content("[role=status]") or "")
                assert good not in await page.content()  # never shown again
                row = page.locator("tr", has_text="main")
                assert await row.locator(".state").text_content() == "healthy"

                provider.set_behaviour(good, "401")
                await page.get_by_role("button", name="Test main").click()
                assert "invalid" in (await page.text_content("[role=status]") or "")
                assert await row.locator(".state").text_content() == "invalid"
                assert await row.locator(".reason").count() == 1
                provider.set_behaviour(good, "ok")
                await page.get_by_role("button", name="Test main").click()
                assert await row.locator(".state").text_content() == "healthy"
                await page.get_by_role("button", name="Disable main").click()
                await page.wait_for_selector("text=Enable main")
                assert await row.locator(".state").text_content() == "disabled"
                await page.get_by_role("button", name="Delete main").click()
                await page.wait_for_selector("text=No upstream keys.")
            finally:
                await browser.close()
    finally:
        await gw.stop()
        await provider.stop()
    assert good not in gw.output() and bad not in gw.output()


async def test_the_status_page_shows_checks_jobs_and_upstreams_to_admins_only(
    tmp_path: Path,
) -> None:
    from tests.fakes.upstream import FakeUpstream

    upstream = await FakeUpstream().start()
    gateway = {
        "upstreams": {"up": {"url": upstream.url}, "gone": {"url": "http://127.0.0.1:9"}},
        "routes": [{"name": "api", "path": "/up", "upstream": "up"}],
    }
    env = {**ENV, "FERRYMAN_ADMIN_USERNAME": "root", "FERRYMAN_ADMIN_PASSWORD": PASSWORD}
    gw = await GatewayProcess(tmp_path, gateway, env).start()
    try:
        async with client_session() as http:
            api = Api(http, gw.url)
            await api.user("uma")
            for name, expected in (("root", 200), ("uma", 403)):
                cookie = await api.session_cookie(name)
                async with http.get(
                    f"{gw.url}/console/status", headers={"Cookie": f"session_token={cookie}"}
                ) as r:
                    assert r.status == expected
                    html = await r.text()
                if expected == 403:
                    assert 'data-code="admin_required"' in html
                    continue
                assert '<span id="ready" class="state state-active">ready</span>' in html
                assert 'data-check="database"' in html and "limiter_sweep" in html
                up = html[html.index('data-upstream="up"') :].split("</tr>")[0]
                gone = html[html.index('data-upstream="gone"') :].split("</tr>")[0]
                assert "HTTP 404" in up  # it answers (its root is not a route of its own)
                assert "ClientConnectorError" in gone
                policy = r.headers["Content-Security-Policy"]
                assert policy.startswith("default-src 'none'")
    finally:
        await gw.stop()
        await upstream.stop()


async def test_every_console_page_passes_axe_without_serious_violations(tmp_path: Path) -> None:
    browser_or_skip()
    from axe_playwright_python.async_playwright import Axe
    from playwright.async_api import async_playwright

    env = {**ENV, "FERRYMAN_ADMIN_USERNAME": "root", "FERRYMAN_ADMIN_PASSWORD": PASSWORD}
    gw = await GatewayProcess(tmp_path, None, env).start()
    axe = Axe()
    found: dict[str, list[str]] = {}
    try:
        async with client_session() as http:
            api = Api(http, gw.url)
            root = await api.login("root")
            checker = await api.new_key(root, "checker")
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            try:
                for scheme in ("light", "dark"):
                    context = await browser.new_context(color_scheme=scheme)
                    page = await context.new_page()
                    await page.goto(f"{gw.url}/console/login")
                    pages = ["login"]
                    found |= await _serious(axe, page, f"login ({scheme})")
                    await page.get_by_label("Username or email").fill("root")
                    await page.get_by_label("Password").fill(PASSWORD)
                    await page.get_by_role("button", name="Log in").click()
                    await page.wait_for_url(f"{gw.url}/console/")
                    for path in ("", "keys", f"keys/{checker['id']}", "passes",
                                 "upstream-keys", "users", "status", "profile"):  # fmt: skip
                        await page.goto(f"{gw.url}/console/{path}")
                        pages.append(path or "dashboard")
                        found |= await _serious(axe, page, f"{pages[-1]} ({scheme})")
                    await context.close()
            finally:
                await browser.close()
    finally:
        await gw.stop()
    assert found == {}, found


async def _serious(axe: Any, page: Any, name: str) -> dict[str, list[str]]:
    results = await axe.run(page)
    assert results.response["testEngine"]["name"] == "axe-core"
    assert len(results.response["passes"]) > 10  # it looked at the page
    bad = [
        f"{v['id']}: {v['help']} ({len(v['nodes'])})"
        for v in results.response["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    return {name: bad} if bad else {}


async def test_links_follow_a_trusted_proxy_s_prefix_or_the_root_path(tmp_path: Path) -> None:
    cases = [
        ({"FERRYMAN_TRUSTED_PROXIES": "127.0.0.1/32"}, "/gw"),  # trusted: its prefix
        ({}, ""),  # an untrusted peer's header is ignored
        ({"FERRYMAN_ROOT_PATH": "/edge"}, "/edge"),  # the setting, without a proxy's header
    ]
    for n, (extra, prefix) in enumerate(cases):
        workdir = tmp_path / str(n)
        workdir.mkdir()
        gw = await GatewayProcess(workdir, None, {**ENV, **extra}).start()
        try:
            async with client_session() as http:
                headers = {"X-Forwarded-Prefix": "/gw"}
                async with http.get(
                    f"{gw.url}/console/", headers=headers, allow_redirects=False
                ) as r:
                    assert r.status == 303
                    assert r.headers["Location"] == f"{prefix}/console/login"
                async with http.get(f"{gw.url}/console/login", headers=headers) as r:
                    html = await r.text()
                    assert f'href="{prefix}/console/static/console.css' in html
                    assert f'action="{prefix}/console/login"' in html
                    assert f"Path={prefix}/console" in r.headers["Set-Cookie"]
        finally:
            await gw.stop()


async def test_registering_in_the_console_when_registration_is_open(tmp_path: Path) -> None:
    import re

    for open_ in (True, False):
        workdir = tmp_path / str(open_)
        workdir.mkdir()
        env = {**ENV, "FERRYMAN_REGISTRATION_ENABLED": "true" if open_ else "false"}
        gw = await GatewayProcess(workdir, None, env).start()
        try:
            async with client_session() as http:
                async with http.get(f"{gw.url}/console/register", allow_redirects=False) as r:
                    if not open_:
                        assert r.status == 303 and r.headers["Location"] == "/console/login"
                        continue
                    html = await r.text()
                    token = r.cookies["console_csrf"].value
                csrf = re.search(r'name="csrf" value="([^"]+)"', html)
                assert csrf is not None
                form = {"csrf": csrf.group(1), "username": "nia", "password": NEW_PASSWORD,
                        "confirm_password": NEW_PASSWORD}  # fmt: skip
                async with http.post(
                    f"{gw.url}/console/register", data={**form, "confirm_password": "other"},
                    headers={"Cookie": f"console_csrf={token}"}, allow_redirects=False,
                ) as r:  # fmt: skip
                    assert r.status == 400 and 'data-code="password_mismatch"' in await r.text()
                async with http.post(
                    f"{gw.url}/console/register", data=form,
                    headers={"Cookie": f"console_csrf={token}"}, allow_redirects=False,
                ) as r:  # fmt: skip
                    assert r.status == 303 and r.headers["Location"] == "/console/"
                    session = r.cookies["session_token"].value
                async with http.get(
                    f"{gw.url}/console/", headers={"Cookie": f"session_token={session}"}
                ) as r:
                    assert r.status == 200 and "nia" in await r.text()
        finally:
            await gw.stop()
