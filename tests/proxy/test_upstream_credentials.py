"""An upstream's own credential (fixed, or HTTP Basic from two variables) replaces
whatever the client sent in that header: the upstream sees exactly one, the gateway's."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from ferryman.config.settings import Settings
from ferryman.config.upstreams import Upstream
from ferryman.errors import ConfigError
from ferryman.proxy.upstream import UpstreamClient
from tests.fakes.upstream import FakeUpstream
from tests.support import client_session, gateway_dict, serve_app


def sent(echo: dict[str, Any], name: str) -> list[str]:
    return [v for k, v in echo["headers"] if k.lower() == name.lower()]


async def test_a_fixed_credential_replaces_the_clients_header(
    settings: Settings, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UP_TOKEN", "sk-upstream-secret")
    credential = {"kind": "fixed", "value_env": "UP_TOKEN", "prefix": "Bearer "}
    spec = gateway_dict(upstream.url, upstream_spec={"credential": credential})
    async with serve_app(settings, spec) as gw, client_session() as http:
        headers = {"Authorization": "Bearer from-the-client"}
        async with http.get(gw.url + "/echo/x", headers=headers) as r:
            echo = await r.json()
    assert sent(echo, "Authorization") == ["Bearer sk-upstream-secret"]
    # Named in lower case, as the client's arrives: still one header, the gateway's.
    credential = {"kind": "fixed", "header": "x-upstream-key", "value_env": "UP_TOKEN"}
    spec = gateway_dict(upstream.url, upstream_spec={"credential": credential})
    async with serve_app(settings, spec) as gw, client_session() as http:
        async with http.get(gw.url + "/echo/x", headers={"X-Upstream-Key": "mine"}) as r:
            echo = await r.json()
    assert sent(echo, "X-Upstream-Key") == ["sk-upstream-secret"]


async def test_basic_credentials_come_from_two_variables(
    settings: Settings, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APP_USER", "zenzefi")
    monkeypatch.setenv("APP_PASSWORD", "pä:ss")
    credential = {"kind": "basic", "user_env": "APP_USER", "password_env": "APP_PASSWORD"}
    spec = gateway_dict(upstream.url, upstream_spec={"credential": credential})
    async with serve_app(settings, spec) as gw, client_session() as http:
        async with http.get(gw.url + "/echo/x", headers={"Authorization": "Basic eDp5"}) as r:
            echo = await r.json()
    expected = base64.b64encode("zenzefi:pä:ss".encode()).decode()
    assert sent(echo, "Authorization") == [f"Basic {expected}"]


def test_a_missing_basic_variable_is_a_config_error_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("APP_USER", "zenzefi")
    monkeypatch.delenv("APP_PASSWORD", raising=False)
    credential = {"kind": "basic", "user_env": "APP_USER", "password_env": "APP_PASSWORD"}
    client = UpstreamClient("app", Upstream(url="http://127.0.0.1:9", credential=credential))
    with pytest.raises(ConfigError, match=r"upstreams\.app\.credential: .*APP_PASSWORD is not set"):
        client.resolve_credential()
