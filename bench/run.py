"""Ferryman's proxy overhead against a floor proxy, measured in one run.

    .venv/bin/python bench/run.py [--duration 10] [--warmup 2] [--json PATH]

Starts a static nginx upstream, the floor proxy (bench/floor.py) and Ferryman, drives
each with wrk at a few concurrencies and prints one table plus the ratios that matter.
Every process it starts is stopped again, also on Ctrl-C and errors.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
DEFAULT_JSON = BENCH_DIR / "results" / "latest.json"
CONCURRENCIES = (1, 32)
HIGH, LOW = max(CONCURRENCIES), min(CONCURRENCIES)

TARGET_THROUGHPUT_RATIO = 0.70  # ferryman:pass req/s @HIGH / floor, at least
TARGET_P50_RATIO = 1.50  # ferryman:pass p50 @LOW / floor, at most
TARGET_RSS_MB = 100.0  # ferryman resident memory after the run, below
TARGET_IDLE_RSS_MB = 80.0  # ferryman resident memory once started, before any load


# --------------------------------------------------------------------------- scenarios


@dataclass(frozen=True)
class Scenario:
    """One Ferryman route under load, measured as target `ferryman:<name>`.

    `route` is the entry added to the gateway file's `routes:` (its upstream is the
    static nginx, called `static`); `path` is what wrk requests; `headers` are sent
    with every request (`{api_key}` in a value becomes a client key made for the run);
    `gateway` is merged into the gateway file's top level (for sections such as limits
    that a route refers to).
    """

    name: str
    path: str
    route: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    gateway: dict[str, Any] = field(default_factory=dict)
    target: float | None = None
    """Lowest acceptable throughput @32 relative to the pass-through route."""
    body: bytes | None = None
    """Sent as a JSON POST when set (else a GET)."""
    expect: str = "json"
    """The upstream answer the target must relay: `json` or `sse` (nginx's two bodies)."""
    baseline: str = "pass"
    """The scenario its throughput is compared with."""


#: What the LLM scenarios POST: a short chat request.
CHAT_REQUEST = b'{"model":"openai/gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'

#: The baseline is `pass`; every other scenario is also reported relative to it (or to
#: its own `baseline`: the metered LLM routes to the same POST passed through).
SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        name="pass",
        path="/pass/v1/chat/completions",
        route={"name": "pass", "path": "/pass", "upstream": "static", "strip_prefix": True},
    ),
    Scenario(
        name="unmetered",
        path="/unmetered/v1/chat/completions",
        route={
            "name": "unmetered",
            "path": "/unmetered",
            "upstream": "static",
            "strip_prefix": True,
            "meter": "none",
        },
    ),
    Scenario(
        name="api_key",
        path="/keyed/v1/chat/completions",
        route={
            "name": "api_key",
            "path": "/keyed",
            "upstream": "static",
            "strip_prefix": True,
            "auth": ["api_key"],
        },
        headers={"Authorization": "Bearer {api_key}"},
        target=0.9,
    ),
    Scenario(
        name="pooled",
        path="/pooled/v1/chat/completions",
        route={"name": "pooled", "path": "/pooled", "upstream": "pooled", "strip_prefix": True},
        gateway={
            "upstreams": {
                "pooled": {
                    "url": "{upstream}",
                    # An open route: the pool is lent to everyone (the default lends
                    # it only to granted accounts).
                    "credential": {
                        "kind": "pool",
                        "probe_interval": 0,
                        "shared_access": "everyone",
                    },
                }
            }
        },
        target=0.9,
    ),
    Scenario(
        name="limited",
        path="/limited/v1/chat/completions",
        route={
            "name": "limited",
            "path": "/limited",
            "upstream": "static",
            "strip_prefix": True,
            "limits": "LIMITS",
        },
        target=0.9,
    ),
    Scenario(
        name="pass_post",
        path="/passpost/v1/chat/completions",
        route={
            "name": "pass_post",
            "path": "/passpost",
            "upstream": "static",
            "strip_prefix": True,
        },
        body=CHAT_REQUEST,
    ),
    Scenario(
        name="pass_sse",
        path="/passpost/v1/stream/chat/completions",
        route={},  # pass_post's route, asked for the event stream
        body=CHAT_REQUEST.replace(b'{"model"', b'{"stream":true,"model"'),
        expect="sse",
    ),
    Scenario(
        name="llm_json",
        path="/llmjson/v1/chat/completions",
        route={
            "name": "llm_json",
            "path": "/llmjson",
            "upstream": "static",
            "strip_prefix": True,
            "meter": "llm",
        },
        body=CHAT_REQUEST,
        target=0.85,
        baseline="pass_post",
    ),
    Scenario(
        name="llm_sse",
        path="/llmsse/v1/stream/chat/completions",
        route={
            "name": "llm_sse",
            "path": "/llmsse",
            "upstream": "static",
            "strip_prefix": True,
            "meter": "llm",
        },
        body=CHAT_REQUEST.replace(b'{"model"', b'{"stream":true,"model"'),
        expect="sse",
        target=0.85,
        baseline="pass_sse",
    ),
)

