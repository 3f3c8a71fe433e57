"""Helpers shared by the tests: running the gateway in-process or as a real process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import uvicorn
import yaml

from ferryman.app import Ferryman
from ferryman.clock import Clock
from ferryman.config.loading import parse_gateway
from ferryman.config.settings import Settings


def gateway_dict(upstream_url: str, **route: Any) -> dict[str, Any]:
    """One upstream `up` and one route `main` at `/` unless overridden."""
    security = route.pop("security", None)
    upstream = route.pop("upstream_spec", {})
    data: dict[str, Any] = {
        "upstreams": {"up": {"url": upstream_url, **upstream}},
        "routes": [{"name": "main", "path": "/", "upstream": "up", **route}],
    }
    if security is not None:
        data["security"] = security
    return data


@dataclass
class Running:
    url: str
    app: Ferryman
    server: uvicorn.Server


def free_socket() -> socket.socket:
    # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on accepted sockets whose
    # protocol says TCP, and without it every response waits ~40 ms on Nagle.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextlib.asynccontextmanager
async def serve_app(
    settings: Settings,
    gateway: Mapping[str, Any],
    *,
    grace: int | None = None,
    clock: Clock | None = None,
) -> AsyncIterator[Running]:
    """Run a Ferryman app under uvicorn in this event loop, on a free loopback port."""
    app = Ferryman(settings, parse_gateway(dict(gateway), source="test"), clock=clock)
    config = uvicorn.Config(
        app,
        lifespan="on",
        log_config=None,
        access_log=False,
        server_header=False,
        date_header=False,
        proxy_headers=False,
        http="httptools",
        ws="websockets-sansio",  # as `ferryman serve` runs it
        timeout_graceful_shutdown=grace,
    )
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    sock = free_socket()
    port = sock.getsockname()[1]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                raise RuntimeError("the gateway did not start") from task.exception()
            await asyncio.sleep(0.005)
        yield Running(url=f"http://127.0.0.1:{port}", app=app, server=server)
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
        sock.close()


def client_session(**kwargs: Any) -> aiohttp.ClientSession:
    """A test client that shows bytes exactly as the gateway sent them (and keeps no
    cookies unless given a `cookie_jar`)."""
    kwargs.setdefault("cookie_jar", aiohttp.DummyCookieJar())
    return aiohttp.ClientSession(
        auto_decompress=False, timeout=aiohttp.ClientTimeout(total=30), **kwargs
    )


class GatewayProcess:
    """`ferryman serve` as a real process, its output captured to a file."""

    def __init__(
        self,
        workdir: Path,
        gateway: Mapping[str, Any] | None,
        env: Mapping[str, str] | None = None,
        args: list[str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.log_path = workdir / "ferryman.log"
        self.config_path: Path | None = None
        if gateway is not None:
            self.config_path = workdir / "gateway.yaml"
            self.config_path.write_text(yaml.safe_dump(dict(gateway)))
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("FERRYMAN_")},
            "FERRYMAN_DATA_DIR": str(workdir / "data"),
            **(env or {}),
        }
        self.args = args or []
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "ferryman", "serve", "--host", "127.0.0.1", "--port", "0"]
        if self.config_path is not None:
            cmd += ["--config", str(self.config_path)]
        return cmd + self.args

    async def start(self, timeout: float = 30) -> GatewayProcess:
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.workdir,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines():
                event = line.get("event", "")
                if isinstance(event, str) and event.startswith("Uvicorn running on"):
                    self.port = int(event.split(":")[-1].split(" ")[0])
                    await self._until_live(deadline)
                    return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"ferryman exited {self.proc.returncode}:\n{self.output()}")
            await asyncio.sleep(0.05)
        raise RuntimeError(f"ferryman did not start in {timeout}s:\n{self.output()}")

    async def _until_live(self, deadline: float) -> None:
        # With several workers the socket is bound before any worker is ready.
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                try:
                    async with http.get(f"{self.url}/health/live") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        raise RuntimeError(f"ferryman did not become live:\n{self.output()}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def lines(self) -> list[dict[str, Any]]:
        """Every JSON log line so far (a line that is not JSON fails the test)."""
        out = []
        for raw in self.output().splitlines():
            if raw.strip():
                out.append(json.loads(raw))
        return out

    def signal(self, signum: int = signal.SIGTERM) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    async def wait(self, timeout: float = 30) -> int:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise TimeoutError("ferryman did not exit")
            await asyncio.sleep(0.05)
        return self.proc.returncode

    async def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await self.wait(15)
            except TimeoutError:
                self.proc.kill()
                await self.wait(5)
        # pytest shows a test's captured output only when it fails: then the process's
        # last words are there to read, beside the failure.
        tail = self.output().splitlines()[-40:]
        print(f"--- last lines of {self.log_path}:", *tail, sep="\n")


PASSWORD = "correct horse battery staple"


class Api:
    """A thin client for the management API, for tests."""

    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http = http
        self.base = base.rstrip("/") + "/api/v1"

    async def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        expect: int | None = None,
        **kwargs: Any,
    ) -> tuple[int, Any]:
        headers = dict(kwargs.pop("headers", {}) or {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        async with self.http.request(
            method, self.base + path, headers=headers, **kwargs
        ) as response:
            body = await response.read()
            data = json.loads(body) if body else None
            if expect is not None:
                assert response.status == expect, (response.status, data)
            return response.status, data

    async def register(self, username: str, password: str = PASSWORD, **extra: Any) -> Any:
        _, user = await self.call(
            "POST",
            "/auth/register",
            json={"username": username, "password": password, **extra},
            expect=201,
        )
        return user

    async def login(self, username: str, password: str = PASSWORD) -> str:
        _, body = await self.call(
            "POST", "/auth/login", json={"username": username, "password": password}, expect=200
        )
        token: str = body["access_token"]
        return token

    async def user(self, username: str) -> tuple[Any, str]:
        """Register and log in; the user and their JWT."""
        user = await self.register(username)
        return user, await self.login(username)

    async def session_cookie(self, username: str, password: str = PASSWORD) -> str:
        """A session login's `session_token` cookie value."""
        body = {"username": username, "password": password}
        async with self.http.post(self.base + "/auth/session", json=body) as response:
            assert response.status == 200, await response.text()
            return response.cookies["session_token"].value

    async def me_status(self, session_cookie: str) -> int:
        headers = {"Cookie": f"session_token={session_cookie}"}
        status, _ = await self.call("GET", "/users/me", headers=headers)
        return status

    async def login_status(self, username: str, password: str) -> int:
        body = {"username": username, "password": password}
        status, _ = await self.call("POST", "/auth/login", json=body)
        return status

    async def new_key(self, token: str, name: str = "k", **extra: Any) -> Any:
        _, key = await self.call(
            "POST", "/keys", token=token, json={"name": name, **extra}, expect=201
        )
        return key

    async def new_pass(self, token: str, hours: int = 1) -> Any:
        _, record = await self.call(
            "POST", "/tokens/purchase", token=token, json={"duration_hours": hours}, expect=201
        )
        return record
