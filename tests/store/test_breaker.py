"""The Redis circuit breaker's states, on a fake clock (no sleeping, no Redis)."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from ferryman.clock import FakeClock
from ferryman.config.limits import RedisBreaker
from ferryman.observability.metrics import LocalMetrics
from ferryman.store.breaker import Breaker, BreakerOpen

SPEC = RedisBreaker(failures=3, cooloff=5, max_cooloff=20)


def breaker(spec: RedisBreaker = SPEC) -> tuple[Breaker, FakeClock]:
    clock = FakeClock()
    return Breaker(spec, clock), clock


def fail(b: Breaker, times: int = 1) -> None:
    for _ in range(times):
        ticket = b.admit()
        assert ticket is not None
        b.failed(ticket, TimeoutError())


def open_it(b: Breaker) -> None:
    fail(b, SPEC.failures)
    assert b.state == "open"


def test_it_opens_after_the_configured_failures_in_a_row_only() -> None:
    b, _ = breaker()
    fail(b, 2)
    assert b.closed and b.failures == 2
    ticket = b.admit()
    assert ticket is not None
    b.succeeded(ticket)  # the count is of failures in a row
    assert b.failures == 0
    fail(b, 2)
    assert b.closed
    fail(b)
    assert not b.closed and b.state == "open" and b.opens == 1


def test_open_refuses_every_caller_until_the_cooloff_has_passed() -> None:
    b, clock = breaker()
    open_it(b)
    for _ in range(100):
        assert b.admit() is None
    clock.advance(seconds=4.9)
    assert b.admit() is None
    clock.advance(seconds=0.1)
    assert b.admit() is not None
    assert b.state == "half_open"


def test_half_open_admits_one_probe_at_a_time() -> None:
    b, clock = breaker()
    open_it(b)
    clock.advance(seconds=5)
    probe = b.admit()
    assert probe is not None
    # Everyone else keeps the fallback while the probe is out, however long it takes.
    assert [b.admit() for _ in range(50)] == [None] * 50
    clock.advance(seconds=60)
    assert b.admit() is None
    b.succeeded(probe)
    assert b.closed and b.state == "closed"
    assert b.admit() is not None


def test_a_successful_probe_closes_and_the_next_outage_starts_from_the_first_cooloff() -> None:
    b, clock = breaker()
    open_it(b)
    clock.advance(seconds=5)
    fail(b)  # the probe fails: 10 s
    clock.advance(seconds=10)
    probe = b.admit()
    assert probe is not None
    b.succeeded(probe)
    assert b.closed and b.failures == 0
    open_it(b)
    assert b.cooloff == 5
    clock.advance(seconds=5)
    assert b.admit() is not None


def test_a_failed_probe_opens_again_for_twice_as_long_up_to_the_max() -> None:
    b, clock = breaker()
    open_it(b)
    waits = []
    for _ in range(5):
        clock.advance(seconds=b.cooloff - 0.5)
        assert b.admit() is None, "not a moment before the cool-off ends"
        clock.advance(seconds=0.5)
        probe = b.admit()
        assert probe is not None, "one probe once the cool-off has passed"
        b.failed(probe, ConnectionError())
        assert b.state == "open"
        waits.append(b.cooloff)
    assert waits == [10, 20, 20, 20, 20]
    assert b.opens == 6


def test_late_reports_of_calls_admitted_before_the_breaker_opened_change_nothing() -> None:
    b, clock = breaker()
    stragglers = [b.admit() for _ in range(10)]  # all waiting on a silent Redis
    assert None not in stragglers
    for ticket in stragglers[:3]:
        assert ticket is not None
        b.failed(ticket, TimeoutError())
    assert b.state == "open" and b.cooloff == 5
    retry_at = b.retry_at
    for ticket in stragglers[3:6]:
        assert ticket is not None
        b.failed(ticket, TimeoutError())  # no second opening, no longer (or shorter) wait
    assert b.retry_at == retry_at and b.opens == 1 and b.cooloff == 5
    clock.advance(seconds=5)
    probe = b.admit()
    assert probe is not None
    late_success, late_failure = stragglers[6], stragglers[7]
    assert late_success is not None and late_failure is not None
    b.succeeded(late_success)  # only the probe decides
    b.failed(late_failure, TimeoutError())
    assert b.state == "half_open" and b.probing
    b.failed(probe, TimeoutError())
    assert b.state == "open" and b.cooloff == 10


def test_an_abandoned_probe_lets_the_next_caller_probe() -> None:
    b, clock = breaker()
    open_it(b)
    clock.advance(seconds=5)
    probe = b.admit()
    assert probe is not None and b.admit() is None
    b.abandoned(probe)  # its client left: no verdict on Redis
    assert b.state == "half_open" and b.cooloff == 5
    second = b.admit()
    assert second is not None and b.admit() is None
    b.succeeded(second)
    assert b.closed


async def test_call_counts_a_timeout_and_refuses_without_calling_once_open() -> None:
    b, clock = breaker(RedisBreaker(failures=2, cooloff=1, max_cooloff=1))
    never = asyncio.Event()
    calls = 0

    async def silent() -> None:
        nonlocal calls
        calls += 1
        await never.wait()

    for _ in range(2):
        with pytest.raises(TimeoutError):
            await b.call(silent, 0.001)
    assert b.state == "open" and calls == 2
    with pytest.raises(BreakerOpen):
        await b.call(silent, 0.001)
    assert calls == 2  # not called

    async def answer() -> str:
        return "PONG"

    clock.advance(seconds=1)
    assert await b.call(answer, 1.0) == "PONG"
    assert b.closed


async def test_call_treats_a_cancelled_probe_as_no_verdict() -> None:
    b, clock = breaker()
    open_it(b)
    clock.advance(seconds=5)
    never = asyncio.Event()
    task = asyncio.create_task(b.call(never.wait, 30))
    await asyncio.sleep(0)  # the task is the probe now
    assert b.probing
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not b.probing and b.state == "half_open" and b.cooloff == 5


def test_opening_and_closing_are_logged_once_each_not_per_call() -> None:
    b, clock = breaker()
    with capture_logs() as logs:
        open_it(b)
        for _ in range(100):
            assert b.admit() is None
        clock.advance(seconds=5)
        fail(b)
        clock.advance(seconds=10)
        probe = b.admit()
        assert probe is not None
        b.succeeded(probe)
    events = [(e["event"], e.get("probe_failed"), e.get("cooloff")) for e in logs]
    assert events == [
        ("redis_breaker_open", False, 5),
        ("redis_breaker_open", True, 10),
        ("redis_breaker_closed", None, None),
    ]
    assert logs[0]["reason"] == "TimeoutError"
    assert logs[-1]["down_for"] == 15


def test_the_state_and_transitions_are_metrics() -> None:
    metrics = LocalMetrics()
    clock = FakeClock()
    b = Breaker(SPEC, clock, metrics)

    def scrape() -> dict[tuple[str, str], float]:
        out = {}
        for family in text_string_to_metric_families(metrics.render()[0].decode()):
            for sample in family.samples:
                if sample.name.startswith("ferryman_redis_breaker"):
                    out[(sample.name, sample.labels["state"])] = sample.value
        return out

    assert scrape()[("ferryman_redis_breaker_state", "closed")] == 1
    open_it(b)
    seen = scrape()
    assert seen[("ferryman_redis_breaker_state", "open")] == 1
    assert seen[("ferryman_redis_breaker_state", "closed")] == 0
    clock.advance(seconds=5)
    probe = b.admit()
    assert probe is not None
    b.succeeded(probe)
    seen = scrape()
    assert seen[("ferryman_redis_breaker_state", "closed")] == 1
    assert seen[("ferryman_redis_breaker_transitions_total", "open")] == 1
    assert seen[("ferryman_redis_breaker_transitions_total", "half_open")] == 1
    assert seen[("ferryman_redis_breaker_transitions_total", "closed")] == 1


def test_without_redis_there_is_no_breaker_metric() -> None:
    text = LocalMetrics().render()[0].decode()
    assert "ferryman_redis_breaker" not in text


def test_the_report_says_what_readiness_shows() -> None:
    b, clock = breaker()
    assert b.report() == {"state": "closed", "opens": 0}
    fail(b)
    assert b.report() == {"state": "closed", "opens": 0, "failures": 1}
    fail(b, 2)
    clock.advance(seconds=2)
    assert b.report() == {
        "state": "open",
        "opens": 1,
        "cooloff": 5,
        "probe_in": 3,
        "down_for": 2,
        "reason": "TimeoutError",
    }
