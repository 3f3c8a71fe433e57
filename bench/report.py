"""The run's table, ratios, error and noise reports, and its JSON record."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness import NOISE_WARN_PCT, Pinning, Workspace, git_commit, tool_version
from scenarios import (
    BASELINE,
    BODY,
    HIGH,
    LOW,
    SCENARIOS,
    TARGET_IDLE_RSS_MB,
    TARGET_P50_RATIO,
    TARGET_RSS_MB,
    TARGET_THROUGHPUT_RATIO,
)
from wrk import Result

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
