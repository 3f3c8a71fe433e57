"""`ferryman serve` as a real process, talked to over a socket."""

from __future__ import annotations

import asyncio
import json
import signal
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fakes.upstream import FakeUpstream
from tests.support import GatewayProcess, client_session, gateway_dict

pytestmark = pytest.mark.e2e


@pytest.fixture
async def process(tmp_path: Path) -> Any:
    started: list[GatewayProcess] = []

    async def start(
        gateway: dict[str, Any] | None, env: dict[str, str] | None = None
    ) -> GatewayProcess:
        proc = GatewayProcess(tmp_path, gateway, env)
        started.append(proc)
        return await proc.start()

    yield start
    for proc in started:
        await proc.stop()


async def test_serves_proxies_and_logs_json_without_secrets(
    process: Any, upstream: FakeUpstream, secret: Any, tmp_path: Path
) -> None:
    gw: GatewayProcess = await process(gateway_dict(upstream.url, strip_prefix=False))
    key, token = secret("sk-or-v1-"), secret()
    async with client_session() as http:
        async with http.get(f"{gw.url}/health") as r:
            assert r.status == 200
            assert (await r.json())["checks"]["database"]["status"] == "ok"
        async with http.post(
            f"{gw.url}/echo/x",
            params={"access_token": token},
            data=b'{"hello": 1}',
            headers={"Authorization": f"Bearer {key}", "Cookie": f"session_token={token}"},
        ) as r:
            assert r.status == 200
            echo = await r.json()
            request_id = r.headers["X-Request-ID"]
    assert echo["body"] == '{"hello": 1}'
    await gw.stop()
    lines = gw.lines()  # every line is JSON, or this fails
    access = [e for e in lines if e.get("correlation_id") == request_id]
    assert access and access[0]["status"] == 200 and access[0]["route"] == "main"
    assert any(e["event"] == "ferryman_started" for e in lines)
    output = gw.output()
    assert key not in output and token not in output
    secrets_file = tmp_path / "data" / "secrets.json"
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    stored = json.loads(secrets_file.read_text())
    for value in stored.values():
        assert value not in output


async def test_secrets_are_generated_once_across_restarts(
    process: Any, upstream: FakeUpstream, tmp_path: Path
) -> None:
    first = await process(gateway_dict(upstream.url))
    await first.stop()
    stored = (tmp_path / "data" / "secrets.json").read_text()
    assert sum(1 for e in first.lines() if e["event"] == "secret_generated") == 3
    second = GatewayProcess(tmp_path / "data" / "..", gateway_dict(upstream.url))
    second.log_path = tmp_path / "second.log"
    await second.start()
    await second.stop()
    assert (tmp_path / "data" / "secrets.json").read_text() == stored
    assert not [e for e in second.lines() if e["event"] == "secret_generated"]


async def test_sigterm_drains_in_flight_requests(process: Any, upstream: FakeUpstream) -> None:
    gw: GatewayProcess = await process(gateway_dict(upstream.url))
    async with client_session() as http:
        slow = asyncio.create_task(http.get(f"{gw.url}/slow", params={"delay": "1.5"}))
        await asyncio.sleep(0.5)
        gw.signal(signal.SIGTERM)
        response = await slow
        assert response.status == 200
        assert await response.json() == {"slow": True}
        response.release()
        assert await gw.wait(15) == 0
        with pytest.raises(aiohttp.ClientConnectionError):
            await http.get(f"{gw.url}/health/live")
    assert any(e["event"] == "ferryman_stopped" for e in gw.lines())


async def test_the_grace_period_bounds_the_drain(process: Any, upstream: FakeUpstream) -> None:
    gw: GatewayProcess = await process(gateway_dict(upstream.url), {"FERRYMAN_SHUTDOWN_GRACE": "1"})
    async with client_session() as http:
        hanging = asyncio.create_task(http.get(f"{gw.url}/hang"))
        await asyncio.wait_for(upstream.seen.hang_started.wait(), 5)
        started = asyncio.get_running_loop().time()
        gw.signal(signal.SIGTERM)
        response = await hanging
        assert response.status == 503
        assert (await response.json())["error"] == "shutting_down"
        assert await gw.wait(15) == 0
        assert asyncio.get_running_loop().time() - started < 8
    await asyncio.wait_for(upstream.seen.hang_cancelled.wait(), 5)


