"""The processes bench/run.py measures: nginx (the upstream), the floor proxy and
Ferryman, with their configuration."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from harness import Pinning, Processes, Workspace, ferryman_executable, free_port, wait_until_up
from scenarios import BENCH_DIR, BODY, LIMITS, PAGE, POOL_KEYS, SSE_BODY, Scenario

# --------------------------------------------------------------------------- services


def nginx_conf(ws: Workspace, port: int) -> str:
    body, stream = BODY.decode(), SSE_BODY.decode()
    for text in (body, stream):
        assert "'" not in text and "$" not in text and "\\" not in text, "breaks nginx quoting"
    root = ws.path("nginx")
    temp = "\n".join(
        f"    {kind}_temp_path {root / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""daemon off;
master_process off;
worker_processes 1;
pid {root / "nginx.pid"};
error_log {root / "error.log"} warn;

events {{
    worker_connections 4096;
}}

http {{
    access_log off;
{temp}
    keepalive_requests 100000;
    keepalive_timeout 75s;
    server_tokens off;

    server {{
        listen 127.0.0.1:{port};
        location / {{
            default_type application/json;
            return 200 '{body}';
        }}
        location /v1/stream/ {{
            default_type text/event-stream;
            return 200 '{stream}';
        }}
        location /site/ {{
            root {ws.path("www")};
            default_type text/html;
        }}
        location /dyn/ {{
            alias {ws.path("www") / "site"}/;
            default_type text/html;
            etag off;
        }}
    }}
}}
"""


def start_nginx(
    procs: Processes, ws: Workspace, pin: Pinning
) -> tuple[str, subprocess.Popen[bytes]]:
    root = ws.path("nginx")
    root.mkdir()
    port = free_port()
    conf = root / "nginx.conf"
    conf.write_text(nginx_conf(ws, port))
    site = ws.path("www") / "site"
    site.mkdir(parents=True)
    (site / "page.html").write_bytes(PAGE)
    log = root / "error.log"
    nginx = shutil.which("nginx") or "nginx"
    argv = [*pin.load, nginx, "-p", str(root), "-c", str(conf), "-e", str(log)]
    proc = procs.start(argv, log=root / "nginx.out")
    url = f"http://127.0.0.1:{port}"
    wait_until_up("nginx", url + "/", proc, log)
    return url, proc


def start_floor(
    procs: Processes, ws: Workspace, pin: Pinning, upstream: str
) -> tuple[subprocess.Popen[bytes], str, Path]:
    port = free_port()
    log = ws.path("floor.log")
    argv = [
        *pin.proxy,
        sys.executable,
        str(BENCH_DIR / "floor.py"),
        "--upstream",
        upstream,
        "--port",
        str(port),
    ]
    proc = procs.start(argv, log=log)
    url = f"http://127.0.0.1:{port}"
    wait_until_up("floor", url + "/", proc, log)
    return proc, url, log


def gateway_config(
    upstream: str, scenarios: Sequence[Scenario], limiter_backend: str = "memory"
) -> dict[str, Any]:
    """The gateway file: nginx as `static`, each scenario's route and sections (an
    upstream URL written `{upstream}` is the same nginx)."""
    config: dict[str, Any] = {"upstreams": {"static": {"url": upstream}}, "routes": []}
    for scenario in scenarios:
        for key, value in scenario.gateway.items():
            if isinstance(value, dict):
                config.setdefault(key, {}).update(value)
            else:
                config[key] = value
        if scenario.route:
            config["routes"].append(scenario.route)
    for spec in config["upstreams"].values():
        spec["url"] = spec["url"].format(upstream=upstream)
    for route in config["routes"]:
        if route.get("limits") == "LIMITS":
            route["limits"] = LIMITS
    if limiter_backend == "redis":
        config["limiter"] = {"backend": "redis", "timeout": 0.05}
    return config


def start_ferryman(
    procs: Processes,
    ws: Workspace,
    pin: Pinning,
    upstream: str,
    scenarios: Sequence[Scenario],
    limiter: str = "memory",
    database: str | None = None,
) -> tuple[subprocess.Popen[bytes], str, Path, dict[str, str]]:
    config = ws.path("gateway.yaml")
    gateway = gateway_config(upstream, scenarios, limiter)
    config.write_text(yaml.safe_dump(gateway, sort_keys=False))
    port = free_port()
    log = ws.path("ferryman.log")
    # A clean environment: no FERRYMAN_* from the caller's shell, no .env from the cwd.
    env = {k: v for k, v in os.environ.items() if not k.startswith("FERRYMAN_")}
    env |= {"FERRYMAN_DATA_DIR": str(ws.path("data")), "FERRYMAN_LOG_LEVEL": "info"}
    if database:
        env["FERRYMAN_DATABASE_URL"] = database
    if limiter == "redis":
        redis_url = os.environ.get("FERRYMAN_REDIS_URL", "redis://127.0.0.1:6379/0")
        env |= {"FERRYMAN_REDIS_URL": redis_url, "FERRYMAN_REDIS_PREFIX": f"bench{os.getpid()}:"}
    argv = [
        *pin.proxy,
        ferryman_executable(),
        "serve",
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    secrets = provision(env, ws, scenarios, config)
    proc = procs.start(argv, log=log, env=env, cwd=ws.root)
    url = f"http://127.0.0.1:{port}"
    wait_until_up("ferryman", url + "/health/live", proc, log)
    return proc, url, log, secrets


def provision(
    env: dict[str, str], ws: Workspace, scenarios: Sequence[Scenario], config: Path
) -> dict[str, str]:
    """Credentials the scenarios need, made with the CLI before the server starts: a
    client key for headers that name `{api_key}`, provider keys for pooled upstreams."""
    run = functools.partial(
        subprocess.run, env=env, cwd=ws.root, capture_output=True, text=True, check=True
    )
    pooled = [
        name
        for s in scenarios
        for name, spec in s.gateway.get("upstreams", {}).items()
        if spec.get("credential", {}).get("kind") == "pool"
    ]
    for upstream in pooled:
        for number in range(POOL_KEYS):
            add = ["upstream-keys", "add", "--upstream", upstream, "--name", f"bench-{number}"]
            run([ferryman_executable(), *add, "--no-validate", "--config", str(config)],
                input=f"sk-bench-{number:02d}-{'x' * 40}\n")  # fmt: skip
    wanted = " ".join(v for s in scenarios for v in s.headers.values())
    if "{api_key}" not in wanted:
        return {}
    run([ferryman_executable(), "admin", "create", "--username", "bench", "--password-stdin"],
        input="bench password, long enough\n")  # fmt: skip
    key = run([ferryman_executable(), "keys", "create", "--user", "bench", "--name", "bench"])
    return {"api_key": key.stdout.strip()}