SCENARIOS += (
    Scenario(
        name="html_plain",
        path="/plainhtml/site/page.html",
        route={"name": "html_plain", "path": "/plainhtml", "upstream": "static",
               "strip_prefix": True},
        expect="html",
    ),
    Scenario(
        name="html_rewrite",
        path="/rw/site/page.html",
        route={"name": "html_rewrite", "path": "/rw", "upstream": "static",
               "strip_prefix": True, "rewrite": {"body": ["html"]}},
        expect="html_rewritten",
        target=0.6,
        baseline="html_plain",
    ),
    Scenario(  # the same page without an ETag: rewritten on every request, no cache
        name="html_rewrite_each",
        path="/rw/dyn/page.html",
        route={},  # html_rewrite's route
        expect="html_rewritten",
        baseline="html_plain",
    ),
)  # fmt: skip

#: Two tiers far above what the load reaches: the cost of checking, never a refusal.
LIMITS = ["10000000/hour", {"rate": "1000000/minute", "by": ["ip", "route"]}]

#: Provider keys put into the pool of the `pooled` scenario's upstream before the run.
POOL_KEYS = 3
BASELINE = "pass"


# --------------------------------------------------------------------------- upstream body


def completion_body() -> bytes:
    """A fixed ~500-byte JSON body shaped like an OpenAI chat completion."""
    content = (
        "Ferryman is a self-hosted access gateway for HTTP APIs. This fixed answer stands "
        "in for the reply of a model so that the benchmark measures the proxy, not the model."
    )
    body = {
        "id": "chatcmpl-bench0000000000000000000000000",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 24, "completion_tokens": 48, "total_tokens": 72},
        "system_fingerprint": "fp_bench",
    }
    return json.dumps(body, separators=(",", ":")).encode()


def stream_body() -> bytes:
    """An OpenAI-style event stream: eight content chunks, then the usage chunk."""
    base = {
        "id": "chatcmpl-bench0000000000000000000000000",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "gpt-4o-mini-2024-07-18",
    }
    delta = {"index": 0, "finish_reason": None}
    events: list[dict[str, Any]] = [
        {**base, "choices": [{**delta, "delta": {"content": f"word{n} "}}]} for n in range(8)
    ]
    usage = {"prompt_tokens": 24, "completion_tokens": 8, "total_tokens": 32}
    events.append({**base, "choices": [], "usage": usage})
    lines = [b"data: " + json.dumps(e, separators=(",", ":")).encode() + b"\n\n" for e in events]
    return b"".join(lines) + b"data: [DONE]\n\n"


def html_page(size: int = 50 * 1024) -> bytes:
    """A ~50 KB page of an app written for its host's root: links, images, scripts."""
    head = (
        '<!doctype html>\n<html><head><meta charset="utf-8"><title>Bench</title>\n'
        '<link rel="stylesheet" href="/static/app.css">\n'
        '<script type="module" src="/static/app.js"></script>\n</head><body>\n'
    )
    rows = []
    n = 0
    while len(head) + sum(map(len, rows)) < size:
        rows.append(
            f'<div class="row"><a href="/items/{n}">Item {n}</a> '
            f'<img src="/img/{n % 40}.png" alt="" width="16" height="16"> '
            f"<span>Some text of item {n}, as a list page would show it.</span></div>\n"
        )
        n += 1
    return (head + "".join(rows) + "</body></html>\n").encode()


BODY = completion_body()
SSE_BODY = stream_body()
PAGE = html_page()
BODIES = {"json": BODY, "sse": SSE_BODY, "html": PAGE}


def body_matches(expect: str, body: bytes) -> bool:
    if expect == "html_rewritten":  # the page, its links moved under the route's prefix
        return b'<a href="/rw/items/0">' in body and b'href="/items/' not in body
    return body == BODIES[expect]


# --------------------------------------------------------------------------- processes


class Processes:
    """Every process the benchmark starts, each in its own process group."""

    def __init__(self) -> None:
        self._started: list[subprocess.Popen[bytes]] = []

    def start(
        self,
        argv: Sequence[str],
        *,
        log: Path | None = None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        capture: bool = False,
    ) -> subprocess.Popen[bytes]:
        """Start `argv`; its stdout and stderr go to `log`, or to a pipe when `capture`."""
        with ExitStack() as stack:
            out: IO[bytes] | int = subprocess.DEVNULL
            if capture:
                out = subprocess.PIPE
            elif log is not None:
                out = stack.enter_context(log.open("wb"))
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )
        self._started.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
        """SIGTERM the process group, SIGKILL it if it is still there after `timeout`."""
        if proc.poll() is None:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait(5)
        if proc in self._started:
            self._started.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self._started)):
            self.stop(proc)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextmanager
