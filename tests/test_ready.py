"""The facts `ferryman serve` tells once it listens, and the steps it suggests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ferryman.config.defaults import default_gateway
from ferryman.config.loading import parse_gateway
from ferryman.config.settings import Settings
from ferryman.ready import addresses, block, facts
from ferryman.store.progress import Progress

NOTHING = Progress(admin=None, pooled=frozenset(), client_key=False)
SQLITE = "sqlite+aiosqlite:///x/ferryman.db"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (("127.0.0.1", 8080), ("http://127.0.0.1:8080", "http://127.0.0.1:8080")),
        (("0.0.0.0", 80), ("http://0.0.0.0:80", "http://127.0.0.1:80")),
        (("::", 8080, 0, 0), ("http://[::]:8080", "http://[::1]:8080")),
        (("::1", 9, 0, 0), ("http://[::1]:9", "http://[::1]:9")),
    ],
)
def test_addresses_give_a_url_a_local_client_can_use(
    name: tuple[object, ...], expected: tuple[str, str]
) -> None:
    assert addresses(name) == expected


def test_an_admin_from_the_environment_counts_as_made(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(admin_username=" Root ", admin_password="a long password")
    ready = facts(settings, default_gateway(), NOTHING, SQLITE, secrets_generated=False)
    steps = ready.steps("http://h:1")
    assert [s.what for s in steps] == [
        "put a provider key in the openrouter pool",
        "make a client key and try it",
    ]
    assert steps[-1].commands[0] == "KEY=$(ferryman keys create --user root --name laptop)"


def test_a_gateway_file_names_its_upstreams_and_its_file(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    gateway = parse_gateway(
        {
            "upstreams": {
                "llm": {"url": "http://a", "provider": "openai", "credential": "pool"},
                "open": {"url": "http://b", "credential": "pool"},
                "plain": {"url": "http://c"},
            },
            "routes": [
                {"path": "/public", "upstream": "plain"},
                {"path": "/ai", "upstream": "llm", "auth": ["api_key"]},
                {"path": "/b", "upstream": "open", "auth": ["jwt"]},
            ],
        },
        source="test",
    )
    config = tmp_path / "gw.yaml"
    settings = settings_factory(config=config, database_url="postgresql://u:pw@db/x")
    done = Progress(admin="boss", pooled=frozenset({"open"}), client_key=False)
    ready = facts(settings, gateway, done, "postgresql+asyncpg://u:***@db/x", False)
    assert ready.gateway == f"{config} (3 routes)"
    steps = ready.steps("http://127.0.0.1:8080")
    assert [c for s in steps for c in s.commands] == [
        f'echo "$OPENAI_API_KEY" | ferryman upstream-keys add --upstream llm --name main '
        f"--config {config}",
        "KEY=$(ferryman keys create --user boss --name laptop)",
        'curl http://127.0.0.1:8080/ai/models -H "Authorization: Bearer $KEY"',
    ]
    text = block(ready, "http://127.0.0.1:8080", "http://127.0.0.1:8080/docs", steps)
    assert "(postgresql+asyncpg://u:***@db/x)" in text and "pw" not in text
    assert "API docs  http://127.0.0.1:8080/docs" in text


def test_nothing_to_do_means_no_next_steps(settings_factory: Callable[..., Settings]) -> None:
    gateway = parse_gateway(
        {"upstreams": {"u": {"url": "http://a"}}, "routes": [{"path": "/", "upstream": "u"}]},
        source="test",
    )
    done = Progress(admin="admin", pooled=frozenset(), client_key=False)
    ready = facts(settings_factory(config=Path("g.yaml")), gateway, done, SQLITE, True)
    assert ready.steps("http://h:1") == []  # no route takes a client key, no pool
    text = block(ready, "http://h:1", "off", [])
    assert "Next steps" not in text and "new secrets.json: back it up" in text
    assert text.count("\n") == 4
