#!/usr/bin/env python3
"""The web console's two heaviest pages on SQLite, with a big deployment's database.

    .venv/bin/python bench/console.py [--keys 100000] [--records 10000000] [--keep DIR]

- `ferryman serve` makes and migrates a fresh data dir (and the admin), then stops.
- The SQLite file is seeded directly: ~1,000 users and `--keys` client keys (a fifth,
  at most 20,000, the admin's; names `<service>-<number>`), `--records` usage records
  over the last 30 days (one key in ten has traffic, skewed: a few keys carry most), and
  `usage_daily` / `usage_daily_totals` summed from those records with SQL GROUP BY.
  `--keep DIR` keeps the seeded data dir there and reuses it when the counts match.
- `ferryman serve` again (on one CPU, as run.py pins the proxy); the admin logs in through
  the console form; each page is asked 3 times to warm up, then N times one by one. Every
  answer must be 200 and show the figures the database holds.
- Target (the issue's): p95 < 150 ms for every page. Reported ok/MISSED, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import json
import os
import random
import re
import shutil
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import harness as base  # bench/harness.py: processes, pinning, RSS

PASSWORD = "console-bench-admin-password-2026"
TARGET_MS = 150.0
WARMUP = 3
USERS = 1000
ADMIN_KEYS = 20_000
MODELS = ("openai/gpt-4o-mini", "openai/gpt-4o", "anthropic/claude-3.5-sonnet",
          "meta-llama/llama-3.1-70b", "google/gemma-2-9b", "mistralai/mistral-large")  # fmt: skip
POOL = ("pool-key-1", "pool-key-2", "pool-key-3")  # no such rows: shown by their ids
SERVICES = ("checkout", "support-bot", "pipeline", "laptop", "staging", "mobile", "crm", "search")
ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"
MARKER = "console-bench.json"
DAYS = 30
Check = Callable[[str], bool]


def stamp(at: float) -> str:
    """What SQLAlchemy's DateTime (UTCDateTime) stores in SQLite: naive UTC, microseconds."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def needle(keys: int) -> str:
    """Five digits of the key names `…-NNNNNN` near the middle: about ten keys match."""
    return f"{keys // 2 // 10 * 10:06d}"[:5]


def usage(n: int, active: list[tuple[str, str, int]], now: float) -> Iterator[tuple[Any, ...]]:
    """`n` records, in time order from the start of the day 29 days ago until now."""
    rng = random.Random(11)
    rand, count = rng.random, len(active)
    first = datetime.now(UTC).date() - timedelta(days=DAYS - 1)
    days = [(first + timedelta(days=d)).isoformat() + " " for d in range(DAYS + 1)]
    clock = [f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}." for s in range(86_400)]
    t0 = datetime.combine(first, datetime.min.time(), UTC).timestamp()
    step = (now - t0) / max(n, 1)
    for i in range(n):
        offset = i * step
        sec = int(offset)
        key_id, user_id, m = active[int(count * rand() ** 2)]
        r, t = rand(), rand()
        prompt, completion = 50 + int(t * 1500), 20 + int(t * 99_991) % 400
        status = 500 if r > 0.99 else 429 if r > 0.98 else 200
        duration = 300 + 2000 * t
        yield (
            f"{i:032x}", f"{days[sec // 86_400]}{clock[sec % 86_400]}{int(offset % 1 * 1e6):06d}",
            "openrouter", user_id, key_id, "openrouter", POOL[int(r * 999) % 3],
            MODELS[(m + (r < 0.2)) % len(MODELS)], status, duration, duration / 3,
            duration - 2, 400 + prompt * 4, 300 + completion * 4, prompt, completion,
            prompt + completion, (prompt * 0.15 + completion * 0.6) / 1e6, f"bench-{i:026x}",
        )  # fmt: skip


DAILY = """INSERT INTO usage_daily SELECT substr(at, 1, 10), coalesce(user_id, ''),
 coalesce(credential_id, ''), coalesce(upstream_key_id, ''), coalesce(model, ''), count(*),
 sum(status >= 400), coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0), coalesce(
 sum(cost), 0.0), coalesce(sum(cost IS NULL AND (prompt_tokens > 0 OR completion_tokens > 0)), 0)
 FROM usage_records GROUP BY 1, 2, 3, 4, 5"""
