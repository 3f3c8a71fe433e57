"""Ferryman's proxy overhead against a floor proxy, measured in one run.

    .venv/bin/python bench/run.py [--duration 10] [--warmup 2] [--json PATH]

Starts a static nginx upstream, the floor proxy (bench/floor.py) and Ferryman, drives
each with wrk at a few concurrencies and prints one table plus the ratios that matter.
Every process it starts is stopped again, also on Ctrl-C and errors.
"""

from __future__ import annotations

import argparse
import re
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from harness import (
    CpuMeter,
    Pinning,
    Processes,
    Workspace,
    _raise_interrupt,
    _uninterrupted,
    ensure_tools,
    fetch,
    plan_pinning,
    rss_mb,
    rss_parts,
)
from report import compute_ratios, error_report, noise_report, render, write_json
from scenarios import BASELINE, CONCURRENCIES, DEFAULT_JSON, SCENARIOS
from servers import start_ferryman, start_floor, start_nginx
from wrk import Result, Running, Target, check_target, combine, measure

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


if __name__ == "__main__":
    sys.exit(main())
