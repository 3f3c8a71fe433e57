"""Defaults a new operator meets, through real processes: every route leaves a usage
record unless it opts out, and a gateway file is read the way it was meant."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakes.upstream import FakeUpstream
from tests.support import GatewayProcess, client_session, gateway_dict

pytestmark = pytest.mark.e2e


async def test_every_route_is_metered_unless_it_says_none(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    config = gateway_dict(upstream.url)  # no `meter`: the default
    config["routes"].append(
        {"name": "quiet", "path": "/quiet", "upstream": "up", "strip_prefix": True, "meter": "none"}
    )
    gw = GatewayProcess(tmp_path, config, {"FERRYMAN_USAGE_FLUSH_INTERVAL": "0.1"})
    await gw.start()
    try:
        async with client_session() as http:
            for path in ("/echo/a", "/status/502", "/echo/b", "/quiet/echo/c"):
                async with http.get(gw.url + path) as r:
                    await r.read()
    finally:
        await gw.stop()  # shutdown writes what is queued
    with sqlite3.connect(tmp_path / "data" / "ferryman.db") as db:
        records = db.execute("SELECT route, status, bytes_out FROM usage_records").fetchall()
        daily = db.execute("SELECT requests, errors FROM usage_daily").fetchall()
    assert sorted((route, status) for route, status, _ in records) == [
        ("main", 200),
        ("main", 200),
        ("main", 502),
    ]
    assert all(size > 0 for route, status, size in records if status == 200)
    assert daily == [(3, 1)]


def check_config(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ferryman", "check-config", str(path)],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        timeout=60,
    )


def test_a_file_is_read_as_meant_and_its_mistakes_told_plainly(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(
        "upstreams: {api: {url: 'http://127.0.0.1:9000'}}\n"
        "routes:\n"
        "  - {path: /api, upstream: api, auth: api_key, methods: GET, limits: 10/second}\n"
    )
    result = check_config(good)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{good}: OK (1 upstreams, 1 routes)"

    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "upstreams: {api: {url: 'http://127.0.0.1:9000', pool: {size: many}, tls_verify: maybe}}\n"
        "routes:\n"
        "  - {path: /api, upstream: api, auth: {kind: key}, meter: tokens}\n"
    )
    result = check_config(bad)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: {bad}: 4 errors",
        "  upstreams.api.pool.size: must be a whole number",
        "  upstreams.api.tls_verify: must be true or false",
        "  routes[0].auth: must be a list, e.g. [a, b]",
        "  routes[0].meter: 'tokens' is not one of: none, http or llm",
    ]
    assert "Input should" not in result.stderr and "Traceback" not in result.stderr
