"""What the management API returns (secrets only at creation, then masked)."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Generic, TypeVar

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import PydanticCustomError

from ferryman.limits.allowance import MAX_ROLLING_DAYS, Allowance, check_period
from ferryman.store.api_keys import ApiKey
from ferryman.store.passes import AccessPass
from ferryman.store.sessions import Session
from ferryman.store.users import User

T = TypeVar("T")

#: Bounds of paging parameters: far beyond any real listing, far within a 64-bit
#: integer (an unbounded offset reached SQLite as an OverflowError, a 500).
MAX_OFFSET = 1_000_000_000
MAX_PAGE = 1_000_000


def _whole(value: object) -> object:
    """JSON Schema counts 2.0 as an integer: take it as 2 (2.5, "2" and true stay
    refused)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


#: Last in `Annotated[int, Strict(), Field(ge=.., le=..), WHOLE]`: an integer as JSON
#: Schema means it, a number with no fractional part and nothing else. (Placed before
#: the bounds, pydantic could no longer show them as minimum and maximum.)
WHOLE = BeforeValidator(_whole)

_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def _iso_day(value: object) -> object:
    if isinstance(value, str) and _ISO_DAY.fullmatch(value):
        return value
    raise PydanticCustomError("date_format", "a date as YYYY-MM-DD")


#: A day as `YYYY-MM-DD` only (pydantic alone also takes `0` as 1970-01-01).
IsoDate = Annotated[date, BeforeValidator(_iso_day)]


def _text(value: object) -> object:
    if isinstance(value, str):
        return value
    raise PydanticCustomError("datetime_format", "a date and time as ISO 8601 text")


#: A timestamp as ISO 8601 text with its offset (pydantic alone also takes a number
#: of seconds, which the document does not promise).
IsoDateTime = Annotated[AwareDatetime, BeforeValidator(_text)]


def _any_case(word: str) -> str:
    return "".join(f"[{c.upper()}{c.lower()}]" for c in word)


#: The periods `check_period` takes (JSON Schema patterns have no case flag).
PERIOD_PATTERN = (
    rf"^\s*({_any_case('day')}|{_any_case('week')}|{_any_case('month')}|"
    rf"0*(36[0-6]|3[0-5][0-9]|[12][0-9]{{2}}|[1-9][0-9]?)\s*{_any_case('day')}[Ss]?)\s*$"
)
assert MAX_ROLLING_DAYS == 366  # PERIOD_PATTERN spells it out


class BudgetIO(BaseModel):
    """A spending limit in the price table's currency."""

    model_config = ConfigDict(strict=True)

    amount: Annotated[float, Field(gt=0, le=1e12)]
    period: Annotated[str, WithJsonSchema({"type": "string", "pattern": PERIOD_PATTERN})]
    """`day`, `week` (from Monday), `month` (calendar, UTC) or `N days` (rolling)."""

    @field_validator("period")
    @classmethod
    def _period(cls, value: str) -> str:
        return check_period(value)


class AllowancePatch(BaseModel):
    """Caps an admin sets on a key or an account; null removes one."""

    model_config = ConfigDict(strict=True)

    rpm: Annotated[int, Strict(), Field(ge=1, le=1_000_000), WHOLE] | None = None
    """Requests a minute; null returns it to the default."""
    tpm: Annotated[int, Strict(), Field(ge=1, le=1_000_000_000), WHOLE] | None = None
    """Tokens a minute on LLM routes; null returns it to the default."""
    budget: BudgetIO | None = None
    """Spending per period on LLM routes; null returns it to the default."""

    def caps(self) -> dict[str, object]:
        """The allowance columns this patch sets."""
        given = self.model_fields_set
        values: dict[str, object] = {}
        if "rpm" in given:
            values["rpm"] = self.rpm
        if "tpm" in given:
            values["tpm"] = self.tpm
        if "budget" in given:
            budget = self.budget
            values["budget_amount"] = budget.amount if budget else None
            values["budget_period"] = budget.period if budget else None
        return values


def _budget_out(allowance: Allowance) -> BudgetIO | None:
    budget = allowance.budget
    return None if budget is None else BudgetIO(amount=budget.amount, period=budget.period)


class UserOut(BaseModel):
    id: str
    username: str
    email: str | None
    full_name: str | None
    role: str
    permissions: list[str]
    is_active: bool
    created_at: datetime
    rpm: int | None = None
    tpm: int | None = None
    budget: BudgetIO | None = None

    @classmethod
    def of(cls, user: User) -> UserOut:
        return cls(
            id=user.id,
            username=user.username,
            email=user.email,
            full_name=user.full_name,
            role=user.role,
            permissions=list(user.permissions),
            is_active=user.is_active,
            created_at=user.created_at,
            rpm=user.rpm,
            tpm=user.tpm,
            budget=_budget_out(user.allowance),
        )


class KeyOut(BaseModel):
    id: str
    user_id: str
    name: str
    prefix: str
    last4: str
    masked: str
    scopes: list[str]
    is_active: bool
    expires_at: datetime | None
    revoked_at: datetime | None
    created_at: datetime
    last_used_at: datetime | None
    rpm: int | None = None
    tpm: int | None = None
    budget: BudgetIO | None = None

    @classmethod
    def of(cls, key: ApiKey) -> KeyOut:
        return cls(
            id=key.id,
            user_id=key.user_id,
            name=key.name,
            prefix=key.prefix,
            last4=key.last4,
            masked=key.masked,
            scopes=list(key.scopes),
            is_active=key.is_active,
            expires_at=key.expires_at,
            revoked_at=key.revoked_at,
            created_at=key.created_at,
            last_used_at=key.last_used_at,
            rpm=key.rpm,
            tpm=key.tpm,
            budget=_budget_out(key.allowance),
        )


class NewKeyOut(KeyOut):
    key: str
    """The key itself: shown in this response only."""


class PassOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    id: str
    token_id: str
    user_id: str
    duration_hours: int
    status: str
    is_active: bool
    activated_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, record: AccessPass, now: datetime) -> PassOut:
        state = record.state(now)
        return cls(
            id=record.id,
            token_id=record.id,
            user_id=record.user_id,
            duration_hours=record.duration_hours,
            status=state,
            is_active=state in ("active", "not_activated"),
            activated_at=record.activated_at,
            expires_at=record.expires_at,
            revoked_at=record.revoked_at,
            created_at=record.created_at,
        )


class NewPassOut(PassOut):
    token: str
    """The access token itself: shown in this response only."""


class PassStatusOut(BaseModel):
    token_id: str
    status: str
    is_active: bool
    duration_hours: int
    activated_at: datetime | None
    expires_at: datetime | None
    time_remaining_seconds: int | None


class SessionOut(BaseModel):
    id: str
    user_id: str
    created_at: datetime
    expires_at: datetime
    last_seen_at: datetime
    revoked_at: datetime | None
    user_agent: str | None
    client_ip: str | None

    @classmethod
    def of(cls, session: Session) -> SessionOut:
        return cls(
            id=session.id,
            user_id=session.user_id,
            created_at=session.created_at,
            expires_at=session.expires_at,
            last_seen_at=session.last_seen_at,
            revoked_at=session.revoked_at,
            user_agent=session.user_agent,
            client_ip=session.client_ip,
        )


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