def _uninterrupted() -> Iterator[None]:
    """A second Ctrl-C must not cut the clean-up short."""
    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# --------------------------------------------------------------------------- tools & helpers


def ensure_tools() -> None:
    """Install nginx and wrk from the distribution when they are missing."""
    if shutil.which("nginx") and shutil.which("wrk"):
        return
    print("nginx or wrk missing: apt-get install -y nginx wrk", flush=True)
    install = ["apt-get", "install", "-y", "nginx", "wrk"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(install, env=env, check=False).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, check=True)
        subprocess.run(install, env=env, check=True)
    if not (shutil.which("nginx") and shutil.which("wrk")):
        raise SystemExit("nginx and wrk are still not on PATH after installing them")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Pinning:
    """`taskset` prefixes: the proxy under test on one CPU, nginx and wrk on another."""

    proxy: tuple[str, ...]
    load: tuple[str, ...]
    note: str


def plan_pinning() -> Pinning:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2 or not shutil.which("taskset"):
        why = "taskset is missing" if len(cpus) >= 2 else f"only {len(cpus)} CPU"
        print(f"WARNING: {why}: not pinning; proxy, nginx and wrk share the CPU", flush=True)
        return Pinning((), (), f"none ({why})")
    proxy, load = cpus[0], cpus[1]
    return Pinning(
        ("taskset", "-c", str(proxy)),
        ("taskset", "-c", str(load)),
        f"proxy on CPU {proxy}, nginx + wrk on CPU {load} (of {len(cpus)})",
    )


