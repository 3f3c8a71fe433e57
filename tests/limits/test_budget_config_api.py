"""Budgets as configured: the gateway file's `budgets`, the management API's budget
fields, and the spend and alert-claim queries on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select

from ferryman.config.gateway import Gateway
from ferryman.config.loading import parse_gateway
from ferryman.config.settings import Settings
from ferryman.errors import ConfigError
from ferryman.limits.allowance import Budget
from ferryman.store import budgets, migrate
from ferryman.store.engine import Database, create_database
from ferryman.store.tables import budget_alerts, usage_daily
from tests.api.helpers import Client, assert_error, make_admin, running
from tests.support import Running

# -- The gateway file -------------------------------------------------------------

BASE = {
    "upstreams": {"a": {"url": "http://127.0.0.1:9"}},
    "routes": [{"path": "/", "upstream": "a"}],
}


def parsed(budgets_spec: dict[str, Any]) -> Gateway:
    return parse_gateway({**BASE, "budgets": budgets_spec}, source="gateway.yaml")


def problem(budgets_spec: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parsed(budgets_spec)
    return str(info.value)


def test_budgets_default_to_nothing_with_alerts_at_50_80_100() -> None:
    spec = parse_gateway(dict(BASE), source="gateway.yaml").budgets
    assert spec.defaults == {} and spec.webhook is None
    assert spec.alerts == (50, 80, 100)


def test_a_default_budget_is_read_with_its_period_made_canonical() -> None:
    spec = parsed(
        {
            "defaults": {"api_key": {"amount": 5, "period": " Week "},
                         "jwt": {"amount": 0.5, "period": "30 Days"}},
            "webhook": "https://hooks.example.com/budget",
            "refresh": 2,
        }
    ).budgets  # fmt: skip
    assert spec.defaults["api_key"].budget == Budget(5.0, "week")
    assert spec.defaults["jwt"].budget == Budget(0.5, "30 days")
    assert spec.webhook == "https://hooks.example.com/budget"
    assert spec.refresh == 2.0


def test_a_bad_default_period_names_the_field_and_the_choices() -> None:
    message = problem({"defaults": {"api_key": {"amount": 5, "period": "fortnight"}}})
    assert message.startswith("gateway.yaml: 1 error")
    assert "budgets.defaults.api_key.period: 'fortnight' is not a budget period" in message
    assert "day, week, month or 'N days'" in message


def test_a_default_amount_must_be_positive_and_its_kind_known() -> None:
    assert "budgets.defaults.api_key.amount" in problem(
        {"defaults": {"api_key": {"amount": 0, "period": "day"}}}
    )
    assert "budgets.defaults.robot" in problem(
        {"defaults": {"robot": {"amount": 1, "period": "day"}}}
    )


@pytest.mark.parametrize("url", ["ftp://x", "x", "http://", "file:///tmp/hook"])
def test_a_webhook_must_be_an_http_url(url: str) -> None:
    message = problem({"webhook": url})
    assert f"budgets.webhook: {url!r} is not an http(s) URL" in message


def test_alerts_are_deduplicated_and_sorted() -> None:
    assert parsed({"alerts": [100, 25, 80, 25, 150]}).budgets.alerts == (25, 80, 100, 150)


@pytest.mark.parametrize("alerts", [[0], [50, 0], [1001]])
def test_an_alert_outside_1_to_1000_percent_is_refused(alerts: list[int]) -> None:
    assert "budgets.alerts[" in problem({"alerts": alerts})


# -- The management API -------------------------------------------------------------


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[tuple[Running, Client]]:
    async with running(settings) as (gw, client):
        yield gw, client


@pytest.mark.parametrize(
    ("budget", "field"),
    [
        ({"amount": 0, "period": "day"}, "budget.amount"),
        ({"amount": -1.5, "period": "day"}, "budget.amount"),
        ({"amount": 1e13, "period": "day"}, "budget.amount"),
        ({"amount": "5", "period": "day"}, "budget.amount"),
        ({"amount": 5}, "budget.period"),
        ({"period": "day"}, "budget.amount"),
        ({"amount": 5, "period": 7}, "budget.period"),
    ],
)
async def test_a_bad_key_budget_is_a_validation_error(
    api: tuple[Running, Client], budget: dict[str, Any], field: str
) -> None:
    gw, client = api
    _, admin = await make_admin(gw, client)
    key = await client.new_key(admin)
    reply = await client.send("PATCH", f"/keys/{key['id']}", token=admin, json={"budget": budget})
    body = assert_error(reply, 422, "validation_error")
    assert body["message"].startswith(f"{field}: ")
    # Nothing changed.
    _, got = await client.call("GET", f"/keys/{key['id']}", token=admin, expect=200)
    assert got["budget"] is None


async def test_an_unknown_period_is_refused_with_the_period_message(
    api: tuple[Running, Client],
) -> None:
    gw, client = api
    _, admin = await make_admin(gw, client)
    key = await client.new_key(admin)
    reply = await client.send(
        "PATCH", f"/keys/{key['id']}", token=admin,
        json={"budget": {"amount": 5, "period": "fortnight"}},
    )  # fmt: skip
    body = assert_error(reply, 422, "validation_error")
    assert body["message"].startswith("budget.period: ")
    assert "'fortnight' is not a budget period" in body["message"]
    assert "day, week, month or 'N days'" in body["message"]


async def test_a_keys_budget_round_trips_canonical_and_null_removes_it(
    api: tuple[Running, Client],
) -> None:
    gw, client = api
    _, admin = await make_admin(gw, client)
    key = await client.new_key(admin)
    _, patched = await client.call(
        "PATCH", f"/keys/{key['id']}", token=admin, expect=200,
        json={"budget": {"amount": 5, "period": " 7 Days "}, "tpm": 1000},
    )  # fmt: skip
    assert patched["budget"] == {"amount": 5.0, "period": "7 days"}
    assert patched["tpm"] == 1000
    _, got = await client.call("GET", f"/keys/{key['id']}", token=admin, expect=200)
    assert got["budget"] == {"amount": 5.0, "period": "7 days"} and got["tpm"] == 1000
    # A patch without `budget` leaves it alone.
    _, renamed = await client.call(
        "PATCH", f"/keys/{key['id']}", token=admin, json={"name": "renamed"}, expect=200
    )
    assert renamed["budget"] == {"amount": 5.0, "period": "7 days"}
    _, cleared = await client.call(
        "PATCH", f"/keys/{key['id']}", token=admin, json={"budget": None}, expect=200
    )
    assert cleared["budget"] is None and cleared["tpm"] == 1000
    _, got = await client.call("GET", f"/keys/{key['id']}", token=admin, expect=200)
    assert got["budget"] is None


async def test_an_accounts_budget_round_trips_and_its_keys_show_their_own(
    api: tuple[Running, Client],
) -> None:
    gw, client = api
    _, admin = await make_admin(gw, client)
    user, token = await client.user("ann")
    key = await client.new_key(token)
    _, changed = await client.call(
        "PATCH", f"/admin/users/{user['id']}", token=admin, expect=200,
        json={"budget": {"amount": 12.5, "period": "Month"}, "tpm": 5000},
    )  # fmt: skip
    assert changed["budget"] == {"amount": 12.5, "period": "month"}
    assert changed["tpm"] == 5000
    _, page = await client.call("GET", "/admin/users", token=admin, expect=200)
    listed = {u["id"]: u for u in page["items"]}
    assert listed[user["id"]]["budget"] == {"amount": 12.5, "period": "month"}
    assert listed[user["id"]]["tpm"] == 5000
    # The account's budget is not the key's.
    _, got = await client.call("GET", f"/keys/{key['id']}", token=token, expect=200)
    assert got["budget"] is None
    await client.call("PATCH", f"/keys/{key['id']}", token=admin, expect=200,
                      json={"budget": {"amount": 1, "period": "day"}})  # fmt: skip
    _, got = await client.call("GET", f"/keys/{key['id']}", token=token, expect=200)
    assert got["budget"] == {"amount": 1.0, "period": "day"}
    # Clearing the account's budget leaves the key's.
    _, cleared = await client.call(
        "PATCH", f"/admin/users/{user['id']}", token=admin, json={"budget": None}, expect=200
    )
    assert cleared["budget"] is None and cleared["tpm"] == 5000
    _, page = await client.call("GET", "/admin/users", token=admin, expect=200)
    assert {u["id"]: u for u in page["items"]}[user["id"]]["budget"] is None
    _, got = await client.call("GET", f"/keys/{key['id']}", token=token, expect=200)
    assert got["budget"] == {"amount": 1.0, "period": "day"}


async def test_a_bad_account_budget_is_a_validation_error(api: tuple[Running, Client]) -> None:
    gw, client = api
    _, admin = await make_admin(gw, client)
    user = await client.register("bob")
    reply = await client.send(
        "PATCH", f"/admin/users/{user['id']}", token=admin,
        json={"budget": {"amount": 5, "period": "367 days"}},
    )  # fmt: skip
    body = assert_error(reply, 422, "validation_error")
    assert body["message"].startswith("budget.period: ")


@pytest.mark.parametrize(
    "patch",
    [
        {"tpm": 100},
        {"tpm": None},
        {"budget": {"amount": 5, "period": "day"}},
        {"budget": None},
        {"name": "mine", "budget": {"amount": 5, "period": "day"}},
    ],
)
async def test_only_admins_set_a_keys_caps(
    api: tuple[Running, Client], patch: dict[str, Any]
) -> None:
    _, client = api
    _, token = await client.user("cyd")
    key = await client.new_key(token, name="orig")
    reply = await client.send("PATCH", f"/keys/{key['id']}", token=token, json=patch)
    assert_error(reply, 403, "admin_required")
    _, got = await client.call("GET", f"/keys/{key['id']}", token=token, expect=200)
    assert got["name"] == "orig" and got["budget"] is None and got["tpm"] is None
    # Their own key's name is still theirs to change.
    await client.call("PATCH", f"/keys/{key['id']}", token=token, json={"name": "n"}, expect=200)


# -- The queries, on both databases -----------------------------------------------

TODAY = date(2027, 5, 12)
NOW = datetime(2027, 5, 12, 9, 30, tzinfo=UTC)


@pytest.fixture
async def db(db_settings: Settings) -> AsyncIterator[Database]:
    database = create_database(db_settings)
    await migrate.upgrade(database)
    yield database
    await database.dispose()


def usage(user: str, credential: str, day: date, cost: float, model: str = "m") -> dict[str, Any]:
    return {
        "day": day, "user_id": user, "credential_id": credential, "upstream_key_id": "",
        "model": model, "requests": 1, "errors": 0, "prompt_tokens": 0,
        "completion_tokens": 0, "cost": cost, "cost_unknown": 0,
    }  # fmt: skip


async def test_spend_sums_each_subjects_cost_from_the_start_day(db: Database) -> None:
    start = TODAY - timedelta(days=3)
    async with db.engine.begin() as conn:
        await conn.execute(
            insert(usage_daily),
            [
                usage("u1", "k1", TODAY, 1.0),
                usage("u1", "k1", TODAY, 0.25, model="other"),
                usage("u1", "k1", start, 2.0),  # the first day counted
                usage("u1", "k1", start - timedelta(days=1), 40.0),  # a day too old
                usage("u1", "k2", TODAY - timedelta(days=1), 0.5),
                usage("u2", "k3", TODAY, 8.0),
                usage("u2", "k4", start - timedelta(days=30), 16.0),
            ],
        )
    by_key = await budgets.spend(db, "credential", ["k1", "k2", "k4", "missing"], start)
    assert by_key == pytest.approx({"k1": 3.25, "k2": 0.5})
    assert await budgets.spend(db, "credential", ["k1"], TODAY) == pytest.approx({"k1": 1.25})
    # An account's spend is the sum over its credentials.
    assert await budgets.spend(db, "user", ["u1"], start) == pytest.approx({"u1": 3.75})
    by_user = await budgets.spend(db, "user", ["u1", "u2"], start)
    assert by_user == pytest.approx({"u1": 3.75, "u2": 8.0})
    assert await budgets.spend(db, "user", ["u1"], TODAY + timedelta(days=1)) == {}
    assert await budgets.spend(db, "credential", [], start) == {}
    assert all(isinstance(v, float) for v in by_user.values())


async def test_an_alert_is_claimed_once_per_scope_subject_window_and_threshold(
    db: Database,
) -> None:
    async def claim(
        scope: budgets.Scope = "credential",
        subject: str = "k1",
        window: date = TODAY,
        threshold: int = 50,
        spent: float = 2.5,
        budget: float = 5.0,
    ) -> bool:
        return await budgets.claim_alert(
            db, scope=scope, subject_id=subject, window_start=window, threshold=threshold,
            spent=spent, budget=budget, now=NOW,
        )  # fmt: skip

    assert await claim() is True
    assert await claim() is False
    assert await claim(spent=4.0) is False  # another spend is still the same alert
    assert await claim(threshold=80) is True
    assert await claim(subject="k2") is True
    assert await claim(scope="user") is True
    assert await claim(window=TODAY + timedelta(days=1)) is True
    assert await claim(threshold=80) is False
    # A budget raised mid-window announces its own thresholds.
    assert await claim(budget=10.0) is True
    assert await claim(budget=10.0) is False
    async with db.engine.connect() as conn:
        rows = [dict(r._mapping) for r in await conn.execute(select(budget_alerts))]
    assert len(rows) == 6
    first = next(
        r for r in rows
        if (r["scope"], r["subject_id"], r["window_start"], r["threshold"])
        == ("credential", "k1", TODAY, 50)
    )  # fmt: skip
    assert first["spend"] == 2.5 and first["budget"] == 5.0
    assert first["created_at"] == NOW
