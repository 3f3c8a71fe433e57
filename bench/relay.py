#!/usr/bin/env python3
"""Chat widget relay: Ferryman against the same fake workflow directly, in one run.

    .venv/bin/python bench/relay.py [--connections 10] [--duration 10]

- A fake n8n workflow (aiohttp on uvloop, its own process) answers `POST /webhook/chat`
  with a streamed NDJSON answer as n8n does: `begin`, four `item` lines, `end`, each
  written at once. It and the load generator share one CPU; `ferryman serve`, with one
  relay in front of the workflow (limits lifted, history on), has the other (as
  `run.py` pins nginx, wrk and the proxy).
- Each of N connections makes its widget session first (`POST /api/v1/session/create`)
  and sends one warm-up message; then the clock starts and each sends messages back
  to back for D seconds: against the workflow directly (n8n's own body), then through
  the relay (`POST /api/v1/chat/stream`, read as SSE).
- Latency to the first piece: from sending the POST to having read the first `item`
  line (directly) or the first `chunk` event's data (through the relay; its `begin`
  event comes earlier and does not count). A closed loop saturates the gateway at a
  few connections (its latency is then queue length over throughput, Little's law),
  so latency is measured with the N connections paced to one rate both sides carry,
  half of what the relay sustained: added p95, relay minus direct, target <= 10 ms.
- Messages per second: answers read to their `end` (directly) or `done` event (through
  the relay), with the gateway on one CPU; plain numbers, no target.

The load generator is Python (aiohttp on uvloop): at its limit it caps both runs
alike; its CPU share, and the workflow's beside it, are reported so that shows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

import harness as base  # bench/harness.py: processes, pinning, CPU time

WEBHOOK = "/webhook/chat"
SHOP = "https://shop.example"
PIECES = 4
SECRET = "bench-relay-session-secret-" + "s" * 24
TARGET_ADDED_P95_MS = 10.0
DIRECT_BODY = b'{"action":"sendMessage","sessionId":"x","chatInput":"hello"}'
RELAY_BODY = b'{"message":"hello"}'
JSON = {"Content-Type": "application/json"}


# --------------------------------------------------------------------------- roles


def upstream(port: int) -> None:
    """The workflow: every message answered with n8n's streamed NDJSON chunks."""
    import uvloop
    from aiohttp import web

    lines = [b'{"type":"begin"}\n']
    lines += [b'{"type":"item","content":"piece"}\n'] * PIECES
    lines += [b'{"type":"end"}\n']

    async def chat(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers=JSON)
        await resp.prepare(request)
        for line in lines:
            await resp.write(line)
        await resp.write_eof()
        return resp

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post(WEBHOOK, chat)
    app.router.add_get("/health", health)
    loop = uvloop.new_event_loop()
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, loop=loop)