TOTALS = """INSERT INTO usage_daily_totals SELECT day, upstream_key_id, model, sum(requests),
 sum(errors), sum(prompt_tokens), sum(completion_tokens), sum(cost), sum(cost_unknown)
 FROM usage_daily GROUP BY day, upstream_key_id, model"""
RECORD_COLUMNS = ("id, at, route, user_id, credential_id, upstream, upstream_key_id, model, "
                  "status, duration_ms, ttfb_ms, upstream_ms, bytes_in, bytes_out, prompt_tokens, "
                  "completion_tokens, total_tokens, cost, correlation_id")  # fmt: skip
KEY_COLUMNS = ("id, user_id, name, key_hash, prefix, last4, scopes, is_active, expires_at, "
               "revoked_at, created_at, last_used_at")  # fmt: skip


def seed(db: Path, keys: int, records: int) -> None:
    rng = random.Random(7)
    now = time.time()
    conn = sqlite3.connect(db, isolation_level=None)
    for pragma in ("journal_mode=OFF", "synchronous=OFF", "cache_size=-1000000", "temp_store=2"):
        conn.execute(f"PRAGMA {pragma}")
    conn.execute("BEGIN")
    cur = conn.execute("SELECT * FROM users WHERE username = 'admin'")
    columns = [d[0] for d in cur.description]
    admin = dict(zip(columns, cur.fetchone(), strict=True))
    people = [admin]
    for n in range(1, USERS):
        made = stamp(now - rng.uniform(30, 400) * 86_400)
        people.append(admin | {"id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                               "username": f"user{n:04d}", "email": f"user{n:04d}@example.com",
                               "role": "user", "created_at": made, "updated_at": made})  # fmt: skip
    marks = ", ".join("?" * len(columns))
    conn.executemany(f"INSERT INTO users ({', '.join(columns)}) VALUES ({marks})",
                     [tuple(p[c] for c in columns) for p in people[1:]])  # fmt: skip
    rows, active = [], []
    mine = min(ADMIN_KEYS, keys // 5)
    for i in range(keys):
        owner = admin["id"] if i < mine else people[1 + i % (USERS - 1)]["id"]
        key_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        created = now - rng.uniform(0, 365 * 86_400)
        used = None if rng.random() < 0.5 else stamp(rng.uniform(created, now))
        if i % 10 == 0:
            active.append((key_id, owner, i // 10))
            used = stamp(now - rng.uniform(0, 3600))
        rows.append((key_id, owner, f"{SERVICES[i % len(SERVICES)]}-{i:06d}",
                     hashlib.sha256(f"console-bench-{i}".encode()).hexdigest(),
                     "fm_" + "".join(rng.choices(ALNUM, k=4)), "".join(rng.choices(ALNUM, k=4)),
                     json.dumps(["proxy"]), 1, None, None, stamp(created), used))  # fmt: skip
    conn.executemany(f"INSERT INTO api_keys ({KEY_COLUMNS}) VALUES ({', '.join('?' * 12)})", rows)
    rng.shuffle(active)  # the busiest keys are anyone's, not the admin's
    stream, done, started = usage(records, active, now), 0, time.monotonic()
    sql = f"INSERT INTO usage_records ({RECORD_COLUMNS}) VALUES ({', '.join('?' * 19)})"
    while done < records:
        batch = min(1_000_000, records - done)
        conn.executemany(sql, itertools.islice(stream, batch))
        done += batch
        print(f"  {done:>12,} records  {time.monotonic() - started:6.0f} s", flush=True)
    conn.execute(DAILY)
    conn.execute(TOTALS)
    conn.execute("COMMIT")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.close()


BUSY = """SELECT username FROM users WHERE role = 'user' AND EXISTS
 (SELECT 1 FROM usage_daily WHERE user_id = users.id) ORDER BY username LIMIT 1"""


def expected(db: Path, keys: int) -> tuple[str, dict[str, int]]:
    """What the pages must show, read from the database (not from the seed's arguments)."""
    start = (datetime.now(UTC).date() - timedelta(days=DAYS - 1)).isoformat()
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:

        def one(sql: str, *params: str) -> int:
            return int(conn.execute(sql, params).fetchone()[0] or 0)

        mine = "user_id = (SELECT id FROM users WHERE username = ?)"
        like, match = f"%{needle(keys)}%", "name LIKE ? OR prefix LIKE ?"
        usage = f"SELECT sum(requests) FROM usage_daily WHERE {mine} AND day >= ?"
        user = conn.execute(BUSY).fetchone()[0]
        return user, {
            "mine": one(f"SELECT count(*) FROM api_keys WHERE {mine}", "admin"),
            "all": one("SELECT count(*) FROM api_keys"),
            "found": one(f"SELECT count(*) FROM api_keys WHERE {match}", like, like),
            "everyone": one("SELECT sum(requests) FROM usage_daily_totals WHERE day >= ?", start),
            "user": one(usage, user, start),
            "daily": one("SELECT count(*) FROM usage_daily"),
            "totals": one("SELECT count(*) FROM usage_daily_totals"),
        }


async def measure(
    url: str, pages: list[tuple[str, str, Check]], n: int
) -> list[tuple[float, list[float]]]:
    """Per page: the first answer's time (a cold cache, a kept value not yet made) and
    the sorted times of the measured ones."""
    import aiohttp

    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        async with http.get(url + "/console/login") as resp:
            form, token = await resp.text(), resp.cookies["console_csrf"].value
        found = re.search(r'name="csrf" value="([^"]+)"', form)
        fields = {"csrf": found[1] if found else "", "username": "admin", "password": PASSWORD}
        async with http.post(url + "/console/login", data=fields, allow_redirects=False,
                             headers={"Cookie": f"console_csrf={token}"}) as resp:  # fmt: skip
            if "session_token" not in resp.cookies:
                raise RuntimeError(f"login failed: {resp.status} {(await resp.text())[:300]}")
            cookie = {"Cookie": f"session_token={resp.cookies['session_token'].value}"}
        results = []
        for label, path, check in pages:
            times = []
            for i in range(WARMUP + n):
                sent = time.perf_counter()
                async with http.get(url + path, headers=cookie, allow_redirects=False) as resp:
                    body = await resp.text()
                took = (time.perf_counter() - sent) * 1000
                if resp.status != 200 or not check(body):
                    raise RuntimeError(f"{label}: {resp.status}, unexpected page\n{body[:2000]}")
                if i == 0:
                    first = took
                    if "data-fill=" in body:
                        print(f"{label}: the first view came with the top keys to follow")
                if i >= WARMUP:
                    times.append(took)
            results.append((first, sorted(times)))
    return results


def serve(procs: base.Processes, ws: base.Workspace, data: Path, prefix: tuple[str, ...],
          log: str) -> tuple[Any, str]:  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("FERRYMAN_")}
    env |= {"FERRYMAN_DATA_DIR": str(data), "FERRYMAN_LOG_LEVEL": "warning",
            "FERRYMAN_ADMIN_USERNAME": "admin", "FERRYMAN_ADMIN_PASSWORD": PASSWORD,
            "FERRYMAN_SESSION_COOKIE_SECURE": "false"}  # fmt: skip
    port = base.free_port()
    argv = [*prefix, base.ferryman_executable(), "serve", "--host", "127.0.0.1"]
    proc = procs.start([*argv, "--port", str(port)], log=ws.path(log), env=env, cwd=ws.root)
    url = f"http://127.0.0.1:{port}"
    base.wait_until_up("ferryman", url + "/health/live", proc, ws.path(log), timeout=120)
    return proc, url


def count(n: int, found: str = "") -> Check:
    text = f'id="count">{n} key{"" if n == 1 else "s"}{found}'
    return lambda body: text in body and body.count("<tr data-key=") == min(n, 50)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--records", type=int, default=10_000_000)
    parser.add_argument("--requests", type=int, default=30, help="timed requests per page")
    parser.add_argument("--keep", type=Path, help="keep (and reuse) the seeded data dir here")
    args = parser.parse_args()
    pin = base.plan_pinning()
    ws = base.Workspace(Path(tempfile.mkdtemp(prefix="ferryman-console-bench-")))
    data = args.keep.resolve() if args.keep else ws.path("data")
    db, marker = data / "ferryman.db", data / MARKER
    wanted = {"keys": args.keys, "records": args.records}
    procs = base.Processes()
    try:
        old = json.loads(marker.read_text()) if marker.exists() else {}
        if {k: old.get(k) for k in wanted} == wanted and db.exists():
            print(f"reusing {data} (seeded {old['seeded_at']}; seed took {old['seconds']:.0f} s)")
        else:
            for name in ("ferryman.db", "ferryman.db-wal", "ferryman.db-shm", MARKER):
                (data / name).unlink(missing_ok=True)
            procs.stop(serve(procs, ws, data, (), "ferryman-migrate.log")[0])
            print(f"seeding {args.keys:,} keys, {args.records:,} records into {db}", flush=True)
            started = time.monotonic()
            seed(db, args.keys, args.records)
            took = time.monotonic() - started
            print(f"seeded in {took:.0f} s")
            at = datetime.now(UTC).isoformat(timespec="seconds")
            marker.write_text(json.dumps(wanted | {"seconds": took, "seeded_at": at}))
        user, want = expected(db, args.keys)
        size = sum(p.stat().st_size for p in data.glob("ferryman.db*")) / 2**30
        print(f"database: {size:.2f} GiB; usage_daily {want['daily']:,} rows, "
              f"usage_daily_totals {want['totals']:,} rows")  # fmt: skip
        gw, url = serve(procs, ws, data, pin.proxy, "ferryman.log")
        if pin.load:
            os.sched_setaffinity(0, {int(pin.load[-1])})
        sort_page = min(500, max(1, -(-want["all"] // 50)))  # page 500, or the last
        term = needle(args.keys)
        pages: list[tuple[str, str, Check]] = [
            (f"keys, own ({want['mine']})", "/console/keys", count(want["mine"])),
            (f"keys, all ({want['all']})", "/console/keys?all=1", count(want["all"])),
            (f"keys, all, q={term} ({want['found']})", f"/console/keys?all=1&q={term}",
             count(want["found"], f" matching “{term}”")),
            (f"keys, all, sort=name, page {sort_page}",
             f"/console/keys?all=1&sort=name&page={sort_page}",
             lambda b: f'id="count">{want["all"]} keys' in b
             and b.count("<tr data-key=") == min(50, want["all"] - 50 * (sort_page - 1))),
            ("dashboard, 30 days, everyone", "/console/?days=30",
             lambda b: want["everyone"] > 0 and f'id="total-requests">{want["everyone"]:,}<' in b),
            (f"dashboard, 30 days, user={user}", f"/console/?days=30&user={user}",
             lambda b: want["user"] > 0 and f'id="total-requests">{want["user"]:,}<' in b),
            ("top keys fragment, 30 days, everyone", "/console/dashboard/top-keys?days=30",
             lambda b: b.count('<a href="/console/keys/') == 10),
            # Not warmed at login: the first view has the placeholder, and the fragment's
            # first answer is what is left of the count.
            ("dashboard, 90 days, everyone", "/console/?days=90",
             lambda b: 'id="total-requests">' in b),
            ("top keys fragment, 90 days, everyone", "/console/dashboard/top-keys?days=90",
             lambda b: b.count('<a href="/console/keys/') == 10),
        ]  # fmt: skip
        where = f"gateway on CPU {pin.proxy[-1]}, us on {pin.load[-1]}" if pin.load else pin.note
        print(f"measuring: {WARMUP} warm-up + {args.requests} requests a page, one by one; {where}")
        results = asyncio.run(measure(url, pages, args.requests))
        print(f"\n{'page':<44}{'first ms':>9}{'p50 ms':>9}{'p95 ms':>9}")
        for (label, _, _), (first, times) in zip(pages, results, strict=True):
            p50, p95 = times[len(times) // 2], times[-(-len(times) * 95 // 100) - 1]
            verdict = "ok" if p95 < TARGET_MS else "MISSED"
            print(
                f"{label:<44}{first:>9.1f}{p50:>9.1f}{p95:>9.1f}"
                f"  (target < {TARGET_MS:.0f} ms) {verdict}"
            )
        print(f"\nferryman RSS after the run: {base.rss_mb(gw.pid):.0f} MB")
    finally:
        procs.stop_all()
        if not args.keep:
            shutil.rmtree(data, ignore_errors=True)
    print(f"logs: {ws.root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
