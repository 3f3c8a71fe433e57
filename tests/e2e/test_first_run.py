"""What `ferryman serve` prints when it starts: on a terminal (a pseudo-terminal here),
a short readable block with the next steps; into a file, JSON lines only."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.test_auth_e2e import CHEAP_HASH
from tests.fakes.upstream import FakeUpstream
from tests.support import GatewayProcess, gateway_dict

pytestmark = pytest.mark.e2e

STEP_ADMIN = "ferryman admin create --username admin"
STEP_POOL = 'echo "$OPENROUTER_KEY" | ferryman upstream-keys add --upstream openrouter --name main'
STEP_KEY = "KEY=$(ferryman keys create --user admin --name laptop)"


def environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("FERRYMAN_")},
        "FERRYMAN_DATA_DIR": str(tmp_path / "data"),
        **CHEAP_HASH,
        **extra,
    }


class Terminal:
    """`ferryman serve` with its output on a pseudo-terminal, as a person would run it."""

    def __init__(self, env: dict[str, str], cwd: Path, *args: str) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: become ferryman
            os.chdir(cwd)
            command = [sys.executable, "-m", "ferryman", "serve", "--port", "0", *args]
            os.execve(sys.executable, command, env)
        self.output = b""

    def read(self, timeout: float) -> bool:
        """Read what is there; False at the end of the output."""
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return True
        try:
            chunk = os.read(self.fd, 65536)
        except OSError:  # the child closed the terminal
            return False
        self.output += chunk
        return bool(chunk)

    def until(self, text: str, timeout: float = 30, times: int = 1) -> None:
        deadline = time.monotonic() + timeout
        while self.output.count(text.encode()) < times:
            assert time.monotonic() < deadline, f"no {text!r} in:\n{self.text}"
            assert self.read(0.1), f"ended before {text!r}:\n{self.text}"

    def stop(self) -> int:
        """Ctrl-C, then everything it still says; its exit status."""
        os.kill(self.pid, signal.SIGINT)
        deadline = time.monotonic() + 30
        while self.read(0.1):
            assert time.monotonic() < deadline, "ferryman did not stop"
        _, status = os.waitpid(self.pid, 0)
        os.close(self.fd)
        return os.waitstatus_to_exitcode(status)

    @property
    def text(self) -> str:
        return self.output.decode("utf-8", "replace").replace("\r\n", "\n")


def serve_on_terminal(env: dict[str, str], cwd: Path, *, workers: int = 1) -> tuple[str, str]:
    """Start, wait for the block, stop: the whole output and the address it gave."""
    terminal = Terminal(env, cwd)
    try:
        terminal.until("(Ctrl-C stops it)")
        # Several workers start after the block (the supervisor binds first); each says
        # this once it is up, and stopping one that is still starting is a failed start.
        if workers > 1:
            terminal.until("credential_cache_ttl_capped", times=workers)
        terminal.read(0.2)
    finally:
        status = terminal.stop()
    assert status == 0, terminal.text
    text = terminal.text
    first = next(line for line in text.splitlines() if "listening on" in line)
    return text, first.split("listening on ")[1].split(" ")[0]


def cli(env: dict[str, str], cwd: Path, *args: str, stdin: str = "") -> str:
    done = subprocess.run(
        [sys.executable, "-m", "ferryman", *args],
        input=stdin, capture_output=True, text=True, env=env, cwd=cwd, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def next_steps(text: str) -> list[str]:
    lines = text.splitlines()
    if not any(line.startswith("Next steps") for line in lines):
        return []
    start = next(i for i, line in enumerate(lines) if line.startswith("Next steps")) + 1
    steps = []
    for line in lines[start:]:
        if not line.startswith("  "):
            break
        steps.append(line.strip())
    return steps


def test_a_first_start_on_a_terminal_says_where_and_what_next(tmp_path: Path) -> None:
    env = environment(tmp_path)
    text, url = serve_on_terminal(env, tmp_path)
    assert url.startswith("http://127.0.0.1:") and not url.endswith(":0")
    for line in text.splitlines():  # readable lines, not JSON objects
        assert not line.lstrip().startswith("{"), line
    assert "gateway   built-in OpenRouter gateway: /v1 and /openrouter" in text
    assert "API docs  off (FERRYMAN_DOCS_ENABLED=true serves them at /docs)" in text
    assert f"data      {tmp_path / 'data'} (SQLite; new secrets.json: back it up)" in text
    assert next_steps(text) == [
        STEP_ADMIN,
        STEP_POOL,
        STEP_KEY,
        f'curl {url}/v1/models -H "Authorization: Bearer $KEY"',
    ]
    # The block replaces the start-up chatter; stopping says one line.
    for chatter in ("Uvicorn running on", "Started server process", "secret_generated",
                    "ferryman_started", "Application startup complete"):  # fmt: skip
        assert chatter not in text
    assert len(text.splitlines()) <= 12, text
    assert "ferryman_stopped" in text

    cli(env, tmp_path, "admin", "create", "--username", "admin", "--password-stdin",
        stdin="a long admin password\n")  # fmt: skip
    text, url = serve_on_terminal(env, tmp_path)
    assert "new secrets.json" not in text  # generated once, said once
    assert next_steps(text) == [
        STEP_POOL,
        STEP_KEY,
        f'curl {url}/v1/models -H "Authorization: Bearer $KEY"',
    ]

    cli(env, tmp_path, "upstream-keys", "add", "--upstream", "openrouter", "--name", "main",
        "--no-validate", stdin="sk-or-v1-" + "0" * 64 + "\n")  # fmt: skip
    text, url = serve_on_terminal(env, tmp_path)
    assert next_steps(text) == [STEP_KEY, f'curl {url}/v1/models -H "Authorization: Bearer $KEY"']

    key = cli(env, tmp_path, "keys", "create", "--user", "admin", "--name", "laptop").strip()
    env["FERRYMAN_DOCS_ENABLED"] = "true"
    text, url = serve_on_terminal(env, tmp_path)
    assert next_steps(text) == []
    assert f"API docs  {url}/docs" in text
    assert key not in text


def test_several_workers_say_it_once_after_binding(tmp_path: Path) -> None:
    env = environment(tmp_path, FERRYMAN_WORKERS="2")
    text, url = serve_on_terminal(env, tmp_path, workers=2)
    assert url.startswith("http://127.0.0.1:") and not url.endswith(":0")
    assert text.count("listening on") == 1
    assert next_steps(text)[0] == STEP_ADMIN


async def test_into_a_file_every_line_is_json_with_a_ready_event(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    gateway = {**gateway_dict(upstream.url, auth=["api_key"]), "upstreams": {
        "up": {"url": upstream.url, "credential": "pool"}}}  # fmt: skip
    gw = GatewayProcess(tmp_path, gateway)
    await gw.start()
    await gw.stop()
    events = gw.lines()  # each line parses as JSON, or this fails
    names = [e["event"] for e in events]
    running = next(i for i, n in enumerate(names) if n.startswith("Uvicorn running on"))
    ready = events[names.index("ferryman_ready")]
    assert names.index("ferryman_ready") > running  # said once bound
    assert ready["listening"] == gw.url
    assert ready["gateway"] == f"{gw.config_path} (1 route)"
    assert ready["docs"].startswith("off (FERRYMAN_DOCS_ENABLED=true")
    assert ready["data_dir"] == str(tmp_path / "data")
    assert ready["secrets_generated"] is True
    assert [step["commands"] for step in ready["next_steps"]] == [
        [STEP_ADMIN],
        [f'echo "$API_KEY" | ferryman upstream-keys add --upstream up --name main '
         f"--config {gw.config_path}"],
        [STEP_KEY, f'curl {gw.url}/ -H "Authorization: Bearer $KEY"'],
    ]  # fmt: skip


async def test_secrets_stay_out_of_the_console_format(
    tmp_path: Path, upstream: FakeUpstream, secret: Any
) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(json.dumps(gateway_dict(upstream.url)))
    terminal = Terminal(environment(tmp_path), tmp_path, "--config", str(config))
    token, bearer = secret(), secret("sk-or-v1-")
    try:
        await asyncio.to_thread(terminal.until, "(Ctrl-C stops it)")
        url = terminal.text.split("listening on ")[1].split(" ")[0]
        async with aiohttp.ClientSession() as http:
            async with http.get(
                f"{url}/echo/x",
                params={"token": token, "model": "m"},
                headers={"Authorization": f"Bearer {bearer}", "X-Api-Key": token},
            ) as r:
                assert r.status == 200
    finally:
        assert await asyncio.to_thread(terminal.stop) == 0
    text = terminal.text
    assert "request" in text and "token=[redacted]" in text and "model=m" in text
    assert token not in text and bearer not in text
    assert not any(line.startswith("{") for line in text.splitlines())
