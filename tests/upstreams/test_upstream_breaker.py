"""An upstream's circuit breaker, state by state, on a fake clock (no sleeping)."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ferryman.clock import FakeClock
from ferryman.config.resilience import Breaker as Spec
from ferryman.errors import ServiceUnavailable
from ferryman.observability.metrics import LocalMetrics
from ferryman.upstreams.breaker import UpstreamBreaker

SPEC = Spec(failures=3, failure_rate=None, open_for=5, growth=2, max_open_for=12)


def breaker(spec: Spec = SPEC) -> tuple[UpstreamBreaker, FakeClock]:
    clock = FakeClock()
    return UpstreamBreaker("up", spec, clock, LocalMetrics()), clock


async def call(b: UpstreamBreaker, status: int) -> None:
    ticket = b.gen if b.closed else await b.enter()
    b.answered(ticket, status)


async def open_it(b: UpstreamBreaker) -> None:
    for _ in range(b.spec.failures):
        await call(b, 502)
    assert b.state == "open"


async def refused(b: UpstreamBreaker) -> ServiceUnavailable:
    with pytest.raises(ServiceUnavailable) as caught:
        await b.enter()
    return caught.value


async def test_failures_in_a_row_open_it_and_a_success_between_resets_the_count() -> None:
    b, _ = breaker()
    await call(b, 500)
    await call(b, 503)
    await call(b, 200)
    await call(b, 500)
    await call(b, 500)
    assert b.closed and b.failures == 2
    await call(b, 504)
    assert b.state == "open" and not b.closed


async def test_client_errors_never_count() -> None:
    b, _ = breaker()
    for status in (400, 401, 403, 404, 429, 499) * 3:
        await call(b, status)
    assert b.closed and b.failures == 0


async def test_an_open_breaker_refuses_with_503_and_retry_after() -> None:
    b, clock = breaker()
    await open_it(b)
    error = await refused(b)
    assert error.status == 503 and error.code == "upstream_circuit_open"
    assert (b"retry-after", b"5") in error.headers
    assert "'up'" in error.message
    clock.advance(seconds=3.2)
    assert (b"retry-after", b"2") in (await refused(b)).headers
    assert b.refusals == 2


async def test_half_open_lets_exactly_one_probe_through_and_its_success_closes() -> None:
    b, clock = breaker()
    await open_it(b)
    clock.advance(seconds=5)
    probe = await b.enter()
    assert b.state == "half_open"
    for _ in range(5):  # everyone else is refused while the probe is out, not queued
        assert (b"retry-after", b"1") in (await refused(b)).headers
    b.succeeded(probe)
    assert b.closed and b.opens == 0
    assert b.gen == (await b.enter())  # closed: a ticket at once


async def test_each_failed_probe_opens_it_longer_up_to_the_cap() -> None:
    b, clock = breaker()
    await open_it(b)
    waits = []
    for _ in range(4):
        waits.append(round(b.until - clock.time(), 3))
        clock.advance(seconds=waits[-1])
        probe = await b.enter()
        b.failed(probe, "status 500")
        assert b.state == "open"
    assert waits == [5, 10, 12, 12]
    clock.advance(seconds=12)
    b.succeeded(await b.enter())
    await open_it(b)  # closed in between: the next outage starts short again
    assert round(b.until - clock.time(), 3) == 5


async def test_a_late_verdict_from_before_the_opening_changes_nothing() -> None:
    b, clock = breaker()
    slow = b.gen  # admitted while closed, answers after the breaker opened
    await open_it(b)
    until = b.until
    b.failed(slow, "timeout")
    b.succeeded(slow)
    assert b.state == "open" and b.until == until
    clock.advance(seconds=5)
    probe = await b.enter()
    b.succeeded(slow)  # not the probe: does not close it
    assert b.state == "half_open"
    b.succeeded(probe)
    assert b.closed


async def test_an_abandoned_probe_frees_the_slot_and_a_silent_one_loses_it() -> None:
    b, clock = breaker()
    await open_it(b)
    clock.advance(seconds=5)
    first = await b.enter()
    b.abandoned(first)  # its client left before the upstream answered
    second = await b.enter()
    assert second != first and b.state == "half_open"
    clock.advance(seconds=SPEC.probe_timeout + 0.1)  # the probe never reported
    third = await b.enter()
    b.succeeded(second)  # too late: the slot went to `third`
    assert b.state == "half_open"
    b.succeeded(third)
    assert b.closed


async def test_a_failure_rate_over_the_window_opens_it_once_enough_calls_were_seen() -> None:
    spec = Spec(failures=100, failure_rate=0.5, window=10, min_calls=10)
    b, clock = breaker(spec)
    for _ in range(4):  # 4 of 8: over the rate, under the minimum count
        await call(b, 200)
        await call(b, 500)
    assert b.closed
    await call(b, 200)
    await call(b, 500)  # 5 of 10
    assert b.state == "open"

    b, clock = breaker(spec)
    for _ in range(6):
        await call(b, 500)
        await call(b, 200)
        clock.advance(seconds=3)  # the window forgets what is older than 10 s
    assert b.closed


async def test_state_and_refusals_are_in_the_metrics_and_the_report() -> None:
    b, _ = breaker()
    await open_it(b)
    await refused(b)
    report = b.report()
    assert report["state"] == "open" and report["retry_in"] == 5 and report["refused"] == 1
    assert report["reason"] == "status 502"
    assert isinstance(b.metrics, LocalMetrics)
    text = b.metrics.render()[0].decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("ferryman_upstream_breaker_state", (("state", "open"), ("upstream", "up")))]
    assert not samples[
        ("ferryman_upstream_breaker_state", (("state", "closed"), ("upstream", "up")))
    ]
    key = ("ferryman_upstream_breaker_refusals_total", (("upstream", "up"),))
    assert samples[key] == 1
    moves = ("ferryman_upstream_breaker_transitions_total", (("state", "open"), ("upstream", "up")))
    assert samples[moves] == 1


def test_the_configuration_shorthands_and_checks() -> None:
    from ferryman.config.upstreams import Upstream

    assert Upstream(url="http://x", breaker=True).breaker == Spec()  # type: ignore[arg-type]
    assert Upstream(url="http://x", breaker=False).breaker is None  # type: ignore[arg-type]
    assert Upstream(url="http://x").breaker is None
    with pytest.raises(ValueError, match="max_open_for"):
        Spec(open_for=60, max_open_for=30)
    assert Spec(open_for=5, growth=3, max_open_for=100).open_time(3) == 45
