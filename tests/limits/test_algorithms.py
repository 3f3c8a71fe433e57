"""Rates as written, and the two algorithms, on a clock the test moves."""

from __future__ import annotations

import pytest

from ferryman.limits.algorithms import gcra, sliding_window
from ferryman.limits.backends import MemoryBackend, Tier
from ferryman.limits.rates import Rate, parse_rate


@pytest.mark.parametrize(
    ("text", "count", "period", "burst"),
    [
        ("60/minute", 60, 60, 60),
        ("1000/hour", 1000, 3600, 1000),
        ("10/second burst 20", 10, 1, 20),
        ("5/10 seconds", 5, 10, 5),
        ("100 / day", 100, 86400, 100),
        ("3/Minutes", 3, 60, 3),
    ],
)
def test_rates_are_read_as_written(text: str, count: int, period: float, burst: int) -> None:
    assert parse_rate(text) == Rate(count, period, burst)


@pytest.mark.parametrize(
    "text", ["", "60", "60/fortnight", "0/minute", "x/minute", "5/minute burst"]
)
def test_a_malformed_rate_says_what_is_expected(text: str) -> None:
    with pytest.raises(ValueError, match=r"rate like|at least 1"):
        parse_rate(text)


def run_gcra(rate: Rate, times: list[float]) -> list[bool]:
    tat = 0.0
    out = []
    for now in times:
        decision, new_tat = gcra(rate, tat, now)
        if decision.allowed:
            tat = new_tat
        out.append(decision.allowed)
    return out


def test_gcra_admits_the_burst_at_once_then_the_sustained_rate() -> None:
    rate = parse_rate("10/second burst 20")
    assert run_gcra(rate, [100.0] * 25) == [True] * 20 + [False] * 5
    # After the burst, one more every 0.1 s.
    times = [100.0] * 20 + [100.05, 100.1, 100.15, 100.2]
    assert run_gcra(rate, times)[20:] == [False, True, False, True]


def test_gcra_reports_remaining_reset_and_retry_after() -> None:
    rate = parse_rate("60/minute")
    decision, tat = gcra(rate, 0.0, 1000.0)
    assert (decision.allowed, decision.limit, decision.remaining) == (True, 60, 59)
    assert decision.reset == pytest.approx(1.0)
    for _ in range(59):
        decision, tat = gcra(rate, tat, 1000.0)
    assert decision.remaining == 0
    refused, _ = gcra(rate, tat, 1000.0)
    assert not refused.allowed and refused.retry_after == pytest.approx(1.0)
    assert refused.reset == pytest.approx(60.0)


def test_the_sliding_window_admits_exactly_the_count_in_any_window() -> None:
    rate = parse_rate("10/minute")
    state = (0, 0, 0)
    admitted = 0
    for _ in range(15):
        decision, *new = sliding_window(rate, *state, now=600.0)
        if decision.allowed:
            state = (new[0], new[1], new[2])
            admitted += 1
    assert admitted == 10
    # Half-way through the next window, half of the previous one still counts.
    decision, *_ = sliding_window(rate, *state, now=690.0)
    assert decision.allowed and decision.remaining == 4
    refused, *_ = sliding_window(rate, state[0], state[1], state[2], now=611.0)
    assert not refused.allowed and refused.retry_after > 49  # next window, then its share


def test_a_request_refused_by_one_tier_consumes_none() -> None:
    backend = MemoryBackend()
    loose = Tier("a|60", "gcra", parse_rate("100/minute"))
    tight = Tier("b|60", "sliding_window", parse_rate("2/minute"))
    results = [all(d.allowed for d in backend.hit([loose, tight], 60.0)) for _ in range(5)]
    assert results == [True, True, False, False, False]
    (alone,) = backend.hit([loose], 60.0)
    assert alone.remaining == 97  # only the two admitted requests counted


def test_the_sweep_forgets_counters_that_hold_nothing_back() -> None:
    backend = MemoryBackend()
    backend.hit([Tier("g|60", "gcra", parse_rate("60/minute"))], 100.0)
    backend.hit([Tier("w|60", "sliding_window", parse_rate("60/minute"))], 100.0)
    assert backend.sweep(100.5) == 0
    assert backend.sweep(400.0) == 2
    assert backend.gcra == {} and backend.windows == {}
