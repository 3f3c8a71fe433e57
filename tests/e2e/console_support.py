"""What the console's browser tests share: logging in through the form, a gateway with
one keyed route to a fake upstream, and waiting for a key's row on a dashboard."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.support import PASSWORD


async def log_in(page: Any, base: str, name: str, password: str = PASSWORD) -> None:
    """Through the login form; lands on the dashboard."""
    await page.goto(f"{base}/console/login")
    await page.get_by_label("Username or email").fill(name)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_url(f"{base}/console/")


def keyed_gateway(upstream_url: str) -> dict[str, Any]:
    """`/up/…` to the upstream, for client keys only."""
    return {
        "upstreams": {"up": {"url": upstream_url}},
        "routes": [{"name": "api", "path": "/up", "upstream": "up", "strip_prefix": True,
                    "auth": ["api_key"]}],
    }  # fmt: skip


async def key_row(page: Any, url: str, name: str, requests: str) -> list[str]:
    """The cells of key `name`'s row in the dashboard at `url`, once it shows `requests`
    (usage is written every flush interval), or as last seen after 5 s."""
    cells: list[str] = []
    for _ in range(50):
        await page.goto(url)
        row = page.locator("#top-keys tr", has_text=name)
        if await row.count():
            cells = await row.locator("td").all_text_contents()
            if cells[1] == requests:
                break
        await asyncio.sleep(0.1)
    return cells
