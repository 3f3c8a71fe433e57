"""The gateway's say over proxied answers, through a real `ferryman serve`: its own
cookie, security headers, and a route's enforced CORS list."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakes.upstream import FakeUpstream
from tests.support import GatewayProcess, client_session, gateway_dict

pytestmark = pytest.mark.e2e


async def test_cookie_headers_and_cors_hold_in_a_real_process(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    config = gateway_dict(
        upstream.url,
        security={
            "response_headers": {
                "hsts": {"max_age": 31536000},
                "content_type_options": "nosniff",
                "frame_options": "DENY",
                "referrer_policy": "no-referrer",
            }
        },
    )
    config["routes"].append(
        {
            "name": "widget",
            "path": "/widget",
            "upstream": "up",
            "strip_prefix": True,
            "cors": {"allow_origins": ["https://shop.example"], "enforce": True},
            "response_headers": {"frame_options": "SAMEORIGIN"},
        }
    )
    gw = GatewayProcess(tmp_path, config)
    await gw.start()
    try:
        async with client_session() as http:
            planted = [
                ("h", "Set-Cookie:session_token=planted; Path=/"),
                ("h", "X-Frame-Options:ALLOWALL"),
            ]
            async with http.get(f"{gw.url}/headers", params=planted) as r:
                assert r.status == 200
                assert "Set-Cookie" not in r.headers
                assert r.headers.getall("X-Frame-Options") == ["DENY"]
                assert (
                    r.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
                )
                assert r.headers["X-Content-Type-Options"] == "nosniff"
                assert r.headers["Referrer-Policy"] == "no-referrer"
            shop = {"Origin": "https://shop.example"}
            async with http.get(f"{gw.url}/widget/headers", headers=shop) as r:
                assert r.status == 200
                assert r.headers["Access-Control-Allow-Origin"] == "https://shop.example"
                assert r.headers.getall("X-Frame-Options") == ["SAMEORIGIN"]
            async with http.get(
                f"{gw.url}/widget/headers", headers={"Origin": "https://evil.example"}
            ) as r:
                assert r.status == 403
                assert (await r.json())["error"] == "origin_not_allowed"
    finally:
        await gw.stop()
    assert [r["path"].partition("?")[0] for r in upstream.seen.requests] == ["/headers"] * 2
    refused = [e for e in gw.lines() if e["event"] == "upstream_cookie_refused"]
    assert [(e["upstream"], e["cookie_name"]) for e in refused] == [("up", "session_token")]
