"""What a credential or an account may use: requests and tokens a minute, and a budget.

Set per client key and per user through the management API (admins); a credential
without its own takes the default for its kind from the gateway file.

A budget is an amount in the price table's currency per period: a calendar `day`,
`week` (from Monday) or `month`, or a rolling `N days` (today and the N-1 days
before). Periods are UTC days, the days of the usage aggregates they are summed from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

_ROLLING = re.compile(r"^\s*(?P<n>\d+)\s*days?\s*$")
CALENDAR = ("day", "week", "month")
MAX_ROLLING_DAYS = 366


def check_period(text: str) -> str:
    """The period in its canonical spelling, or ValueError saying what is expected."""
    value = text.strip().lower()
    if value in CALENDAR:
        return value
    match = _ROLLING.match(value)
    if match is not None:
        days = int(match["n"])
        if 1 <= days <= MAX_ROLLING_DAYS:
            return "1 day" if days == 1 else f"{days} days"
    raise ValueError(
        f"{text!r} is not a budget period: day, week, month or 'N days' "
        f"(rolling, N from 1 to {MAX_ROLLING_DAYS})"
    )


def money(amount: float) -> str:
    """An amount as people write it: no exponent, no trailing zeros (8 places at most)."""
    return f"{amount:.8f}".rstrip("0").rstrip(".") or "0"


@dataclass(frozen=True, slots=True)
class Budget:
    amount: float
    period: str
    """`day`, `week`, `month` or `N days` (see `check_period`)."""

    def window(self, today: date) -> tuple[date, datetime]:
        """The first day counted on `today`, and when the spend next lessens (the next
        period starts, or for a rolling window, the oldest day drops out)."""
        period = self.period
        if period == "day":
            start, renews = today, today + timedelta(days=1)
        elif period == "week":
            start = today - timedelta(days=today.weekday())
            renews = start + timedelta(days=7)
        elif period == "month":
            start = today.replace(day=1)
            renews = (start + timedelta(days=32)).replace(day=1)
        else:
            days = int(period.split()[0])
            start, renews = today - timedelta(days=days - 1), today + timedelta(days=1)
        return start, datetime.combine(renews, time(), tzinfo=UTC)

    @property
    def text(self) -> str:
        return f"{money(self.amount)} per {self.period}"


@dataclass(frozen=True, slots=True)
class Allowance:
    rpm: int | None = None
    """Requests a minute."""
    tpm: int | None = None
    """Tokens a minute on LLM routes (prompt and completion, as the upstream counts)."""
    budget: Budget | None = None

    @classmethod
    def of(
        cls,
        rpm: int | None,
        tpm: int | None,
        budget_amount: float | None,
        budget_period: str | None,
    ) -> Allowance:
        budget = (
            Budget(budget_amount, budget_period)
            if budget_amount is not None and budget_period is not None
            else None
        )
        if rpm is None and tpm is None and budget is None:
            return NOTHING
        return cls(rpm, tpm, budget)


#: No allowance of its own.
NOTHING = Allowance()
