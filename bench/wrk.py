"""Driving a target with wrk and reading its answer."""

from __future__ import annotations

import os
import re
import statistics
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness import NOISE_WARN_PCT, CpuMeter, Noise, Pinning, Processes, _tree_seconds, fetch
from scenarios import body_matches

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


@dataclass
class Running:
    """The services, up: what to load and how to watch them."""

    procs: Processes
    targets: list[Target]
    floor_pid: int
    ferryman_pid: int
    meter: CpuMeter
    ferryman_url: str = ""
