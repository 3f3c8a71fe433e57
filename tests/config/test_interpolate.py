"""`${VAR}` and `${VAR:-default}` in the gateway file."""

from __future__ import annotations

from pathlib import Path

import pytest

from ferryman.config.interpolate import expand
from ferryman.config.loading import load_gateway_file
from ferryman.errors import ConfigError
from tests.e2e.test_serve import run_cli


def test_references_defaults_escapes_and_only_strings() -> None:
    env = {"HOST": "app.internal", "EMPTY": "", "PORT": "8443", "TRICKY": "${HOST}"}
    data = {
        "url": "https://${HOST}:${PORT}/x",
        "fallback": "${NOPE:-http://localhost:8080}",
        "empty": "${EMPTY:-used}",
        "literal": "$${HOST}",
        "once": "${TRICKY}",  # a value from the environment is not expanded again
        "list": ["${HOST}", 3, None, True],
        "${HOST}": "keys stay as written",
    }
    assert expand(data, "f", env) == {
        "url": "https://app.internal:8443/x",
        "fallback": "http://localhost:8080",
        "empty": "used",
        "literal": "${HOST}",
        "once": "${HOST}",
        "list": ["app.internal", 3, None, True],
        "${HOST}": "keys stay as written",
    }


def test_every_missing_variable_is_named_with_where_it_is_used() -> None:
    data = {"upstreams": {"n8n": {"url": "${N8N_WEBHOOK_URL}"}}, "x": ["${A}", "${B:-ok}"]}
    with pytest.raises(ConfigError) as failure:
        expand(data, "chat.yaml", {})
    assert str(failure.value) == (
        "chat.yaml: 2 environment variables are not set\n"
        "  upstreams.n8n.url: ${N8N_WEBHOOK_URL} (N8N_WEBHOOK_URL is not set)\n"
        "  x.0: ${A} (A is not set)"
    )


def test_the_file_is_read_with_them_and_check_config_names_a_missing_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "gw.yaml"
    config.write_text(
        "upstreams: {app: {url: '${APP_URL:-http://127.0.0.1:9}'}}\n"
        "routes: [{path: /, upstream: app, auth: [api_key], name: '${ROUTE_NAME}'}]\n"
    )
    monkeypatch.setenv("ROUTE_NAME", "main")
    gateway = load_gateway_file(config)
    assert gateway.upstreams["app"].url == "http://127.0.0.1:9"
    assert gateway.routes[0].name == "main"
    result = run_cli("check-config", str(config), env={"PATH": "/usr/bin:/bin"})
    assert result.returncode != 0
    assert "routes.0.name: ${ROUTE_NAME} (ROUTE_NAME is not set)" in result.stderr
