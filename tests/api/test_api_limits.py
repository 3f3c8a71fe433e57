"""The management API's own limits: login and registration attempts per IP (5 a minute),
stats API calls per credential (100 an hour), counted by the gateway's limiter."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from ferryman.config.loading import load_settings
from ferryman.config.settings import Settings
from ferryman.errors import ConfigError
from tests.api.helpers import NOWHERE, Client, Reply, assert_error, real_now_clock, running
from tests.support import PASSWORD, client_session, gateway_dict, serve_app

#: The shipped defaults, read from the settings model so these tests exercise them.
AUTH_DEFAULT = Settings.model_fields["auth_rate_limit"].default
STATS_DEFAULT = Settings.model_fields["stats_rate_limit"].default
STATS_PATHS = ["/stats", "/stats/keys", "/stats/upstream-keys", "/usage", "/usage.csv"]


def from_ip(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


def limit_headers(reply: Reply) -> tuple[str, str, str, str]:
    h = reply.headers
    return (
        h["RateLimit-Limit"],
        h["RateLimit-Remaining"],
        h["RateLimit-Reset"],
        h["RateLimit-Policy"],
    )


def test_the_defaults_are_seed_003s() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (AUTH_DEFAULT, STATS_DEFAULT) == ("5/minute", "100/hour")
    assert settings.auth_rate_limit == "5/minute"
    assert settings.stats_rate_limit == "100/hour"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("off", None), ("", None), (" OFF ", None), ("10/second burst 20", "10/second burst 20")],
)
def test_the_settings_take_a_rate_or_off(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: str | None
) -> None:
    monkeypatch.setenv("FERRYMAN_AUTH_RATE_LIMIT", value)
    monkeypatch.setenv("FERRYMAN_STATS_RATE_LIMIT", value)
    settings = load_settings(_env_file=None)
    assert settings.auth_rate_limit == expected
    assert settings.stats_rate_limit == expected


def test_a_bad_rate_stops_start_up_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FERRYMAN_STATS_RATE_LIMIT", "100 an hour")
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=None)
    assert "FERRYMAN_STATS_RATE_LIMIT: '100 an hour' is not a rate like" in str(caught.value)


async def attempts(client: Client, here: dict[str, str]) -> list[Reply]:
    """Five attempts of every kind: each counts, whatever its outcome."""
    body = {"username": "ann", "password": PASSWORD}
    return [
        await client.send("POST", "/auth/register", json=body, headers=here),
        await client.login_reply("ann", headers=here),
        await client.login_reply("ann", "a wrong password", headers=here),
        await client.send("POST", "/auth/session", json=body, headers=here),
        await client.send("POST", "/auth/register", json={"username": "x"}, headers=here),
    ]


async def test_registration_and_login_share_five_attempts_a_minute_per_ip(
    settings_factory: Callable[..., Settings],
) -> None:
    clock = real_now_clock()
    settings = settings_factory(
        registration_enabled=True, auth_rate_limit=AUTH_DEFAULT, trusted_proxies=["127.0.0.0/8"]
    )
    async with running(settings, clock) as (_, client):
        here = from_ip("198.51.100.1")
        replies = await attempts(client, here)
        assert [r.status for r in replies] == [201, 200, 401, 200, 422]
        # Reset: seconds until the allowance is whole again (GCRA: 12 s per attempt).
        assert [limit_headers(r) for r in replies] == [
            ("5", str(5 - n), str(12 * n), "5;w=60") for n in range(1, 6)
        ]
        refused = await client.login_reply("ann", headers=here)
        body = assert_error(refused, 429, "rate_limited")
        assert "5 per 60 s" in body["message"] and "ip" in body["message"]
        assert refused.headers["Retry-After"] == "12"
        assert limit_headers(refused) == ("5", "0", "60", "5;w=60")
        assert "access_token" not in refused.text
        # Every endpoint of the three shares the count; another address has its own.
        for path in ("/auth/register", "/auth/session"):
            reply = await client.send(
                "POST", path, json={"username": "ann", "password": PASSWORD}, headers=here
            )
            assert_error(reply, 429, "rate_limited")
        other = await client.login_reply("ann", headers=from_ip("198.51.100.2"))
        assert other.status == 200 and other.headers["RateLimit-Remaining"] == "4"
        # Logging out is no attempt.
        out = await client.send("POST", "/auth/logout", token=other.json["access_token"])
        assert out.status == 204 and "RateLimit-Limit" not in out.headers
        # One more every 12 s, five again after a quiet minute.
        clock.advance(seconds=12)
        assert (await client.login_reply("ann", headers=here)).status == 200
        assert_error(await client.login_reply("ann", headers=here), 429, "rate_limited")
        clock.advance(seconds=60)
        again = [(await client.login_reply("ann", headers=here)).status for _ in range(6)]
        assert again == [200] * 5 + [429]


async def test_the_failed_login_throttle_still_applies_underneath(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(registration_enabled=True, auth_rate_limit="20/minute")
    async with running(settings) as (_, client):
        await client.register("ann")
        for _ in range(5):
            assert_error(await client.login_reply("ann", "a wrong password"), 401, "invalid_login")
        throttled = await client.login_reply("ann")
        assert_error(throttled, 429, "login_throttled")
        # Admitted by the API limit (its headers say so), refused by the throttle.
        assert throttled.headers["RateLimit-Remaining"] == "13"


async def test_the_stats_api_allows_a_hundred_calls_an_hour_per_credential(
    settings_factory: Callable[..., Settings],
) -> None:
    clock = real_now_clock()
    settings = settings_factory(registration_enabled=True, stats_rate_limit=STATS_DEFAULT)
    async with running(settings, clock) as (_, client):
        _, token = await client.user("ann")
        key = await client.new_key(token, scopes=["stats:read"])
        for n in range(100):
            reply = await client.send("GET", STATS_PATHS[n % 5], token=token)
            assert reply.status == 200, reply.text
            assert limit_headers(reply)[0:2] == ("100", str(99 - n))
            assert limit_headers(reply)[3] == "100;w=3600"
        csv = await client.send("GET", "/usage.csv", token=token)
        body = assert_error(csv, 429, "rate_limited")
        assert "100 per 3600 s" in body["message"] and "credential" in body["message"]
        assert csv.headers["Retry-After"] == "36"
        assert limit_headers(csv) == ("100", "0", "3600", "100;w=3600")
        # A client key with stats:read, a session and another JWT each count on their own.
        by_key = await client.send("GET", "/stats", token=key["key"])
        assert by_key.status == 200 and by_key.headers["RateLimit-Remaining"] == "99"
        cookie, _, _ = await client.session("ann")
        by_cookie = await client.send("GET", "/usage", cookie=cookie)
        assert by_cookie.status == 200 and by_cookie.headers["RateLimit-Remaining"] == "99"
        # A call without a credential is refused before it counts against anyone.
        anonymous = await client.send("GET", "/stats")
        assert_error(anonymous, 401, "missing_credential")
        assert "RateLimit-Limit" not in anonymous.headers
        clock.advance(seconds=36)
        assert (await client.send("GET", "/stats", token=token)).status == 200
        assert_error(await client.send("GET", "/stats", token=token), 429, "rate_limited")


async def test_off_leaves_the_endpoints_unlimited(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(
        registration_enabled=True, auth_rate_limit="off", stats_rate_limit="off"
    )
    async with running(settings) as (_, client):
        await client.register("ann")
        replies = [await client.login_reply("ann") for _ in range(8)]
        assert [r.status for r in replies] == [200] * 8
        assert "RateLimit-Limit" not in replies[-1].headers
        stats = await client.send("GET", "/stats", token=replies[0].json["access_token"])
        assert stats.status == 200 and "RateLimit-Limit" not in stats.headers


def redis_gateway(**limiter: Any) -> dict[str, Any]:
    return {**gateway_dict(NOWHERE), "limiter": {"backend": "redis", "timeout": 1.0, **limiter}}


async def test_two_instances_on_redis_share_the_count(
    settings_factory: Callable[..., Settings], redis_url: str
) -> None:
    settings = settings_factory(
        registration_enabled=True,
        auth_rate_limit=AUTH_DEFAULT,
        redis_url=redis_url,
        redis_prefix=f"t{uuid.uuid4().hex}:",
    )
    async with (
        serve_app(settings, redis_gateway()) as one,
        serve_app(settings, redis_gateway()) as two,
        client_session() as http,
    ):
        a, b = Client(http, one.url), Client(http, two.url)
        replies = [
            await a.send("POST", "/auth/register", json={"username": "ann", "password": PASSWORD})
        ]
        replies += [await a.login_reply("ann"), await a.login_reply("ann")]
        replies += [await b.login_reply("ann"), await b.login_reply("ann")]
        assert [r.status for r in replies] == [201, 200, 200, 200, 200]
        assert [r.headers["RateLimit-Remaining"] for r in replies] == ["4", "3", "2", "1", "0"]
        assert_error(await a.login_reply("ann"), 429, "rate_limited")
        refused = await b.login_reply("ann")
        assert_error(refused, 429, "rate_limited")
        assert 1 <= int(refused.headers["Retry-After"]) <= 12


@pytest.mark.parametrize("mode", ["fail_open", "fail_closed"])
async def test_a_redis_outage_follows_on_error(
    settings_factory: Callable[..., Settings], mode: str
) -> None:
    settings = settings_factory(
        registration_enabled=True, auth_rate_limit=AUTH_DEFAULT, redis_url="redis://127.0.0.1:9/0"
    )
    async with serve_app(settings, redis_gateway(on_error=mode)) as gw, client_session() as http:
        client = Client(http, gw.url)
        reply = await client.send(
            "POST", "/auth/register", json={"username": "ann", "password": PASSWORD}
        )
    if mode == "fail_open":
        assert reply.status == 201  # counted in this process instead
        assert reply.headers["RateLimit-Remaining"] == "4"
    else:
        assert_error(reply, 503, "limiter_unavailable")