async def client(
    url: str, connections: int, duration: float, watch: list[int], rate: float
) -> dict[str, Any]:
    """Messages on each connection for `duration` seconds, back to back or paced to `rate`
    a second in all, to the workflow (`url` ends in its webhook) or through the relay
    (`url` is its prefix); the figures as JSON, with the CPU share of the `watch`
    processes over the same window."""
    import aiohttp

    direct = url.endswith(WEBHOOK)
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), cookie_jar=aiohttp.DummyCookieJar()
    )
    latencies: list[float] = []
    counts = {"complete": 0, "errors": 0}
    failures: list[str] = []

    async def widget() -> dict[str, str]:
        if direct:
            return JSON
        body = {"origin_domain": "shop.example", "page_url": SHOP + "/"}
        async with session.post(url + "/session/create", json=body, headers={"Origin": SHOP}) as r:
            if r.status != 200:
                raise RuntimeError(f"session/create answered {r.status}: {await r.text()}")
            token = r.headers["Set-Cookie"].split(";")[0].split("=", 1)[1]
        return {**JSON, "Origin": SHOP, "Cookie": f"chat_session_id={token}"}

    async def message(headers: dict[str, str]) -> None:
        sent = time.perf_counter()
        first = 0.0
        done = False
        event, error = b"", ""
        target, body = (url, DIRECT_BODY) if direct else (url + "/chat/stream", RELAY_BODY)
        async with session.post(target, data=body, headers=headers) as resp:
            if resp.status != 200:
                error = f"answered {resp.status}: {(await resp.text())[:200]}"
            else:
                async for line in resp.content:
                    if direct:
                        if not first and line.startswith(b'{"type":"item"'):
                            first = time.perf_counter()
                        done = done or line.startswith(b'{"type":"end"')
                    elif line.startswith(b"event: "):
                        event = line[7:].strip()
                    elif line.startswith(b"data: "):
                        if not first and event == b"chunk":
                            first = time.perf_counter()
                        if event == b"error":
                            error = "error event: " + line[6:].decode(errors="replace").strip()
                        done = done or event == b"done"
        if first and done:
            latencies.append(first - sent)
            counts["complete"] += 1
            return
        counts["errors"] += 1
        failures.append(error or f"the answer ended without {'end' if direct else 'done'}")

    headers = await asyncio.gather(*(widget() for _ in range(connections)))
    await asyncio.gather(*(message(h) for h in headers))  # warm-up: connections open
    latencies.clear()
    counts.update(complete=0, errors=0)
    stop = time.monotonic() + duration

    period = connections / rate if rate else 0.0

    async def one(index: int, headers: dict[str, str]) -> None:
        due = time.perf_counter() + period * index / connections  # spread, not bunched
        while time.monotonic() < stop:
            if period:
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                due += period
            await message(headers)

    watched = [base._tree_seconds(pid) for pid in watch]
    started = time.monotonic()
    cpu = time.process_time()
    await asyncio.gather(*(one(i, h) for i, h in enumerate(headers)))
    elapsed = time.monotonic() - started
    cpu = time.process_time() - cpu
    watched = [base._tree_seconds(pid) - was for pid, was in zip(watch, watched, strict=True)]
    await session.close()
    latencies.sort()
    nan = float("nan")
    return {
        **counts,
        "failures": failures[:5],
        "per_sec": counts["complete"] / elapsed,
        "p50_ms": latencies[len(latencies) // 2] * 1000 if latencies else nan,
        "p95_ms": latencies[int(len(latencies) * 0.95)] * 1000 if latencies else nan,
        "client_cpu_pct": 100 * cpu / elapsed,
        "watched_cpu_pct": [100 * s / elapsed for s in watched],
    }


# --------------------------------------------------------------------------- runner


def raise_fd_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def load(
    pin: base.Pinning, url: str, watch: list[int], args: argparse.Namespace, rate: float = 0.0
) -> dict[str, Any]:
    argv = [*pin.load, sys.executable, __file__, "--client", url, "--rate", str(rate)]
    argv += ["--connections", str(args.connections), "--duration", str(args.duration)]
    argv += ["--watch", ",".join(map(str, watch))]
    out = subprocess.run(argv, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"the load generator failed on {url}:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def gateway_file(ws: base.Workspace, webhook: str) -> Path:
    path = ws.path("gateway.yaml")
    lifted = "1000000/minute"
    relay = {
        "upstream": "n8n",
        "allow_origins": [SHOP],
        "workflow": {"token": {"secret_env": "SESSION_SECRET_KEY"}, "heartbeat": 15},
        "limits": {"session": [lifted], "ip": [lifted], "sessions_per_ip": "1000000/hour"},
        "history": {"enabled": True},
    }
    spec = {"upstreams": {"n8n": {"url": webhook}}, "routes": [], "relays": [relay]}
    path.write_text(yaml.safe_dump(spec))
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--upstream", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--watch", default="", help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    raise_fd_limit()
    if args.upstream:
        upstream(args.upstream)
        return 0
    if args.client:
        import uvloop

        watch = [int(pid) for pid in args.watch.split(",") if pid]
        run = client(args.client, args.connections, args.duration, watch, args.rate)
        result = uvloop.run(run)
        print(json.dumps(result), flush=True)
        return 0

    pin = base.plan_pinning()
    ws = base.Workspace(Path(tempfile.mkdtemp(prefix="ferryman-relay-bench-")))
    procs = base.Processes()
    try:
        port = base.free_port()
        up_log = ws.path("upstream.log")
        up = procs.start([*pin.load, sys.executable, __file__, "--upstream", str(port)], log=up_log)
        up_url = f"http://127.0.0.1:{port}"
        base.wait_until_up("workflow", up_url + "/health", up, up_log)
        gw_port = base.free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("FERRYMAN_")}
        env |= {"FERRYMAN_DATA_DIR": str(ws.path("data")), "FERRYMAN_LOG_LEVEL": "warning"}
        env |= {"SESSION_SECRET_KEY": SECRET}
        env["FERRYMAN_MAX_CONNECTIONS_PER_IP"] = str(args.connections + 100)
        argv = [*pin.proxy, base.ferryman_executable(), "serve", "--config"]
        argv += [str(gateway_file(ws, up_url + WEBHOOK)), "--host", "127.0.0.1"]
        argv += ["--port", str(gw_port)]
        gw_log = ws.path("ferryman.log")
        gw = procs.start(argv, log=gw_log, env=env, cwd=ws.root)
        gw_url = f"http://127.0.0.1:{gw_port}"
        base.wait_until_up("ferryman", gw_url + "/health/live", gw, gw_log)
        print(f"measuring: {args.connections} connections, {args.duration:.0f}s each; {pin.note}")
        watch = [up.pid, gw.pid]
        direct = load(pin, up_url + WEBHOOK, watch, args)
        relayed = load(pin, gw_url + "/api/v1", watch, args)
        rate = relayed["per_sec"] / 2
        paced = (
            load(pin, up_url + WEBHOOK, watch, args, rate),
            load(pin, gw_url + "/api/v1", watch, args, rate),
        )
        report(direct, relayed, paced, args, base.rss_mb(gw.pid))
    finally:
        procs.stop_all()
    print(f"logs: {ws.root}")
    return 0


def report(
    direct: dict[str, Any],
    relayed: dict[str, Any],
    paced: tuple[dict[str, Any], dict[str, Any]],
    args: argparse.Namespace,
    rss: float,
) -> None:
    rows = (("direct", direct), ("ferryman", relayed), ("direct, paced", paced[0]))
    rows += (("ferryman, paced", paced[1]),)
    print(
        f"\n{'target':<16}{'msg/s':>9}{'first piece p50 ms':>20}{'p95 ms':>9}{'errors':>8}"
        f"{'  cpu %: client':>16}{'workflow':>10}{'gateway':>9}"
    )
    for name, r in rows:
        workflow, gateway = r["watched_cpu_pct"]
        print(
            f"{name:<16}{r['per_sec']:>9,.0f}{r['p50_ms']:>20.3f}{r['p95_ms']:>9.3f}"
            f"{r['errors']:>8}{r['client_cpu_pct']:>16.0f}{workflow:>10.0f}{gateway:>9.0f}"
        )
    for name, r in rows:
        for failure in r["failures"]:
            print(f"  {name} failed: {failure}")
    added = paced[1]["p95_ms"] - paced[0]["p95_ms"]
    ok = added <= TARGET_ADDED_P95_MS

    def line(label: str, value: str, verdict: str) -> None:
        print(f"{label:<52}= {value:<10} {verdict}".rstrip())

    print(f"\nratios (same run; {PIECES} pieces an answer, {args.connections} connections)")
    line(
        f"added p95 to the first piece at {paced[1]['per_sec']:,.0f}/s",
        f"{added:.2f} ms",
        f"(target <= {TARGET_ADDED_P95_MS:.0f} ms) {'ok' if ok else 'MISSED'}",
    )
    line("complete messages/s through ferryman (1 CPU)", f"{relayed['per_sec']:,.0f}", "")
    line("complete messages/s directly", f"{direct['per_sec']:,.0f}", "")
    print(f"ferryman RSS after the run: {rss:.0f} MB")
    if any(r["errors"] for _, r in rows):
        print("\nINVALID: some messages failed (above); their figures mean little.")


if __name__ == "__main__":
    raise SystemExit(main())
