"""One client key's page: its details, its last 30 days, its budget so far this period;
its owner renames it and sets its scopes, admins also set its caps (requests and tokens
a minute, budget). Every change goes through `manage.keys`, as the API's PATCH does,
and the caps are read by the API's own schema, so the page and the API accept and
refuse the same values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from pydantic import ValidationError

from ferryman.api.schemas import AllowancePatch
from ferryman.auth.api_keys import SCOPES
from ferryman.console.render import page, redirect
from ferryman.console.session import Visitor, auth_of, check_csrf, form, visitor
from ferryman.errors import BadRequest, GatewayError
from ferryman.limits.allowance import CALENDAR, Budget, money
from ferryman.manage import keys
from ferryman.manage.caller import Caller
from ferryman.store import budgets, stats, users
from ferryman.store.api_keys import ApiKey
from ferryman.store.stats import Filters

#: Days of usage the page sums.
USAGE_DAYS = 30


async def show(request: Request, key_id: str) -> Response:
    who = await visitor(request)
    if who is None:
        return redirect(request, "/login")
    return await page_of(request, who, key_id, saved=request.query_params.get("saved", ""))


async def act(request: Request, who: Visitor, key_id: str, action: str) -> Response:
    """`scopes` or `limits`, posted from the key's page (CSRF checked by the caller)."""
    auth = auth_of(request)
    caller = Caller(who.identity, "session")
    try:
        fields = await form(request)
        check_csrf(fields.get("csrf"), who.csrf)
        if action == "scopes":
            chosen = tuple(s for s in SCOPES if fields.get("scope_" + s))
            if not chosen:
                raise BadRequest("a key needs at least one scope", code="invalid_scope")
            await keys.change(auth, caller, key_id, scopes=chosen)
        else:
            await keys.change(auth, caller, key_id, caps=_caps(fields))
    except GatewayError as error:
        return await page_of(request, who, key_id, error=error)
    return redirect(request, f"/keys/{key_id}?saved={action}")


def _caps(fields: dict[str, str]) -> dict[str, object]:
    """The caps form as the API's patch: a blank field returns to the default."""
    amount = fields.get("budget_amount", "").strip()
    period = fields.get("budget_period", "").strip()
    if period == "days":
        period = fields.get("budget_days", "").strip() + " days"
    raw: dict[str, Any] = {
        "rpm": _number(fields, "rpm", int),
        "tpm": _number(fields, "tpm", int),
        "budget": None if not amount else {"amount": _number(fields, "budget_amount", float),
                                           "period": period},
    }  # fmt: skip
    try:
        return AllowancePatch.model_validate(raw).caps()
    except ValidationError as invalid:
        first = invalid.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise BadRequest(f"{where}: {first['msg']}", code="invalid_limit") from None


def _number(fields: dict[str, str], name: str, kind: type[int] | type[float]) -> Any:
    text = fields.get(name, "").strip().replace(",", "").replace("_", "")
    if not text:
        return None
    try:
        return kind(text)
    except ValueError:
        raise BadRequest(f"{name}: {text!r} is not a number", code="invalid_limit") from None


async def page_of(
    request: Request,
    who: Visitor,
    key_id: str,
    *,
    error: GatewayError | None = None,
    saved: str = "",
) -> Response:
    auth = auth_of(request)
    caller = Caller(who.identity, "session")
    try:
        key = await keys.find(auth, caller, key_id)
    except GatewayError as missing:
        return page(request, "error.html", missing.status, who=who.identity, csrf=who.csrf,
                    error=missing)  # fmt: skip
    owner = await users.get(auth.db, key.user_id) if key.user_id != who.identity.user_id else None
    today = datetime.now(UTC).date()
    start = today - timedelta(days=USAGE_DAYS - 1)
    usage, models = await stats.summary(auth.db, Filters(None, start, today, credential_id=key.id))
    budget, default_budget = _budget(request, key)
    spent: float | None = None
    renews: datetime | None = None
    if budget is not None:
        since, renews = budget.window(today)
        spent = (await budgets.spend(auth.db, "credential", [key.id], since)).get(key.id, 0.0)
    status = 200 if error is None else error.status
    return page(
        request, "key.html", status, who=who.identity, csrf=who.csrf, current="keys",
        key=key, state=keys.state(key, datetime.now(UTC)), owner=owner, scopes=SCOPES,
        error=error, saved=saved,
        usage=usage, models=models[:5], days=USAGE_DAYS, budget=budget,
        default_budget=default_budget, spent=spent, renews=renews, money=money,
        defaults=_defaults(request), calendar=CALENDAR,
    )  # fmt: skip


def _budget(request: Request, key: ApiKey) -> tuple[Budget | None, bool]:
    """The budget the key's requests count against, and whether it is the default."""
    own = key.allowance.budget
    if own is not None:
        return own, False
    gateway = getattr(request.app.state, "gateway", None)
    rule = gateway.budgets.defaults.get("api_key") if gateway is not None else None
    return (rule.budget, True) if rule is not None else (None, False)


def _defaults(request: Request) -> dict[str, str]:
    """What a key without caps of its own gets, as the gateway file says."""
    gateway = getattr(request.app.state, "gateway", None)
    if gateway is None:
        return {}
    out = {}
    rate = gateway.limiter.defaults.get("api_key")
    if rate:
        out["rpm"] = rate
    tokens = gateway.limiter.token_defaults.get("api_key")
    if tokens:
        out["tpm"] = f"{tokens:,} tokens a minute"
    return out
