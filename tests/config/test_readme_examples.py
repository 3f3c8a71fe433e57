"""Every YAML example in the README is valid as written: a whole gateway file, or the
part of one it shows (completed with a minimal rest), or the price table."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from ferryman.config.interpolate import expand
from ferryman.config.loading import parse_gateway
from ferryman.metering.pricing import PriceFile

README = Path(__file__).parents[2] / "README.md"
BLOCKS = re.findall(r"```yaml\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
BASE: dict[str, Any] = {
    "upstreams": {"openrouter": {"url": "https://openrouter.ai/api/v1"}},
    "routes": [{"path": "/v1", "upstream": "openrouter"}],
}


def test_the_readme_has_yaml_examples() -> None:
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_each_yaml_example_is_valid(block: str) -> None:
    data = yaml.safe_load(block)
    assert isinstance(data, dict)
    if "models" in data:
        PriceFile.model_validate(data)
        return
    # As the file loader does, `${VAR:-default}` expanded (to its default here).
    parse_gateway(expand({**BASE, **data}, "README", {}), source="README")
