"""Processes, CPU pinning, waiting, memory and CPU time: what every bench script
needs to start, watch and stop what it measures."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from scenarios import REPO_DIR

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


def ferryman_executable() -> str:
    beside = Path(sys.executable).parent / "ferryman"
    if beside.exists():
        return str(beside)
    found = shutil.which("ferryman")
    if not found:
        raise SystemExit("the `ferryman` command is not installed next to this Python")
    return found


@dataclass
class Workspace:
    root: Path

    def path(self, name: str) -> Path:
        return self.root / name