#: Straight to 127.0.0.1, whatever http_proxy says.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def fetch(
    url: str, headers: dict[str, str] | None = None, body: bytes | None = None
) -> tuple[int, bytes]:
    headers = dict(headers or {})
    if body is not None:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=body, headers=headers)
    try:
        with _OPENER.open(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_until_up(
    name: str, url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60.0
) -> None:
    """Poll `url` until it answers 200; fail early when the process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode} during start-up\n{tail(log)}")
        try:
            if fetch(url)[0] == 200:
                return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{name} did not answer {url} within {timeout:.0f}s\n{tail(log)}")


def tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return f"(no log at {path})"
    return f"--- last lines of {path} ---\n" + "\n".join(text)


def tool_version(argv: Sequence[str]) -> str:
    out = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    text = (out.stdout + out.stderr).strip().splitlines()
    return text[0].strip() if text else "?"


def git_commit() -> str:
    """The commit benchmarked, read-only (`+dirty src` when src/ has local changes)."""
    if not shutil.which("git"):
        return "?"
    out = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=REPO_DIR,
        capture_output=True,
        text=True,
        check=False,
    )
    dirty = subprocess.run(
        ["git", "--no-optional-locks", "status", "--porcelain", "--", "src"],
        cwd=REPO_DIR,
        capture_output=True,
        text=True,
        check=False,
    )
    commit = out.stdout.strip() or "?"
    return commit + ("+dirty src" if dirty.stdout.strip() else "")


# --------------------------------------------------------------------------- memory


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the parenthesised command name: state, ppid, ...
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            found.append(int(entry.name))
    return found


def _vm_rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _tree(pid: int) -> Iterator[int]:
    """`pid` and all its descendants."""
    pending = [pid]
    while pending:
        current = pending.pop()
        yield current
        pending.extend(_children(current))


def rss_mb(pid: int) -> float:
    """Resident memory of `pid` and all its descendants, in MB (MiB)."""
    return sum(_vm_rss_kb(p) for p in _tree(pid)) / 1024


def rss_parts(pid: int) -> dict[str, float]:
    """Where one process's resident memory lies, in MB: the malloc heap (brk), other
    anonymous maps (Python's object arenas, threads' malloc arenas and stacks), and
    mapped files (shared libraries)."""
    parts = {"heap": 0.0, "anon": 0.0, "files": 0.0}
    where = "anon"
    try:
        lines = Path(f"/proc/{pid}/smaps").read_text().splitlines()
    except OSError:
        return parts
    for line in lines:
        fields = line.split()
        if fields and "-" in fields[0] and len(fields) >= 5:  # a mapping's header line
            path = fields[5] if len(fields) > 5 else ""
            where = "heap" if path == "[heap]" else "files" if path.startswith("/") else "anon"
        elif fields and fields[0] == "Rss:":
            parts[where] += int(fields[1]) / 1024
    return parts


# --------------------------------------------------------------------------- other load

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
NOISE_WARN_PCT = 10.0  # CPU lost to other processes or the hypervisor, % of one CPU


def _machine_seconds() -> tuple[float, float]:
    """CPU time of the whole machine: (user + nice + system, steal)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, steal = values[0], values[1], values[2], values[7]
    return (user + nice + system) / CLOCK_TICKS, steal / CLOCK_TICKS


def _process_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def _tree_seconds(pid: int) -> float:
    """CPU seconds of a process and its children (steal time is not CPU time)."""
    return sum(_process_seconds(p) for p in _tree(pid))


@dataclass(frozen=True)
class Noise:
    """CPU the benchmark did not get, in % of one CPU over a run."""

    other_pct: float
    """Used by processes outside the benchmark (a test suite, an editor...)."""
    steal_pct: float
    """Taken by the hypervisor for other guests (steal time)."""

    @property
    def total_pct(self) -> float:
        return self.other_pct + self.steal_pct


class CpuMeter:
    """Noise that skews the numbers: other processes' CPU, and steal time.

    Other processes' CPU is what the machine spent minus what the benchmark's own
    processes spent: the long-lived services (and their children), this script and
    the wrk runs it has reaped. Kernel network work charged to our processes makes
    this err low, never high.
    """

    def __init__(self, pids: Sequence[int]) -> None:
        self.pids = list(pids)

    def _ours(self) -> float:
        own = os.times()
        total = own.user + own.system + own.children_user + own.children_system
        return total + sum(_tree_seconds(pid) for pid in self.pids)

    def snapshot(self) -> tuple[float, float, float, float]:
        busy, steal = _machine_seconds()
        return time.monotonic(), busy, steal, self._ours()

    def noise(self, before: tuple[float, float, float, float]) -> Noise:
        """The noise since `before`."""
        wall, busy, steal, ours = (b - a for a, b in zip(before, self.snapshot(), strict=True))
        if wall <= 0:
            return Noise(0.0, 0.0)
        return Noise(max(0.0, busy - ours) / wall * 100, steal / wall * 100)


# --------------------------------------------------------------------------- services


@dataclass
class Workspace:
    root: Path

    def path(self, name: str) -> Path:
        return self.root / name


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


def ferryman_executable() -> str:
    beside = Path(sys.executable).parent / "ferryman"
    if beside.exists():
        return str(beside)
    found = shutil.which("ferryman")
    if not found:
        raise SystemExit("the `ferryman` command is not installed next to this Python")
    return found


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


# --------------------------------------------------------------------------- wrk


@dataclass(frozen=True)
class Target:
    name: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    pid: int = 0
    """The process serving this target, whose CPU time per request is reported."""
    body: bytes | None = None
    """POSTed as JSON with every request when set."""
    expect: str = "json"


@dataclass
class Result:
    target: str
    concurrency: int
    requests_per_sec: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx_3xx: int
    socket_errors: dict[str, int]
    noise: Noise = field(default_factory=lambda: Noise(0.0, 0.0))
    cpu_us: float = 0.0
    """CPU time (user + system, steal excluded) the serving process spent per request."""
    rounds: int = 1
    rps_range: tuple[float, float] | None = None
    """Lowest and highest req/s over the rounds, when there were several."""

    @property
    def errors(self) -> int:
        return self.non_2xx_3xx + sum(self.socket_errors.values())


def combine(runs: Sequence[Result]) -> list[Result]:
    """One row per target and concurrency: medians over the rounds, errors summed."""
    groups: dict[tuple[str, int], list[Result]] = {}
    for r in runs:
        groups.setdefault((r.target, r.concurrency), []).append(r)
    combined = []
    for (target, concurrency), group in groups.items():
        if len(group) == 1:
            combined.append(group[0])
            continue
        rates = [r.requests_per_sec for r in group]
        combined.append(
            Result(
                target=target,
                concurrency=concurrency,
                requests_per_sec=statistics.median(rates),
                p50_ms=statistics.median(r.p50_ms for r in group),
                p99_ms=statistics.median(r.p99_ms for r in group),
                cpu_us=statistics.median(r.cpu_us for r in group),
                requests=sum(r.requests for r in group),
                non_2xx_3xx=sum(r.non_2xx_3xx for r in group),
                socket_errors={
                    kind: sum(r.socket_errors[kind] for r in group)
                    for kind in group[0].socket_errors
                },
                noise=Noise(
                    max(r.noise.other_pct for r in group), max(r.noise.steal_pct for r in group)
                ),
                rounds=len(group),
                rps_range=(min(rates), max(rates)),
            )
        )
    return combined


_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_TIME = r"([\d.]+)(us|ms|s|m|h)"


def _latency_ms(output: str, percentile: int) -> float:
    match = re.search(rf"^\s*{percentile}(?:\.0+)?%\s+{_TIME}\s*$", output, re.M)
    if not match:
        raise ValueError(f"no {percentile}% latency in wrk output:\n{output}")
    return float(match[1]) * _UNIT_MS[match[2]]


def parse_wrk(output: str, target: str, concurrency: int) -> Result:
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    total = re.search(r"^\s*(\d+) requests in ", output, re.M)
    if not rate or not total:
        raise ValueError(f"cannot read wrk output:\n{output}")
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    kinds = ("connect", "read", "write", "timeout")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    return Result(
        target=target,
        concurrency=concurrency,
        requests_per_sec=float(rate[1]),
        p50_ms=_latency_ms(output, 50),
        p99_ms=_latency_ms(output, 99),
        requests=int(total[1]),
        non_2xx_3xx=int(non_2xx[1]) if non_2xx else 0,
        socket_errors={k: int(sockets[i + 1]) if sockets else 0 for i, k in enumerate(kinds)},
    )


def run_wrk(
    procs: Processes, pin: Pinning, target: Target, concurrency: int, seconds: int, latency: bool
) -> str:
    argv = [*pin.load, "wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s"]
    for name, value in target.headers.items():
        argv += ["-H", f"{name}: {value}"]
    if latency:
        argv.append("--latency")
    if target.body is not None:
        argv += ["-s", str(post_script(target))]
    argv.append(target.url)
    proc = procs.start(argv, capture=True)
    try:
        out, _ = proc.communicate(timeout=seconds + 60)
    finally:
        procs.stop(proc)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {' '.join(argv)}\n{out.decode()}")
    return out.decode()


def post_script(target: Target) -> Path:
    """A wrk script that POSTs the target's JSON body."""
    assert target.body is not None and b"]]" not in target.body
    path = Path(tempfile.gettempdir()) / f"ferryman-bench-{os.getpid()}-{target.expect}.lua"
    path.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = [[{target.body.decode()}]]\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
    )
    return path


