#!/usr/bin/env python3
"""The console's screenshots in docs/: the dashboard, the keys page and one key's page,
light and dark.

    .venv/bin/python docs/make_screenshots.py

Starts a real `ferryman serve` on a fresh data directory, makes an admin and a few
client keys through the management API, writes 30 days of made-up daily usage into its
SQLite aggregates (so the charts have something to show; the numbers are invented), and
photographs the pages with Debian's Chromium.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support import PASSWORD, Api, GatewayProcess, client_session  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
MODELS = ("openai/gpt-4o-mini", "anthropic/claude-3.5-sonnet", "meta-llama/llama-3.1-70b")
KEYS = ("checkout-service", "support-bot", "data-pipeline", "laptop (ana)", "staging")
ENV = {"FERRYMAN_SESSION_COOKIE_SECURE": "false", "FERRYMAN_REGISTRATION_ENABLED": "true",
       "FERRYMAN_ADMIN_USERNAME": "admin", "FERRYMAN_ADMIN_PASSWORD": PASSWORD}  # fmt: skip


def seed_usage(db: Path, user_id: str, key_ids: list[str]) -> None:
    """30 days of daily sums per key and model, in both aggregate tables."""
    rng = random.Random(7)  # noqa: S311 - made-up figures for a picture
    today = datetime.now(UTC).date()
    rows = []
    for back in range(30):
        day = (today - timedelta(days=back)).isoformat()
        weekday = (today - timedelta(days=back)).weekday()
        for k, key_id in enumerate(key_ids):
            for m, model in enumerate(MODELS):
                base = (900 - 150 * k) * (0.55 if weekday >= 5 else 1.0) / (m + 1)
                requests = max(0, int(base * rng.uniform(0.7, 1.3)))
                prompt, completion = (
                    requests * rng.randint(300, 900),
                    requests * rng.randint(80, 300),
                )
                cost = (prompt * 0.15 + completion * 0.6) / 1_000_000 * (1 + 4 * (m == 1))
                errors = int(requests * rng.uniform(0, 0.03))
                pooled = f"pool-key-{(k + m) % 2 + 1}"  # no such key: shown by its id
                rows.append((day, user_id, key_id, pooled, model, requests, errors, prompt,
                             completion, cost, 0))  # fmt: skip
    with sqlite3.connect(db) as conn:
        conn.executemany("INSERT INTO usage_daily VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
        conn.execute(
            "INSERT INTO usage_daily_totals SELECT day, upstream_key_id, model, sum(requests),"
            " sum(errors), sum(prompt_tokens), sum(completion_tokens), sum(cost),"
            " sum(cost_unknown) FROM usage_daily GROUP BY day, upstream_key_id, model"
        )


async def main() -> None:
    from playwright.async_api import async_playwright

    workdir = Path(tempfile.mkdtemp(prefix="ferryman-shots-"))
    gw = await GatewayProcess(workdir, None, ENV).start()
    try:
        async with client_session() as http:
            api = Api(http, gw.url)
            token = await api.login("admin")
            _, me = await api.call("GET", "/users/me", token=token, expect=200)
            keys = [await api.new_key(token, name) for name in KEYS]
            caps = {"rpm": 600, "budget": {"amount": 40, "period": "month"}}
            await api.call("PATCH", f"/keys/{keys[0]['id']}", token=token, json=caps, expect=200)
        seed_usage(workdir / "data" / "ferryman.db", me["id"], [k["id"] for k in keys])
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            for scheme in ("light", "dark"):
                context = await browser.new_context(
                    color_scheme=scheme, viewport={"width": 1280, "height": 900}
                )
                page = await context.new_page()
                await page.goto(f"{gw.url}/console/login")
                await page.get_by_label("Username or email").fill("admin")
                await page.get_by_label("Password").fill(PASSWORD)
                await page.get_by_role("button", name="Log in").click()
                await page.wait_for_url(f"{gw.url}/console/")
                await page.wait_for_selector("[data-fill]", state="detached")  # top keys in
                await page.screenshot(
                    path=str(ROOT / "docs" / f"console-dashboard-{scheme}.png"), full_page=True
                )
                await page.goto(f"{gw.url}/console/keys")
                await page.screenshot(
                    path=str(ROOT / "docs" / f"console-keys-{scheme}.png"), full_page=True
                )
                await page.goto(f"{gw.url}/console/keys/{keys[0]['id']}")
                await page.screenshot(
                    path=str(ROOT / "docs" / f"console-key-{scheme}.png"), full_page=True
                )
                await context.close()
            await browser.close()
    finally:
        await gw.stop()
    print("docs/console-{dashboard,keys,key}-{light,dark}.png written")


if __name__ == "__main__":
    asyncio.run(main())
