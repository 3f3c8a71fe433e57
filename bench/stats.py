"""How fast the stats queries answer on a large history (issue 6's target: < 100 ms each
on SQLite with 10 million raw records and a year of daily aggregates).

    .venv/bin/python bench/stats.py [--records 10000000] [--users 50] [--keys 2] [--models 8]

Builds a fresh SQLite database (migrated by Ferryman), fills `usage_records` with
`--records` rows spread over the last year and `usage_daily` with every day, user,
key and model of that year (what those records would aggregate to), then times each
stats query of the API, for one user and for an admin over everyone, cold and warm.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from ferryman.config.settings import Settings
from ferryman.store import migrate, stats
from ferryman.store.engine import create_database
from ferryman.store.stats import Filters

TODAY = date(2026, 11, 22)


def raw_rows(n: int, users: int, keys: int, models: int) -> Iterator[tuple[Any, ...]]:
    rng = random.Random(1)
    start = datetime.combine(TODAY - timedelta(days=365), datetime.min.time(), UTC)
    for i in range(n):
        user = rng.randrange(users)
        at = start + timedelta(seconds=rng.randrange(365 * 86_400))
        yield (
            f"{i:032x}", at.replace(tzinfo=None).isoformat(" "), "llm", f"user-{user}",
            f"key-{user}-{rng.randrange(keys)}", "openrouter", "pool-1",
            f"model-{rng.randrange(models)}", 200, 12.5, 3.0, 10.0, 300, 1200, 40, 120, 160,
            0.0012, f"c{i}",
        )  # fmt: skip


def daily_rows(users: int, keys: int, models: int) -> Iterator[tuple[Any, ...]]:
    for day in range(365):
        when = (TODAY - timedelta(days=day)).isoformat()
        for user in range(users):
            for key in range(keys):
                for model in range(models):
                    yield (when, f"user-{user}", f"key-{user}-{key}", "pool-1",
                           f"model-{model}", 30, 1, 1200, 3600, 0.036, 0)  # fmt: skip


def fill(path: Path, records: int, users: int, keys: int, models: int) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA journal_mode=WAL")
    started = time.perf_counter()
    batch: list[tuple[Any, ...]] = []
    insert = f"INSERT INTO usage_records VALUES ({', '.join('?' * 19)})"
    for row in raw_rows(records, users, keys, models):
        batch.append(row)
        if len(batch) == 50_000:
            conn.executemany(insert, batch)
            batch.clear()
    if batch:
        conn.executemany(insert, batch)
    conn.executemany(
        f"INSERT INTO usage_daily VALUES ({', '.join('?' * 11)})",
        daily_rows(users, keys, models),
    )
    per_day = users * keys
    conn.executemany(
        f"INSERT INTO usage_daily_totals VALUES ({', '.join('?' * 9)})",
        (
            ((TODAY - timedelta(days=day)).isoformat(), "pool-1", f"model-{model}",
             30 * per_day, per_day, 1200 * per_day, 3600 * per_day, 0.036 * per_day, 0)
            for day in range(365)
            for model in range(models)
        ),
    )  # fmt: skip
    conn.commit()
    conn.execute("ANALYZE")
    conn.close()
    print(f"filled in {time.perf_counter() - started:.0f} s", flush=True)


async def timed(fn: Callable[[], Awaitable[Any]], runs: int = 7) -> tuple[float, float]:
    cold_started = time.perf_counter()
    await fn()
    cold = (time.perf_counter() - cold_started) * 1000
    warm = []
    for _ in range(runs):
        started = time.perf_counter()
        await fn()
        warm.append((time.perf_counter() - started) * 1000)
    return cold, statistics.median(warm)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=10_000_000)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--keys", type=int, default=2)
    parser.add_argument("--models", type=int, default=8)
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="ferryman-stats-"))
    settings = Settings(_env_file=None, data_dir=data_dir)  # type: ignore[call-arg]
    db = create_database(settings)
    await migrate.upgrade(db)
    await db.dispose()
    aggregates = 365 * args.users * args.keys * args.models
    print(f"{args.records:,} raw records, {aggregates:,} daily aggregate rows in {data_dir}")
    fill(data_dir / "ferryman.db", args.records, args.users, args.keys, args.models)
    db = create_database(settings)
    month = TODAY - timedelta(days=30)
    one = Filters(user_id="user-7")
    queries: dict[str, Callable[[], Awaitable[Any]]] = {
        "stats (user, all time)": lambda: stats.summary(db, one),
        "stats (admin, all users)": lambda: stats.summary(db, Filters()),
        "stats (user, last 30 days)": lambda: stats.summary(
            db, Filters(user_id="user-7", start=month, end=TODAY)
        ),
        "usage page 1 (user)": lambda: stats.per_day_and_model(db, one, offset=0, limit=100),
        "usage page 20 (user)": lambda: stats.per_day_and_model(db, one, offset=1900, limit=100),
        "usage (admin, model filter)": lambda: stats.per_day_and_model(
            db, Filters(model="model-3"), offset=0, limit=100
        ),
        "per client key (user)": lambda: stats.per_dimension(db, one, "credential_id"),
        "per upstream key (admin)": lambda: stats.per_dimension(db, Filters(), "upstream_key_id"),
    }
    worst = 0.0
    print(f"{'query':<32} {'cold ms':>9} {'warm ms':>9}")
    for name, query in queries.items():
        cold, warm = await timed(query)
        worst = max(worst, warm)
        print(f"{name:<32} {cold:>9.1f} {warm:>9.1f}")
    await db.dispose()
    print(f"slowest warm: {worst:.1f} ms (target < 100 ms)")
    return 0 if worst < 100 else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