def measure(
    run: Running, pin: Pinning, target: Target, concurrency: int, duration: int, warmup: int
) -> Result:
    print(f"{target.name:<16} c={concurrency:<3} ", end="", flush=True)
    if warmup > 0:
        run_wrk(run.procs, pin, target, concurrency, warmup, latency=False)
    before = run.meter.snapshot()
    cpu_before = _tree_seconds(target.pid)
    output = run_wrk(run.procs, pin, target, concurrency, duration, latency=True)
    cpu = _tree_seconds(target.pid) - cpu_before
    result = parse_wrk(output, target.name, concurrency)
    result.noise = noise = run.meter.noise(before)
    result.cpu_us = cpu / result.requests * 1e6 if result.requests else 0.0
    flag = f"  !! {result.errors} ERRORS" if result.errors else ""
    if noise.total_pct > NOISE_WARN_PCT:
        flag += f"  (noisy: other {noise.other_pct:.0f}%, steal {noise.steal_pct:.0f}% of a CPU)"
    print(f"{result.requests_per_sec:>10,.0f} req/s  p50 {result.p50_ms:.3f} ms{flag}", flush=True)
    return result


def check_target(target: Target) -> None:
    """One request before the load: the target must answer 200 with nginx's body."""
    status, body = fetch(target.url, target.headers, target.body)
    if status != 200 or not body_matches(target.expect, body):
        raise RuntimeError(
            f"{target.name}: {target.url} answered {status} with {body[:300]!r}; "
            "expected 200 and the upstream's body"
        )


# --------------------------------------------------------------------------- report


@dataclass(frozen=True)
class Ratio:
    label: str
    value: float | None
    shown: str
    target: str
    ok: bool | None


def _find(results: Sequence[Result], target: str, concurrency: int) -> Result | None:
    for result in results:
        if result.target == target and result.concurrency == concurrency:
            return result
    return None


def _ratio(results: Sequence[Result], num: str, den: str, conc: int, attr: str) -> float | None:
    a, b = _find(results, num, conc), _find(results, den, conc)
    if a is None or b is None or not getattr(b, attr):
        return None
    return float(getattr(a, attr)) / float(getattr(b, attr))


