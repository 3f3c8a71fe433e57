"""Health, readiness and Prometheus metrics."""

from __future__ import annotations

import socket

from prometheus_client.parser import text_string_to_metric_families

from ferryman.config.settings import Settings
from tests.fakes.upstream import FakeUpstream
from tests.support import client_session, gateway_dict, serve_app


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                out[tuple(sorted(sample.labels.items()))] = sample.value
    return out


async def test_liveness_and_readiness_and_their_aliases(
    settings: Settings, upstream: FakeUpstream
) -> None:
    async with serve_app(settings, gateway_dict(upstream.url)) as gw, client_session() as http:
        for path in ("/health/live", "/liveness"):
            async with http.get(f"{gw.url}{path}") as r:
                assert r.status == 200
                assert await r.json() == {"status": "ok"}
        for path in ("/health/ready", "/readiness", "/health"):
            async with http.get(f"{gw.url}{path}") as r:
                assert r.status == 200
                report = await r.json()
            assert report["status"] == "ok"
            assert report["checks"]["database"]["status"] == "ok"
            assert report["checks"]["database"]["backend"] == "sqlite"
            assert "redis" not in report["checks"]
        async with http.head(f"{gw.url}/health") as r:
            assert r.status == 200 and await r.read() == b""
        async with http.post(f"{gw.url}/health") as r:
            assert r.status == 405
            assert (await r.json())["error"] == "method_not_allowed"


async def test_readiness_fails_with_details_when_redis_is_unreachable(
    settings_factory: object, upstream: FakeUpstream
) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    settings = settings_factory(redis_url=f"redis://127.0.0.1:{port}/0")  # type: ignore[operator]
    async with serve_app(settings, gateway_dict(upstream.url)) as gw, client_session() as http:
        async with http.get(f"{gw.url}/health/ready") as r:
            assert r.status == 503
            report = await r.json()
        async with http.get(f"{gw.url}/health/live") as r:
            assert r.status == 200
    assert report["status"] == "unavailable"
    assert report["checks"]["database"]["status"] == "ok"
    assert report["checks"]["redis"]["status"] == "unavailable"
    assert "ConnectionError" in report["checks"]["redis"]["error"]
    # The breaker is shown whatever the check's outcome (nothing on the request path
    # has asked Redis yet, so it is still closed).
    assert report["checks"]["redis"]["breaker"] == {"state": "closed", "opens": 0}


async def test_readiness_reports_a_reachable_redis(
    settings_factory: object, upstream: FakeUpstream, redis_url: str
) -> None:
    settings = settings_factory(redis_url=redis_url)  # type: ignore[operator]
    async with serve_app(settings, gateway_dict(upstream.url)) as gw, client_session() as http:
        async with http.get(f"{gw.url}/health/ready") as r:
            assert r.status == 200
            redis = (await r.json())["checks"]["redis"]
        async with http.get(f"{gw.url}/metrics") as r:
            text = await r.text()
    assert redis["status"] == "ok"
    assert redis["breaker"] == {"state": "closed", "opens": 0}
    assert samples(text, "ferryman_redis_breaker_state") == {
        (("state", "closed"),): 1.0,
        (("state", "half_open"),): 0.0,
        (("state", "open"),): 0.0,
    }


async def test_metrics_count_requests_by_route_and_status(
    settings: Settings, upstream: FakeUpstream
) -> None:
    async with serve_app(settings, gateway_dict(upstream.url)) as gw, client_session() as http:
        for _ in range(3):
            async with http.get(f"{gw.url}/echo") as r:
                await r.read()
        async with http.get(f"{gw.url}/status/503") as r:
            await r.read()
        async with http.request("PROPFIND", f"{gw.url}/echo") as r:
            await r.read()
        async with http.get(f"{gw.url}/metrics") as r:
            assert r.status == 200
            assert r.headers["Content-Type"].startswith("text/plain")
            text = await r.text()
    requests = samples(text, "ferryman_requests_total")
    assert requests[(("method", "GET"), ("route", "main"), ("status", "200"))] == 3
    assert requests[(("method", "GET"), ("route", "main"), ("status", "503"))] == 1
    assert requests[(("method", "OTHER"), ("route", "main"), ("status", "200"))] == 1
    durations = samples(text, "ferryman_request_duration_seconds_count")
    assert durations[(("route", "main"),)] == 5
    upstream_counts = samples(text, "ferryman_upstream_duration_seconds_count")
    assert upstream_counts[(("route", "main"), ("upstream", "up"))] == 5
    # The scrape itself is in flight while it renders.
    assert samples(text, "ferryman_requests_in_flight")[()] == 1


async def test_upstream_errors_are_counted_by_reason(
    settings_factory: object, upstream: FakeUpstream
) -> None:
    settings = settings_factory()  # type: ignore[operator]
    config = gateway_dict(upstream.url, upstream_spec={"timeout": {"read": 0.2}})
    async with serve_app(settings, config) as gw, client_session() as http:
        async with http.get(f"{gw.url}/hang") as r:
            assert r.status == 504
        async with http.get(f"{gw.url}/reset") as r:
            assert r.status == 502
        async with http.get(f"{gw.url}/metrics") as r:
            text = await r.text()
    errors = samples(text, "ferryman_upstream_errors_total")
    assert errors[(("reason", "timeout"), ("upstream", "up"))] == 1
    assert errors[(("reason", "disconnect"), ("upstream", "up"))] == 1


async def test_metrics_can_be_turned_off(settings_factory: object, upstream: FakeUpstream) -> None:
    settings = settings_factory(metrics_enabled=False)  # type: ignore[operator]
    async with serve_app(settings, gateway_dict(upstream.url)) as gw, client_session() as http:
        async with http.get(f"{gw.url}/metrics") as r:
            # Without the endpoint the path is just another request for the route:
            # the upstream (aiohttp) answers its own plain-text 404.
            assert r.status == 404
            assert await r.text() == "404: Not Found"
