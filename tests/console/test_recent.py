"""The dashboard's kept-and-refreshed value: computed once, served while fresh, served
stale at once while one refresh runs, never computed twice at the same time."""

from __future__ import annotations

import asyncio

import pytest

from ferryman.console.recent import Recent


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_fresh_then_stale_while_one_refresh_runs() -> None:
    clock = Clock()
    recent: Recent[int] = Recent(fresh=300, clock=clock)
    calls = 0
    gate = asyncio.Event()

    async def compute() -> int:
        nonlocal calls
        calls += 1
        if calls > 1:
            await gate.wait()
        return calls

    assert await recent.get("k", compute) == (1, 0.0)
    clock.now = 299
    assert await recent.get("k", compute) == (1, 299)
    assert calls == 1
    clock.now = 301
    # Stale: the kept value at once, one refresh started (and only one).
    assert await recent.get("k", compute) == (1, 301)
    assert await recent.get("k", compute) == (1, 301)
    await asyncio.sleep(0)
    assert calls == 2
    gate.set()
    await asyncio.sleep(0.01)
    assert await recent.get("k", compute) == (2, 0.0)


async def test_concurrent_first_readers_share_one_computation_and_a_failure_is_not_kept() -> None:
    recent: Recent[str] = Recent(fresh=300)
    calls = 0

    async def slow() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return "v"

    results = await asyncio.gather(*(recent.get("k", slow) for _ in range(20)))
    assert [value for value, _ in results] == ["v"] * 20 and calls == 1

    async def broken() -> str:
        raise RuntimeError("database gone")

    with pytest.raises(RuntimeError):
        await recent.get("other", broken)
    assert await recent.get("other", slow) == ("v", 0.0)  # tried again, not cached


async def test_a_reader_who_cannot_wait_gets_nothing_and_the_computation_goes_on() -> None:
    recent: Recent[str] = Recent(fresh=300)
    calls = 0
    gate = asyncio.Event()

    async def slow() -> str:
        nonlocal calls
        calls += 1
        await gate.wait()
        return "v"

    assert await recent.get("k", slow, wait=0.01) == (None, 0.0)
    assert await recent.get("k", slow, wait=0.01) == (None, 0.0)
    assert calls == 1  # still the first one, not cancelled by the impatient readers
    gate.set()
    assert await recent.get("k", slow) == ("v", 0.0)  # a patient reader waits for it
    value, age = await recent.get("k", slow, wait=0)
    assert value == "v" and age < 1
    assert calls == 1


async def test_warming_starts_one_computation_that_later_readers_share() -> None:
    recent: Recent[str] = Recent(fresh=300)
    calls = 0

    async def slow() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.02)
        return "v"

    recent.warm("k", slow)
    recent.warm("k", slow)
    assert await recent.get("k", slow) == ("v", 0.0)
    recent.warm("k", slow)  # kept and fresh: nothing to do
    await asyncio.sleep(0.03)
    assert calls == 1
