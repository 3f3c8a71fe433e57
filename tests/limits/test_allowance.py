"""Budget periods, budget windows and allowances, without the gateway."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from ferryman.limits.allowance import NOTHING, Allowance, Budget, check_period


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("day", "day"),
        ("week", "week"),
        ("month", "month"),
        (" Month ", "month"),
        ("WEEK", "week"),
        ("7 days", "7 days"),
        ("1 day", "1 day"),
        ("1 days", "1 day"),
        ("  30   Days ", "30 days"),
        ("366 days", "366 days"),
    ],
)
def test_a_period_is_given_back_in_its_canonical_spelling(text: str, canonical: str) -> None:
    assert check_period(text) == canonical


@pytest.mark.parametrize("text", ["fortnight", "0 days", "367 days", "", "-1 days", "days"])
def test_a_period_that_is_none_of_the_choices_is_refused_naming_them(text: str) -> None:
    with pytest.raises(ValueError) as info:
        check_period(text)
    message = str(info.value)
    assert repr(text) in message
    assert "day, week, month or 'N days'" in message
    assert "N from 1 to 366" in message


def midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def test_a_day_counts_today_and_renews_at_midnight_utc() -> None:
    start, renews = Budget(1.0, "day").window(date(2027, 3, 17))
    assert start == date(2027, 3, 17)
    assert renews == midnight(date(2027, 3, 18))
    assert renews.tzinfo is UTC


@pytest.mark.parametrize(
    ("today", "monday"),
    [
        (date(2027, 3, 17), date(2027, 3, 15)),  # a Wednesday
        (date(2027, 3, 15), date(2027, 3, 15)),  # a Monday: itself
        (date(2027, 3, 21), date(2027, 3, 15)),  # a Sunday: still that week
        (date(2027, 1, 1), date(2026, 12, 28)),  # a Friday: the week began last year
    ],
)
def test_a_week_starts_on_monday_and_renews_the_next_monday(today: date, monday: date) -> None:
    start, renews = Budget(1.0, "week").window(today)
    assert start == monday
    assert start.weekday() == 0
    assert renews == midnight(date.fromordinal(monday.toordinal() + 7))


@pytest.mark.parametrize(
    ("today", "first", "next_first"),
    [
        (date(2027, 3, 17), date(2027, 3, 1), date(2027, 4, 1)),
        (date(2027, 1, 31), date(2027, 1, 1), date(2027, 2, 1)),
        (date(2028, 2, 29), date(2028, 2, 1), date(2028, 3, 1)),
        (date(2027, 12, 31), date(2027, 12, 1), date(2028, 1, 1)),
        (date(2027, 12, 1), date(2027, 12, 1), date(2028, 1, 1)),
    ],
)
def test_a_month_is_the_calendar_month(today: date, first: date, next_first: date) -> None:
    start, renews = Budget(1.0, "month").window(today)
    assert start == first
    assert renews == midnight(next_first)


def test_a_rolling_window_counts_today_and_the_days_before_and_renews_tomorrow() -> None:
    start, renews = Budget(1.0, "7 days").window(date(2027, 3, 3))
    assert start == date(2027, 2, 25)  # six days back, across the month's end
    assert renews == midnight(date(2027, 3, 4))
    start, renews = Budget(1.0, "1 day").window(date(2027, 3, 3))
    assert start == date(2027, 3, 3)
    assert renews == midnight(date(2027, 3, 4))


def test_an_allowance_with_nothing_set_is_the_shared_nothing() -> None:
    assert Allowance.of(None, None, None, None) is NOTHING
    assert Allowance(None, None, None) == NOTHING


def test_a_budget_needs_both_amount_and_period() -> None:
    only_amount = Allowance.of(10, None, 5.0, None)
    assert only_amount.budget is None and only_amount.rpm == 10
    only_period = Allowance.of(None, 100, None, "day")
    assert only_period.budget is None and only_period.tpm == 100
    # Neither caps nor a whole budget: nothing.
    assert Allowance.of(None, None, 5.0, None) is NOTHING
    assert Allowance.of(None, None, None, "week") is NOTHING
    both = Allowance.of(None, None, 2.5, "month")
    assert both is not NOTHING
    assert both == Allowance(None, None, Budget(2.5, "month"))


def test_a_budget_reads_as_its_amount_per_its_period() -> None:
    assert Budget(5.0, "day").text == "5 per day"
    assert Budget(0.25, "7 days").text == "0.25 per 7 days"
    assert Budget(12.5, "month").text == "12.5 per month"
    assert Budget(1234567.0, "month").text == "1234567 per month"
    assert Budget(0.00035, "day").text == "0.00035 per day"
