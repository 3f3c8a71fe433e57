"""A route (or relay) under the console's path would be hidden by it: refused at start
and by check-config, unless the console moves or is turned off."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from ferryman.app import Ferryman
from ferryman.config.loading import parse_gateway
from ferryman.config.settings import Settings
from ferryman.errors import ConfigError


def gateway(path: str) -> dict[str, object]:
    return {
        "upstreams": {"up": {"url": "http://127.0.0.1:9"}},
        "routes": [{"name": "r", "path": path, "upstream": "up"}],
    }


async def test_a_route_under_the_console_stops_the_start(
    settings_factory: Callable[..., Settings],
) -> None:
    app = Ferryman(settings_factory(), parse_gateway(gateway("/console/app"), source="t"))
    with pytest.raises(ConfigError, match=r"routes\[0\] \(r\): inside the console's path"):
        await app.startup()
    assert parse_gateway(gateway("/consoles"), source="t").shadowed_by("/console") == []
    moved = settings_factory(console_path="/admin-ui")
    assert parse_gateway(gateway("/console/app"), source="t").shadowed_by(moved.console_path) == []


def test_check_config_refuses_it_and_names_the_way_out(tmp_path: Path) -> None:
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump(gateway("/console")))
    command = [sys.executable, "-m", "ferryman", "check-config", str(path)]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run(command, capture_output=True, text=True, env=env)
    assert out.returncode != 0 and "FERRYMAN_CONSOLE_ENABLED=false" in out.stderr
    off = subprocess.run(
        command, capture_output=True, text=True, env={**env, "FERRYMAN_CONSOLE_ENABLED": "false"}
    )
    assert off.returncode == 0, off.stderr