async def test_metrics_add_up_across_workers(process: Any, upstream: FakeUpstream) -> None:
    gw: GatewayProcess = await process(gateway_dict(upstream.url), {"FERRYMAN_WORKERS": "2"})
    for _ in range(200):  # both workers up, so both take some of the requests
        if sum(1 for e in gw.lines() if e["event"] == "ferryman_started") == 2:
            break
        await asyncio.sleep(0.05)
    pids: set[str] = set()
    async with client_session() as http:
        for _ in range(40):
            # A new connection each time, so both workers get some.
            async with aiohttp.ClientSession() as one, one.get(f"{gw.url}/echo") as r:
                assert r.status == 200
        async with http.get(f"{gw.url}/metrics") as r:
            text = await r.text()
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "ferryman_requests_total" and sample.labels["route"] == "main":
                total += sample.value
            if "pid" in sample.labels:
                pids.add(sample.labels["pid"])
    assert total == 40
    started = [e for e in gw.lines() if e["event"] == "ferryman_started"]
    assert len(started) == 2


async def test_the_builtin_gateway_fails_closed_without_credentials(
    process: Any, upstream: FakeUpstream
) -> None:
    gw: GatewayProcess = await process(None, {"FERRYMAN_OPENROUTER_URL": f"{upstream.url}/echo"})
    async with client_session() as http:
        async with http.post(f"{gw.url}/v1/chat/completions", json={"model": "x"}) as r:
            assert r.status == 401
            assert r.headers["WWW-Authenticate"] == 'Bearer realm="ferryman"'
            body = await r.json()
        async with http.get(f"{gw.url}/health/ready") as r:
            assert r.status == 200
    assert body["error"] == "missing_credential"
    assert upstream.seen.requests == []


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "ferryman", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=60,
    )


def test_an_invalid_config_stops_serve_with_a_readable_message(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("upstreams: {a: {url: ftp://x}}\nroutes: [{path: /, upstream: b}]\n")
    result = run_cli("serve", "--config", str(bad), "--port", "0", cwd=tmp_path)
    assert result.returncode == 1
    assert "upstreams.a.url: must start with http:// or https://" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    check = run_cli("check-config", str(bad))
    assert check.returncode == 1
    assert check.stderr == result.stderr


def test_check_config_accepts_a_good_file_and_shows_warnings(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(
        "upstreams: {a: {url: 'http://x', credential: pool}}\nroutes: [{path: /, upstream: a}]\n"
    )
    result = run_cli("check-config", str(good))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{good}: OK (1 upstreams, 1 routes)"
    assert "open to anyone" in result.stderr


def test_a_missing_upstream_credential_is_a_clear_startup_error(tmp_path: Path) -> None:
    config = tmp_path / "gw.yaml"
    config.write_text(
        "upstreams: {a: {url: 'http://127.0.0.1:9', credential: {value_env: NOPE_KEY}}}\n"
        "routes: [{path: /, upstream: a, auth: [api_key]}]\n"
    )
    env = {"PATH": "/usr/bin:/bin", "FERRYMAN_DATA_DIR": str(tmp_path / "data")}
    result = run_cli("serve", "--config", str(config), "--port", "0", env=env, cwd=tmp_path)
    assert result.returncode != 0
    assert "NOPE_KEY is not set" in result.stdout + result.stderr


def test_migrate_and_its_status(tmp_path: Path) -> None:
    from ferryman.store.migrate import head_revision

    head = head_revision()
    env = {"PATH": "/usr/bin:/bin", "FERRYMAN_DATA_DIR": str(tmp_path / "data")}
    status = run_cli("migrate", "--status", env=env)
    assert status.returncode == 0, status.stderr
    assert "at nothing" in status.stdout and "migrations pending" in status.stdout
    applied = run_cli("migrate", env=env)
    assert applied.returncode == 0 and f"nothing -> {head}" in applied.stdout
    again = run_cli("migrate", env=env)
    assert f"already at {head}" in again.stdout
    down = run_cli("migrate", "--downgrade", "base", env=env)
    assert f"{head} -> nothing" in down.stdout
    broken = run_cli(
        "migrate", env={**env, "FERRYMAN_DATABASE_URL": "postgresql://x:pw@127.0.0.1:1/db"}
    )
    assert broken.returncode == 1
    assert broken.stderr.startswith("error: cannot migrate postgresql+asyncpg://x:***@")
    assert "Traceback" not in broken.stderr


def test_version_and_help() -> None:
    from ferryman import __version__

    assert run_cli("--version").stdout.strip() == f"ferryman, version {__version__}"
    for command in ("serve", "check-config", "migrate"):
        result = run_cli(command, "--help")
        assert result.returncode == 0
        assert "Usage: python -m ferryman" in result.stdout or "Usage:" in result.stdout
