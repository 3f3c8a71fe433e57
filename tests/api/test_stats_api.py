"""The stats API over the daily aggregates: who sees what, filters, pages, CSV."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest

from ferryman.config.settings import Settings
from ferryman.store import usage
from ferryman.store.usage import UsageRow
from tests.api.helpers import assert_error, auth_of, make_admin, running

START = datetime(2026, 11, 1, 12, tzinfo=UTC)


def record(n: int, user: str, key: str, model: str, day: int, cost: float = 0.01) -> UsageRow:
    return UsageRow(
        id=f"{n:032x}", at=(START + timedelta(days=day)).timestamp(), route="llm", user_id=user,
        credential_id=key, upstream="openrouter", upstream_key_id="pool-1", model=model,
        status=200 if n % 5 else 500, duration_ms=10.0, ttfb_ms=2.0, upstream_ms=9.0,
        bytes_in=100, bytes_out=300, prompt_tokens=10, completion_tokens=5, total_tokens=15,
        cost=cost, correlation_id=f"c{n}",
    )  # fmt: skip


async def test_users_see_their_own_usage_and_admins_everyones(settings: Settings) -> None:
    async with running(settings) as (gw, client):
        _, admin = await make_admin(gw, client)
        ann, ann_token = await client.user("ann")
        bob, _ = await client.user("bob")
        ann_key = await client.new_key(ann_token, scopes=["stats:read"])
        proxy_key = await client.new_key(ann_token, name="proxy-only")
        rows = [
            record(n, ann["id"], ann_key["id"], "m-a" if n % 2 else "m-b", day=n % 3)
            for n in range(1, 31)
        ] + [record(100 + n, bob["id"], "bob-key", "m-c", day=0) for n in range(5)]
        await usage.write(auth_of(gw).db, rows)

        status, mine = await client.call("GET", "/stats", token=ann_token)
        assert status == 200
        assert mine["summary"] == {
            "total_requests": 30,
            "total_errors": 6,
            "total_tokens_input": 300,
            "total_tokens_output": 150,
            "total_cost": pytest.approx(0.3),
        }
        assert {m["model"]: m["requests"] for m in mine["by_model"]} == {"m-a": 15, "m-b": 15}
        everyone = (await client.call("GET", "/stats", token=admin))[1]
        assert everyone["summary"]["total_requests"] == 35
        just_bob = (await client.call("GET", f"/stats?user_id={bob['id']}", token=admin))[1]
        assert just_bob["summary"]["total_requests"] == 5
        assert_error(
            await client.call("GET", f"/stats?user_id={bob['id']}", token=ann_token),
            403, "admin_required",
        )  # fmt: skip

        # A client key with stats:read reads its owner's stats; without it, 403.
        status, via_key = await client.call("GET", "/stats", token=ann_key["key"])
        assert status == 200 and via_key["summary"]["total_requests"] == 30
        assert_error(
            await client.call("GET", "/stats", token=proxy_key["key"]), 403, "insufficient_scope"
        )
        assert_error(await client.call("GET", "/stats"), 401, "missing_credential")

        day_one = (START + timedelta(days=1)).date().isoformat()
        ranged = (await client.call(
            "GET", f"/stats?start_date={day_one}&end_date={day_one}", token=ann_token
        ))[1]  # fmt: skip
        assert ranged["summary"]["total_requests"] == 10
        assert_error(
            await client.call("GET", "/stats?start_date=2026-12-01&end_date=2026-11-01",
                              token=ann_token),
            400, "invalid_date_range",
        )  # fmt: skip

        page = (await client.call("GET", "/usage?limit=4&page=1", token=ann_token))[1]
        assert page["pagination"] == {"page": 1, "limit": 4, "total": 6, "pages": 2}
        assert [i["date"] for i in page["items"]][:2] == ["2026-11-03", "2026-11-03"]
        last = (await client.call("GET", "/usage?limit=4&page=2", token=ann_token))[1]
        assert len(last["items"]) == 2
        only_a = (await client.call("GET", "/usage?model=m-a", token=ann_token))[1]
        assert {i["model"] for i in only_a["items"]} == {"m-a"}
        assert_error(await client.call("GET", "/usage?limit=0", token=ann_token), 422,
                     "validation_error")  # fmt: skip

        keys = (await client.call("GET", "/stats/keys", token=ann_token))[1]
        assert keys == [
            {"id": ann_key["id"], "requests": 30, "errors": 6, "tokens_input": 300,
             "tokens_output": 150, "cost": keys[0]["cost"]}
        ]  # fmt: skip
        pool = (await client.call("GET", "/stats/upstream-keys", token=admin))[1]
        assert pool[0]["id"] == "pool-1" and pool[0]["requests"] == 35

        reply = await client.send("GET", "/usage.csv", token=ann_token)
        assert reply.status == 200 and reply.headers["Content-Type"].startswith("text/csv")
        table = list(csv.reader(io.StringIO(reply.text)))
        assert table[0] == [
            "date", "model", "requests", "errors", "tokens_input", "tokens_output", "cost"
        ]  # fmt: skip
        assert len(table) == 7 and sum(int(r[2]) for r in table[1:]) == 30
