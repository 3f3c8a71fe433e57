"""The interactive docs: served from the package, nothing from a CDN."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable

from ferryman.config.settings import Settings
from tests.api.helpers import assert_error, running


async def test_the_docs_page_and_its_assets_come_from_the_gateway(
    settings_factory: Callable[..., Settings],
) -> None:
    async with running(settings_factory(docs_enabled=True)) as (gw, client):
        async with client.http.get(f"{gw.url}/docs") as r:
            assert r.status == 200
            page = await r.read()
            policy = r.headers["Content-Security-Policy"]
        assert b"//" not in page.replace(b"<!DOCTYPE", b"")  # no URL of another host
        sources = re.findall(rb'(?:src|href)="([^"]+)"', page)
        assert sorted(sources) == [
            b"/docs/assets/favicon.png",
            b"/docs/assets/swagger-ui-bundle.js",
            b"/docs/assets/swagger-ui.css",
        ]
        for source in sources:
            async with client.http.get(f"{gw.url}{source.decode()}") as r:
                assert r.status == 200, source
                assert len(await r.read()) > 1000
        # The one inline script is allowed by its hash; nothing else runs inline.
        (script,) = re.findall(rb"<script>(.*?)</script>", page, re.S)
        digest = base64.b64encode(hashlib.sha256(script).digest()).decode()
        assert f"script-src 'self' 'sha256-{digest}';" in policy
        assert "default-src 'none'" in policy and "unsafe-inline'; img-src" in policy
        assert b'"validatorUrl": null' in page
        async with client.http.get(f"{gw.url}/openapi.json") as r:
            assert r.status == 200
            assert "/api/v1/auth/login" in (await r.json())["paths"]
        async with client.http.get(f"{gw.url}/docs/assets/nothing.js") as r:
            assert_error((r.status, await r.json()), 404, "not_found")


async def test_without_docs_enabled_neither_page_nor_assets_exist(
    settings_factory: Callable[..., Settings],
) -> None:
    async with running(settings_factory()) as (gw, client):
        for path in ("/docs", "/docs/assets/swagger-ui.css", "/openapi.json"):
            async with client.http.get(f"{gw.url}{path}") as r:
                body = await r.json()
            assert_error((r.status, body), 404, "not_found")
