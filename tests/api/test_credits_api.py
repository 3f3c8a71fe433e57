"""Credits (seed 002, next phase): top-ups, priced passes, refunds, and purchases that
race for one balance, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from ferryman.config.settings import Settings
from ferryman.store import passes
from tests.api.helpers import assert_error, auth_of, make_admin, running

PRICES = "1:0.50,12:4,24:7.25"


def priced(factory: Callable[..., Settings], **extra: Any) -> Settings:
    return factory(access_pass_prices=PRICES, **extra)


async def test_top_ups_purchases_and_the_ledger(settings_factory: Callable[..., Settings]) -> None:
    async with running(priced(settings_factory)) as (gw, client):
        _, admin = await make_admin(gw, client)
        user, token = await client.user("buyer")
        assert (await client.call("GET", "/credits", token=token))[1]["balance"] == 0
        short = await client.call(
            "POST", "/tokens/purchase", token=token, json={"duration_hours": 1}
        )
        body = assert_error(short, 402, "insufficient_balance")
        assert "costs 0.50" in body["message"] and "balance is 0.00" in body["message"]
        assert (await client.call("GET", "/tokens/my-tokens", token=token))[1] == []

        status, topped = await client.call(
            "POST",
            "/credits/top-up",
            token=admin,
            json={"user_id": user["id"], "amount": "10.25", "note": "welcome"},
        )
        assert status == 201 and topped["balance"] == 10.25
        for hours in (24, 1):
            await client.call(
                "POST", "/tokens/purchase", token=token, json={"duration_hours": hours},
                expect=201,
            )  # fmt: skip
        status, view = await client.call("GET", "/credits", token=token)
        assert view["balance"] == 2.5
        assert [(m["kind"], m["amount"]) for m in view["movements"]] == [
            ("purchase", -0.5),
            ("purchase", -7.25),
            ("topup", 10.25),
        ]
        assert view["movements"][2]["note"] == "welcome"
        # A duration without a price costs nothing, but is still on the ledger.
        await client.call(
            "POST", "/tokens/purchase", token=token, json={"duration_hours": 168}, expect=201
        )
        view = (await client.call("GET", "/credits", token=token))[1]
        assert view["balance"] == 2.5 and view["movements"][0]["amount"] == 0


async def test_purchases_never_overdraw(settings_factory: Callable[..., Settings]) -> None:
    async with running(priced(settings_factory)) as (gw, client):
        _, admin = await make_admin(gw, client)
        user, token = await client.user("buyer")
        await client.call(
            "POST", "/credits/top-up", token=admin, json={"user_id": user["id"], "amount": 10},
            expect=201,
        )  # fmt: skip
        first = await client.call("POST", "/tokens/purchase", token=token,
                                  json={"duration_hours": 24})  # fmt: skip
        second = await client.call("POST", "/tokens/purchase", token=token,
                                   json={"duration_hours": 12})  # fmt: skip
        assert first[0] == 201
        assert_error(second, 402, "insufficient_balance")  # 2.75 left, 4 needed
        view = (await client.call("GET", "/credits", token=token))[1]
        assert view["balance"] == 2.75
        assert [m["kind"] for m in view["movements"]] == ["purchase", "topup"]


async def test_admin_only_top_ups_with_sane_amounts(
    settings_factory: Callable[..., Settings],
) -> None:
    async with running(priced(settings_factory)) as (gw, client):
        _, admin = await make_admin(gw, client)
        user, token = await client.user("someone")
        assert_error(
            await client.call("POST", "/credits/top-up", token=token,
                              json={"user_id": user["id"], "amount": 5}),
            403, "admin_required",
        )  # fmt: skip
        for amount in (0, -5, "ten", "1.0000001"):
            assert_error(
                await client.call("POST", "/credits/top-up", token=admin,
                                  json={"user_id": user["id"], "amount": amount}),
                422, "validation_error",
            )  # fmt: skip
        assert_error(
            await client.call("POST", "/credits/top-up", token=admin,
                              json={"user_id": "no-such-user", "amount": 5}),
            404, "user_not_found",
        )  # fmt: skip
        assert_error(
            await client.call("GET", f"/credits?user_id={user['id']}x", token=token),
            403, "admin_required",
        )  # fmt: skip
        assert (await client.call("GET", f"/credits?user_id={user['id']}", token=admin))[0] == 200


async def test_a_balance_has_a_ceiling_and_amounts_keep_to_the_micro_unit(
    settings_factory: Callable[..., Settings],
) -> None:
    async with running(priced(settings_factory)) as (gw, client):
        _, admin = await make_admin(gw, client)
        user, _ = await client.user("rich")
        top = "/credits/top-up"
        largest = {"user_id": user["id"], "amount": "999999999999.999999"}
        # Ten of the largest top-ups once summed past a 64-bit integer (a 500 on SQLite).
        await client.call("POST", top, token=admin, json=largest, expect=201)
        assert_error(
            await client.call("POST", top, token=admin, json=largest), 409, "balance_limit"
        )
        view = (await client.call("GET", f"/credits?user_id={user['id']}", token=admin))[1]
        assert view["balance"] == 999999999999.999999 and len(view["movements"]) == 1
        # A JSON number is taken to the micro-unit; a string is exact or refused.
        other, _ = await client.user("exact")
        _, body = await client.call("POST", top, token=admin,
                                    json={"user_id": other["id"], "amount": 0.1234565},
                                    expect=201)  # fmt: skip
        assert body["balance"] == 0.123456
        for amount in ("1e3", " 5", "5.", True):
            assert_error(
                await client.call("POST", top, token=admin,
                                  json={"user_id": other["id"], "amount": amount}),
                422, "validation_error",
            )  # fmt: skip
        infinite = b'{"user_id": "%s", "amount": 1e999}' % other["id"].encode()
        assert_error(
            await client.call("POST", top, token=admin, data=infinite,
                              headers={"Content-Type": "application/json"}),
            422, "validation_error",
        )  # fmt: skip


async def test_refunds_once_and_only_for_passes_never_used(
    settings_factory: Callable[..., Settings],
) -> None:
    async with running(priced(settings_factory)) as (gw, client):
        _, admin = await make_admin(gw, client)
        user, token = await client.user("buyer")
        await client.call("POST", "/credits/top-up", token=admin,
                          json={"user_id": user["id"], "amount": 20}, expect=201)  # fmt: skip
        bought = [
            (await client.call("POST", "/tokens/purchase", token=token,
                               json={"duration_hours": 12}, expect=201))[1]
            for _ in range(3)
        ]  # fmt: skip
        unused, used, revoked = (b["id"] for b in bought)
        status, refund = await client.call("POST", f"/tokens/{unused}/refund", token=token)
        assert status == 200 and refund == {"token_id": unused, "refunded": 4.0, "balance": 12.0}
        status_view = (await client.call("GET", f"/tokens/{unused}/status", token=token))[1]
        assert status_view["status"] == "revoked"
        assert_error(
            await client.call("POST", f"/tokens/{unused}/refund", token=token),
            409, "pass_revoked",
        )  # fmt: skip
        await passes.activate(auth_of(gw).db, used, auth_of(gw).clock.now())
        assert_error(
            await client.call("POST", f"/tokens/{used}/refund", token=token),
            409, "pass_activated",
        )  # fmt: skip
        await client.call("POST", f"/tokens/{revoked}/revoke", token=token, expect=200)
        assert_error(
            await client.call("POST", f"/tokens/{revoked}/refund", token=token),
            409, "pass_revoked",
        )  # fmt: skip
        _, other = await client.user("stranger")
        assert_error(
            await client.call("POST", f"/tokens/{used}/refund", token=other),
            404, "token_not_found",
        )  # fmt: skip
        assert (await client.call("GET", "/credits", token=token))[1]["balance"] == 12.0


async def test_fifty_concurrent_purchases_against_a_balance_for_ten(
    db_settings: Settings,
) -> None:
    settings = db_settings.model_copy(
        update={"access_pass_prices": priced_prices(), "database_pool_size": 20}
    )
    async with running(settings) as (gw, client):
        _, admin = await make_admin(gw, client)
        user, token = await client.user("racer")
        await client.call("POST", "/credits/top-up", token=admin,
                          json={"user_id": user["id"], "amount": 5}, expect=201)  # fmt: skip
        replies = await asyncio.gather(
            *(
                client.call("POST", "/tokens/purchase", token=token, json={"duration_hours": 1})
                for _ in range(50)
            )
        )
        statuses = [status for status, _ in replies]
        assert statuses.count(201) == 10, statuses
        assert statuses.count(402) == 40, statuses
        view = (await client.call("GET", "/credits?limit=1000", token=token))[1]
        assert view["balance"] == 0
        assert len(view["movements"]) == 11
        mine = (await client.call("GET", "/tokens/my-tokens", token=token))[1]
        assert len(mine) == 10


def priced_prices() -> dict[int, Any]:
    from decimal import Decimal

    return {1: Decimal("0.50"), 12: Decimal(4), 24: Decimal("7.25")}