def compute_ratios(
    results: Sequence[Result],
    ferryman_rss: float,
    usage: dict[str, float] | None = None,
    idle_rss: float | None = None,
) -> list[Ratio]:
    base = f"ferryman:{BASELINE}"
    ratios = []
    if usage is not None:
        dropped = usage["dropped"]
        shown = f"{dropped:.0f} of {usage['written'] + dropped:.0f}"
        ratios.append(Ratio("usage records dropped", dropped, shown, "= 0", dropped == 0))
    tput = _ratio(results, base, "floor", HIGH, "requests_per_sec")
    ratios.append(
        Ratio(
            f"{base} throughput @{HIGH} / floor",
            tput,
            _fmt(tput),
            f">= {TARGET_THROUGHPUT_RATIO:.2f}",
            None if tput is None else tput >= TARGET_THROUGHPUT_RATIO,
        )
    )
    p50 = _ratio(results, base, "floor", LOW, "p50_ms")
    ratios.append(
        Ratio(
            f"{base} p50 @{LOW} / floor",
            p50,
            _fmt(p50),
            f"<= {TARGET_P50_RATIO:.2f}",
            None if p50 is None else p50 <= TARGET_P50_RATIO,
        )
    )
    if idle_rss is not None:
        ratios.append(
            Ratio(
                "ferryman RSS at start",
                idle_rss,
                f"{idle_rss:.0f} MB",
                f"< {TARGET_IDLE_RSS_MB:.0f} MB",
                idle_rss < TARGET_IDLE_RSS_MB,
            )
        )
    ratios.append(
        Ratio(
            "ferryman RSS after run",
            ferryman_rss,
            f"{ferryman_rss:.0f} MB",
            f"< {TARGET_RSS_MB:.0f} MB",
            ferryman_rss < TARGET_RSS_MB,
        )
    )
    measured = {r.target for r in results}
    for scenario in SCENARIOS:
        name = f"ferryman:{scenario.name}"
        if scenario.name == BASELINE or name not in measured:
            continue
        against = f"ferryman:{scenario.baseline}"
        value = _ratio(results, name, against, HIGH, "requests_per_sec")
        goal = "info" if scenario.target is None else f">= {scenario.target:.2f}"
        ok = None if scenario.target is None or value is None else value >= scenario.target
        ratios.append(Ratio(f"{name} throughput @{HIGH} / {against}", value, _fmt(value), goal, ok))
        cpu = _ratio(results, against, name, HIGH, "cpu_us")
        ratios.append(
            Ratio(f"{against} CPU / {name} CPU per request @{HIGH}", cpu, _fmt(cpu), "info", None)
        )
    for conc in (LOW, HIGH):
        # CPU per request excludes steal time, so it holds still on a busy VM host.
        cpu = _ratio(results, base, "floor", conc, "cpu_us")
        ratios.append(
            Ratio(f"{base} CPU per request @{conc} / floor", cpu, _fmt(cpu), "info", None)
        )
    floor_share = _ratio(results, "floor", "direct", HIGH, "requests_per_sec")
    ratios.append(
        Ratio(f"floor throughput @{HIGH} / direct", floor_share, _fmt(floor_share), "info", None)
    )
    return ratios


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def render(results: Sequence[Result], ratios: Sequence[Ratio], rss: dict[str, float]) -> str:
    order = ["direct", "floor", *(f"ferryman:{s.name}" for s in SCENARIOS)]
    rows = sorted(results, key=lambda r: (order.index(r.target), r.concurrency))
    width = max(len(name) for name in order) + 2
    rounds = max(r.rounds for r in results)
    spread = rounds > 1
    lines = [
        f"{'target':<{width}}{'conc':<6}{'req/s':>9}"
        + (f"{'(min-max)':>16}" if spread else "")
        + f"{'p50 ms':>10}{'p99 ms':>10}{'cpu us/req':>12}  {'errors':<9}noise: other/steal %"
    ]
    for r in rows:
        errors = f"{r.errors} INVALID" if r.errors else "0"
        noise = f"{r.noise.other_pct:>5.0f} /{r.noise.steal_pct:>3.0f}"
        noise += "  noisy" if r.noise.total_pct > NOISE_WARN_PCT else ""
        low, high = r.rps_range or (r.requests_per_sec, r.requests_per_sec)
        lines.append(
            f"{r.target:<{width}}{r.concurrency:<6}{r.requests_per_sec:>9.0f}"
            + (f"{f'({low:.0f}-{high:.0f})':>16}" if spread else "")
            + f"{r.p50_ms:>10.3f}{r.p99_ms:>10.3f}{r.cpu_us:>12.0f}  {errors:<9}{noise}"
        )
    if spread:
        lines.insert(0, f"medians of {rounds} rounds; noise: the worst round")
    lines += ["", "ratios (same run)"]
    label_width = max(len(r.label) for r in ratios) + 2
    for ratio in ratios:
        verdict = {True: "ok", False: "MISSED", None: ""}[ratio.ok]
        goal = "(info)" if ratio.target == "info" else f"(target {ratio.target})"
        lines.append(f"{ratio.label:<{label_width}}= {ratio.shown:<8} {goal} {verdict}".rstrip())
    lines += ["", "memory (VmRSS, process + children)"]
    lines += [f"{name:<{label_width}}= {mb:.0f} MB" for name, mb in rss.items()]
    return "\n".join(lines)


