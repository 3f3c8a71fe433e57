#!/usr/bin/env python3
"""WebSocket relay: Ferryman against the same upstream directly, in one run.

    .venv/bin/python bench/websocket.py [--connections 100] [--duration 10] [--idle 2000]

- An aiohttp echo upstream (its own process) and a load generator (its own process)
  share one CPU; `ferryman serve`, with one open route relaying `/ws`, has the other
  (as `run.py` pins nginx, wrk and the proxy).
- Throughput: N connections each send a 1 KiB message and wait for its echo, again
  and again, for D seconds; against the upstream directly, then through the gateway.
  Ratio: throughput through / direct (target >= 0.5).
- Latency: the same N connections paced to one fixed rate (half of what the gateway
  sustained), against both. At saturation a closed loop's latency is only queue
  length over throughput (Little's law), so the latency the relay *adds* is measured
  at one load both sides carry: added p99 (target <= 2 ms). The saturated p99s are
  printed too.
- Idle connections: `--idle` connections opened through the gateway and held; the
  gateway's RSS growth per connection (goal <= 30 KiB).

The load generator is Python (aiohttp on uvloop): at its limit it caps both runs
alike, which flatters the ratio; its CPU share is reported so that shows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

import harness as base  # bench/harness.py: processes, pinning, RSS

MESSAGE = 1024
TARGET_THROUGHPUT = 0.5
TARGET_ADDED_P99_MS = 2.0
TARGET_IDLE_KIB = 30.0


# --------------------------------------------------------------------------- roles


def upstream(port: int) -> None:
    """The echo server: every message straight back."""
    import uvloop
    from aiohttp import WSMsgType, web

    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=4 * 1024 * 1024)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type is WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
            elif msg.type is WSMsgType.TEXT:
                await ws.send_str(msg.data)
        return ws

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/ws", echo)
    app.router.add_get("/health", health)
    loop = uvloop.new_event_loop()
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, loop=loop)


async def client(
    url: str, connections: int, duration: float, idle: int, rate: float
) -> dict[str, Any]:
    """Ping-pong load, as fast as it goes or paced to `rate` messages a second in all
    (or, with `idle`, that many connections opened and held until stdin closes); the
    figures as JSON."""
    import aiohttp

    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    if idle:
        sockets = [await session.ws_connect(url, heartbeat=None) for _ in range(idle)]
        print(json.dumps({"open": len(sockets)}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        for ws in sockets:
            await ws.close()
        await session.close()
        return {}
    payload = os.urandom(MESSAGE)
    latencies: list[float] = []
    stop = time.monotonic() + duration

    period = connections / rate if rate else 0.0

    async def one(index: int) -> None:
        async with session.ws_connect(url, heartbeat=None) as ws:
            # Paced connections start spread over one period, so sends do not bunch.
            due = time.perf_counter() + period * index / connections
            while time.monotonic() < stop:
                if period:
                    await asyncio.sleep(max(0.0, due - time.perf_counter()))
                    due += period
                sent = time.perf_counter()
                await ws.send_bytes(payload)
                reply = await ws.receive_bytes()
                latencies.append(time.perf_counter() - sent)
                assert len(reply) == MESSAGE

    started = time.monotonic()
    cpu = time.process_time()
    await asyncio.gather(*(one(i) for i in range(connections)))
    elapsed = time.monotonic() - started
    cpu = time.process_time() - cpu
    await session.close()
    latencies.sort()
    return {
        "messages": len(latencies),
        "per_sec": len(latencies) / elapsed,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
        "client_cpu_pct": 100 * cpu / elapsed,
    }


# --------------------------------------------------------------------------- runner


def raise_fd_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def load(
    pin: base.Pinning, url: str, args: argparse.Namespace, rate: float = 0.0
) -> dict[str, Any]:
    argv = [*pin.load, sys.executable, __file__, "--client", url, "--rate", str(rate)]
    argv += ["--connections", str(args.connections), "--duration", str(args.duration)]
    out = subprocess.run(argv, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def gateway_file(ws: base.Workspace, upstream_url: str) -> Path:
    path = ws.path("gateway.yaml")
    spec = {
        "upstreams": {"echo": {"url": upstream_url}},
        "routes": [{"name": "ws", "path": "/", "upstream": "echo", "meter": "none"}],
    }
    path.write_text(yaml.safe_dump(spec))
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--idle", type=int, default=2000)
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--upstream", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--hold", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    raise_fd_limit()
    if args.upstream:
        upstream(args.upstream)
        return 0
    if args.client:
        import uvloop

        result = uvloop.run(
            client(args.client, args.connections, args.duration, args.hold, args.rate)
        )
        if result:
            print(json.dumps(result), flush=True)
        return 0

    pin = base.plan_pinning()
    ws = base.Workspace(Path(tempfile.mkdtemp(prefix="ferryman-ws-bench-")))
    procs = base.Processes()
    try:
        port = base.free_port()
        up_log = ws.path("upstream.log")
        up = procs.start([*pin.load, sys.executable, __file__, "--upstream", str(port)], log=up_log)
        up_url = f"http://127.0.0.1:{port}"
        base.wait_until_up("upstream", up_url + "/health", up, up_log)
        gw_port = base.free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("FERRYMAN_")}
        env |= {"FERRYMAN_DATA_DIR": str(ws.path("data")), "FERRYMAN_LOG_LEVEL": "warning"}
        # Every connection comes from 127.0.0.1: lift the per-address cap (256) above them.
        env["FERRYMAN_MAX_CONNECTIONS_PER_IP"] = str(args.idle + args.connections + 100)
        argv = [*pin.proxy, base.ferryman_executable(), "serve", "--config"]
        argv += [str(gateway_file(ws, up_url)), "--host", "127.0.0.1", "--port", str(gw_port)]
        gw_log = ws.path("ferryman.log")
        gw = procs.start(argv, log=gw_log, env=env, cwd=ws.root)
        gw_url = f"http://127.0.0.1:{gw_port}"
        base.wait_until_up("ferryman", gw_url + "/health/live", gw, gw_log)
        print(f"measuring: {args.connections} connections, {args.duration:.0f}s each; {pin.note}")
        direct = load(pin, f"ws://127.0.0.1:{port}/ws", args)
        relayed = load(pin, f"ws://127.0.0.1:{gw_port}/ws", args)
        rate = relayed["per_sec"] / 2
        paced = (
            load(pin, f"ws://127.0.0.1:{port}/ws", args, rate),
            load(pin, f"ws://127.0.0.1:{gw_port}/ws", args, rate),
        )
        idle = hold_idle(pin, gw.pid, f"ws://127.0.0.1:{gw_port}/ws", args.idle)
        report(direct, relayed, paced, idle, args)
    finally:
        procs.stop_all()
    print(f"logs: {ws.root}")
    return 0


def hold_idle(pin: base.Pinning, pid: int, url: str, count: int) -> dict[str, float]:
    """Open `count` connections through the gateway and hold them: its RSS growth."""
    before = base.rss_mb(pid)
    argv = [*pin.load, sys.executable, __file__, "--client", url, "--hold", str(count)]
    holder = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdin is not None
    opened = json.loads(holder.stdout.readline())["open"]
    time.sleep(2.0)
    samples = [base.rss_mb(pid) for _ in range(5) if time.sleep(0.2) is None]
    after = statistics.median(samples)
    holder.stdin.close()
    holder.wait(30)
    return {"open": opened, "before_mb": before, "after_mb": after}


def report(
    direct: dict[str, Any],
    relayed: dict[str, Any],
    paced: tuple[dict[str, Any], dict[str, Any]],
    idle: dict[str, float],
    args: Any,
) -> None:
    rows = (
        ("direct", direct),
        ("ferryman", relayed),
        ("direct, paced", paced[0]),
        ("ferryman, paced", paced[1]),
    )
    print(f"\n{'target':<18}{'msg/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'client cpu %':>14}")
    for name, r in rows:
        print(
            f"{name:<18}{r['per_sec']:>10,.0f}{r['p50_ms']:>10.3f}{r['p99_ms']:>10.3f}"
            f"{r['client_cpu_pct']:>14.0f}"
        )
    ratio = relayed["per_sec"] / direct["per_sec"]
    added = paced[1]["p99_ms"] - paced[0]["p99_ms"]
    per_conn = (idle["after_mb"] - idle["before_mb"]) * 1024 / max(idle["open"], 1)

    def line(label: str, value: str, target: str, ok: bool) -> None:
        print(f"{label:<52}= {value:<10} (target {target}) {'ok' if ok else 'MISSED'}")

    print(f"\nratios (same run; {MESSAGE}-byte messages, {args.connections} connections)")
    line("ferryman / direct throughput", f"{ratio:.2f}", f">= {TARGET_THROUGHPUT}", ratio >= 0.5)
    line(
        f"added p99 at {paced[1]['per_sec']:,.0f} msg/s",
        f"{added:.2f} ms",
        f"<= {TARGET_ADDED_P99_MS} ms",
        added <= 2.0,
    )
    line(
        f"RSS per idle connection ({idle['open']:.0f} held)",
        f"{per_conn:.1f} KiB",
        f"<= {TARGET_IDLE_KIB:.0f} KiB",
        per_conn <= TARGET_IDLE_KIB,
    )
    print(f"ferryman RSS: {idle['before_mb']:.0f} MB before, {idle['after_mb']:.0f} MB held")


if __name__ == "__main__":
    raise SystemExit(main())
