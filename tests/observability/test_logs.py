"""Access log lines: one per request, with what happened and never a secret."""

from __future__ import annotations

from typing import Any

import pytest
from yarl import URL

from ferryman.config.settings import Settings
from ferryman.observability.logging import redact_query, scrub
from tests.conftest import LogReader
from tests.fakes.upstream import FakeUpstream
from tests.support import client_session, gateway_dict, serve_app


async def test_one_access_line_per_request_with_its_facts(
    settings: Settings, upstream: FakeUpstream, logs: LogReader
) -> None:
    async with serve_app(settings, gateway_dict(upstream.url)) as gw, client_session() as http:
        async with http.post(
            f"{gw.url}/echo/x?model=gpt", data=b"12345", headers={"X-Request-ID": "req-log-1"}
        ) as r:
            await r.read()
            size = len(await r.read())
        async with http.get(f"{gw.url}/health/live") as r:
            await r.read()
    lines = [e for e in logs.events("request") if e["correlation_id"] == "req-log-1"]
    assert len(lines) == 1
    line = lines[0]
    assert line["method"] == "POST"
    assert line["path"] == "/echo/x?model=gpt"
    assert line["route"] == "main"
    assert line["status"] == 200
    assert line["upstream"] == "up"
    assert line["bytes_in"] == 5
    assert line["bytes_out"] == size
    assert line["client_ip"] == "127.0.0.1"
    assert line["duration_ms"] >= line["upstream_ms"] > 0
    assert line["level"] == "info"
    assert line["timestamp"].endswith("Z")
    health = [e for e in logs.events("request") if e["path"] == "/health/live"]
    assert health and health[0]["level"] == "debug"


async def test_errors_and_disconnects_are_logged_with_their_code(
    settings: Settings, upstream: FakeUpstream, logs: LogReader
) -> None:
    async with serve_app(settings, gateway_dict(upstream.url)) as gw, client_session() as http:
        async with http.get(URL(f"{gw.url}/a/%2e%2e/b", encoded=True)) as r:
            assert r.status == 400
        async with http.get(f"{gw.url}/reset-midway") as r:
            with pytest.raises(Exception):  # noqa: B017 - the stream is cut on purpose
                await r.read()
    lines = logs.events("request")
    assert any(e["status"] == 400 and e["error"] == "invalid_path" for e in lines)
    aborted = [e for e in lines if e["path"] == "/reset-midway"]
    assert aborted and aborted[0]["error"] == "upstream_disconnected"
    assert logs.events("upstream_stream_aborted")
    # uvicorn's own traceback for the cut stream is suppressed: we logged it ourselves.
    assert not [
        e for e in logs.events() if e.get("logger", "").startswith("uvicorn") and "exception" in e
    ]


async def test_secrets_in_requests_never_reach_the_logs(
    settings: Settings, upstream: FakeUpstream, logs: LogReader, secret: Any
) -> None:
    bearer, api_key, cookie, token = secret("sk-or-v1-"), secret("fm_"), secret(), secret()
    async with serve_app(settings, gateway_dict(upstream.url)) as gw, client_session() as http:
        headers = {
            "Authorization": f"Bearer {bearer}",
            "X-Api-Key": api_key,
            "Cookie": f"session_token={cookie}",
        }
        async with http.get(
            f"{gw.url}/echo/x", params={"token": token, "api_key": api_key}, headers=headers
        ) as r:
            assert r.status == 200
    text = logs.text()
    assert "token=[redacted]" in text
    for value in (bearer, api_key, cookie, token):
        assert value not in text


def test_scrub_masks_secret_shapes_in_free_text() -> None:
    text = (
        "auth Bearer abcdefghijklmnop and key fm_0123456789abcdefghijkl and "
        "sk-or-v1-0123456789abcdef0123 and eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"
    )
    out = scrub(text)
    assert "abcdefghijklmnop" not in out
    assert "0123456789abcdefghijkl" not in out
    assert "0123456789abcdef0123" not in out
    assert "eyJzdWIiOiIxIn0" not in out
    assert "Bearer [redacted]" in out and "fm_[redacted]" in out


def test_redact_query_masks_only_sensitive_parameters() -> None:
    assert (
        redact_query("model=gpt&token=abc&Api_Key=def&page=2&sig=x")
        == "model=gpt&token=[redacted]&Api_Key=[redacted]&page=2&sig=[redacted]"
    )


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        # Tokens Ferryman hands out, wherever they appear: passes (64), sessions (43 and
        # a signature), client keys; and long random-looking runs in general.
        ("/api/v1/proxy/" + "Ab9_" * 16 + "/x", "/api/v1/proxy/[redacted]/x"),
        ("session " + "xY1-" * 11 + "." + "Qz8_" * 11, "session [redacted].[redacted]"),
        ("key=fm_" + "aB3" * 15, "key=fm_[redacted]"),
        # Ordinary identifiers stay readable.
        ("/files/" + "0123456789abcdef" * 3, None),
        ("/posts/a-very-long-title-of-an-article-in-lower-case-2026", None),
        ("/v1/chat/completions", None),
        ("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ABCDEF", None),
    ],
)
def test_scrub_masks_random_tokens_but_not_identifiers(text: str, masked: str | None) -> None:
    assert scrub(text) == (text if masked is None else masked)


async def test_a_secret_sent_as_request_id_is_replaced_not_echoed(
    settings: Settings, upstream: FakeUpstream, logs: LogReader, secret: Any
) -> None:
    key = "fm_" + secret()[:43]
    token = secret()[:64].replace("0", "A")  # mixed case, like a pass token
    async with serve_app(settings, gateway_dict(upstream.url)) as gw, client_session() as http:
        for sent in (key, token):
            async with http.get(f"{gw.url}/echo/x", headers={"X-Request-ID": sent}) as r:
                echoed = r.headers["X-Request-ID"]
                forwarded = dict((await r.json())["headers"])["X-Request-ID"]
            assert echoed == forwarded != sent
            assert len(echoed) == 32
        async with http.get(f"{gw.url}/echo/x", headers={"X-Request-ID": "ok-1"}) as r:
            assert r.headers["X-Request-ID"] == "ok-1"
    assert key not in logs.text() and token not in logs.text()