def error_report(results: Sequence[Result]) -> str:
    bad = [r for r in results if r.errors]
    if not bad:
        return ""
    lines = [
        "",
        "!" * 78,
        "!! INVALID BENCHMARK: some runs had errors; their numbers mean nothing.",
    ]
    for r in bad:
        sockets = ", ".join(f"{k} {v}" for k, v in r.socket_errors.items() if v) or "none"
        lines.append(
            f"!!   {r.target} c={r.concurrency}: non-2xx/3xx {r.non_2xx_3xx}, socket errors: "
            f"{sockets} (of {r.requests} requests)"
        )
    lines.append("!" * 78)
    return "\n".join(lines)


def noise_report(results: Sequence[Result]) -> str:
    noisy = [r for r in results if r.noise.total_pct > NOISE_WARN_PCT]
    if not noisy:
        return ""
    other = max(r.noise.other_pct for r in noisy)
    steal = max(r.noise.steal_pct for r in noisy)
    causes = []
    if other > NOISE_WARN_PCT / 2:
        causes.append(f"other processes used up to {other:.0f}% of a CPU: stop them")
    if steal > NOISE_WARN_PCT / 2:
        causes.append(f"the hypervisor stole up to {steal:.0f}%: a busy VM host")
    return (
        f"\nWARNING: {len(noisy)} of {len(results)} runs lost over {NOISE_WARN_PCT:.0f}% of a "
        f"CPU ({'; '.join(causes) or 'several small causes'}). Treat the numbers, and the "
        "ratios most, as rough; rerun on a quiet machine."
    )


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Ferryman overhead vs. a floor proxy.")
    parser.add_argument(
        "--duration", type=int, default=10, metavar="SECONDS", help="per measurement (10)"
    )
    parser.add_argument(
        "--warmup", type=int, default=2, metavar="SECONDS", help="before each measurement (2)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        metavar="N",
        help="repeat every measurement N times (interleaved) and report medians (1)",
    )
    parser.add_argument(
        "--json", type=Path, default=DEFAULT_JSON, metavar="PATH", help=f"(default {DEFAULT_JSON})"
    )
    parser.add_argument(
        "--database",
        metavar="URL",
        help="Ferryman's database (default: SQLite in the run's directory), e.g. an empty "
        "PostgreSQL schema: postgresql+asyncpg://user@host/db",
    )
    parser.add_argument(
        "--limiter",
        choices=("memory", "redis"),
        default="memory",
        help="backend of the `limited` scenario's rate limits; redis needs FERRYMAN_REDIS_URL"
        " (default redis://127.0.0.1:6379/0) (memory)",
    )
    parser.add_argument(
        "--only",
        metavar="NAMES",
        help="measure only these Ferryman scenarios (comma-separated, e.g. pass,unmetered; "
        "their baselines are added, direct and floor always run): quick A/B checks",
    )
    args = parser.parse_args(argv)
    if args.only:
        known = {s.name: s for s in SCENARIOS}
        wanted = {name.strip() for name in args.only.split(",") if name.strip()}
        unknown = sorted(wanted - set(known))
        if unknown:
            parser.error(
                f"--only: unknown scenario {', '.join(unknown)} (known: {', '.join(known)})"
            )
        wanted |= {known[name].baseline for name in wanted} | {BASELINE}
        args.only = wanted
    if args.duration < 1 or args.warmup < 0 or args.rounds < 1:
        parser.error(
            "--duration and --rounds must be >= 1, --warmup >= 0 (whole seconds, as wrk takes)"
        )
    return args


@dataclass
class Running:
    """The services, up: what to load and how to watch them."""

    procs: Processes
    targets: list[Target]
    floor_pid: int
    ferryman_pid: int
    meter: CpuMeter
    ferryman_url: str = ""


def usage_counts(url: str) -> dict[str, float]:
    """Ferryman's `ferryman_usage_records_total` by outcome, from its /metrics."""
    status, body = fetch(url + "/metrics")
    if status != 200:
        raise RuntimeError(f"/metrics answered {status}")
    counts = {"written": 0.0, "dropped": 0.0, "unpriced": 0.0}
    for match in re.finditer(
        r'^ferryman_usage_records_total\{outcome="(\w+)"\} (\S+)$', body.decode(), re.M
    ):
        counts[match[1]] = float(match[2])
    return counts


@contextmanager
def services(
    ws: Workspace, pin: Pinning, limiter: str = "memory", database: str | None = None
) -> Iterator[Running]:
    """nginx, the floor and Ferryman, up until the block ends (however it ends)."""
    procs = Processes()
    try:
        upstream, nginx = start_nginx(procs, ws, pin)
        floor, floor_url, _ = start_floor(procs, ws, pin, upstream)
        ferryman, ferryman_url, _, made = start_ferryman(
            procs, ws, pin, upstream, SCENARIOS, limiter, database
        )
        path = "/v1/chat/completions"
        targets = [
            Target("direct", upstream + path, pid=nginx.pid),
            Target("floor", floor_url + path, pid=floor.pid),
        ]
        targets += [
            Target(
                f"ferryman:{s.name}",
                ferryman_url + s.path,
                {name: value.format(**made) for name, value in s.headers.items()},
                pid=ferryman.pid,
                body=s.body,
                expect=s.expect,
            )
            for s in SCENARIOS
        ]
        meter = CpuMeter([nginx.pid, floor.pid, ferryman.pid])
        yield Running(procs, targets, floor.pid, ferryman.pid, meter, ferryman_url)
    finally:
        with _uninterrupted():
            procs.stop_all()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # Ctrl-C, kill and a closed terminal all unwind through the `finally` that cleans up.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_interrupt)
    ensure_tools()
    pin = plan_pinning()
    ws = Workspace(Path(tempfile.mkdtemp(prefix="ferryman-bench-")))
    print(f"workspace and logs: {ws.root}", flush=True)
    runs: list[Result] = []
    rss: dict[str, float] = {}
    try:
        with services(ws, pin, args.limiter, args.database) as run:
            if args.only:
                run.targets = [
                    t
                    for t in run.targets
                    if not t.name.startswith("ferryman:") or t.name.split(":", 1)[1] in args.only
                ]
            for target in run.targets:
                check_target(target)
            rss["ferryman RSS at start"] = rss_mb(run.ferryman_pid)
            parts_at_start = rss_parts(run.ferryman_pid)
            print(f"measuring: {args.duration}s each after {args.warmup}s warm-up; {pin.note}")
            # Interleaved, so drift on the machine touches every target alike.
            for round_no in range(1, args.rounds + 1):
                for concurrency in CONCURRENCIES:
                    for target in run.targets:
                        print(f"  [{round_no}/{args.rounds}] " if args.rounds > 1 else "  ", end="")
                        runs.append(
                            measure(run, pin, target, concurrency, args.duration, args.warmup)
                        )
            rss["ferryman RSS after run"] = rss_mb(run.ferryman_pid)
            rss["floor RSS after run"] = rss_mb(run.floor_pid)
            for moment, parts in (
                ("start", parts_at_start),
                ("after", rss_parts(run.ferryman_pid)),
            ):
                for part, mb in parts.items():
                    rss[f"  ferryman {part} ({moment})"] = mb
            time.sleep(1.5)  # one usage flush interval: what was queued is written
            usage = usage_counts(run.ferryman_url)
    except KeyboardInterrupt:
        print(f"\ninterrupted; every process stopped. logs: {ws.root}", file=sys.stderr)
        return 130
    except Exception:
        print(f"\nfailed; every process stopped. logs: {ws.root}", file=sys.stderr)
        raise
    results = combine(runs)
    ratios = compute_ratios(
        results, rss["ferryman RSS after run"], usage, rss["ferryman RSS at start"]
    )
    print()
    print(render(results, ratios, rss))
    errors = error_report(runs)
    for report in (errors, noise_report(runs)):
        if report:
            print(report)
    write_json(args.json, args, pin, ws, runs, results, ratios, rss)
    print(f"\nlogs: {ws.root} (ferryman.log, floor.log, nginx/error.log)")
    print(f"json: {args.json}")
    return 1 if errors else 0


def write_json(
    path: Path,
    args: argparse.Namespace,
    pin: Pinning,
    ws: Workspace,
    runs: Sequence[Result],
    results: Sequence[Result],
    ratios: Sequence[Ratio],
    rss: dict[str, float],
) -> None:
    document = {
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "rounds": args.rounds,
        "pinning": pin.note,
        "host": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "tools": {"nginx": tool_version(["nginx", "-v"]), "wrk": tool_version(["wrk", "-v"])},
        "body_bytes": len(BODY),
        "logs": str(ws.root),
        "results": [_as_json(r) for r in results],
        "runs": [_as_json(r) for r in runs],
        "ratios": [
            {"label": r.label, "value": r.value, "target": r.target, "ok": r.ok} for r in ratios
        ],
        "rss_mb": rss,
        "valid": not any(r.errors for r in results),
        "noisy": any(r.noise.total_pct > NOISE_WARN_PCT for r in results),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")


def _as_json(result: Result) -> dict[str, Any]:
    return {**asdict(result), "errors": result.errors, "noise_pct": result.noise.total_pct}


if __name__ == "__main__":
    sys.exit(main())
