"""The price table: costs from it, the provider's cost first, reloads when it changes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ferryman.errors import ConfigError
from ferryman.metering.extract import Usage
from ferryman.metering.pricing import PriceTable

TABLE = """
currency: USD
models:
  openai/gpt-4o-mini: {input: 0.15, output: 0.60}
  anthropic/claude-3.5-sonnet: {input: 3, output: 15}
"""


def write(path: Path, text: str, mtime: float) -> None:
    path.write_text(text)
    os.utime(path, (mtime, mtime))


def test_costs_from_the_table_and_from_the_provider(tmp_path: Path) -> None:
    path = tmp_path / "prices.yaml"
    write(path, TABLE, 1_000)
    table = PriceTable(path)
    usage = Usage("openai/gpt-4o-mini", 1_000_000, 500_000, None, None)
    assert table.cost(usage) == pytest.approx(0.15 + 0.30)
    assert table.cost(Usage("openai/gpt-4o-mini", 10, 10, 20, 0.5)) == 0.5  # provider's
    assert table.cost(Usage("unknown/model", 10, 10, 20, None)) is None
    assert table.cost(Usage(None, 10, 10, 20, None)) is None
    assert table.cost(Usage("openai/gpt-4o-mini")) is None  # no tokens: unknown


def test_a_changed_file_is_reloaded_and_a_broken_one_keeps_the_last_table(
    tmp_path: Path,
) -> None:
    path = tmp_path / "prices.json"
    write(path, '{"models": {"m": {"input": 1, "output": 2}}}', 1_000)
    table = PriceTable(path, check_every=0)
    assert table.refresh() is False  # unchanged
    write(path, '{"models": {"m": {"input": 10, "output": 20}}}', 2_000)
    assert table.refresh() is True
    assert table.cost(Usage("m", 1_000_000, 0, None, None)) == 10
    write(path, '{"models": {"m": {"input": -1}}}', 3_000)
    assert table.refresh() is False
    assert table.cost(Usage("m", 1_000_000, 0, None, None)) == 10


def test_an_invalid_table_at_start_up_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text("models:\n  m: {input: 1}\n")
    with pytest.raises(ConfigError, match=r"models\.m\.output: Field required"):
        PriceTable(path)
    path.write_text("models: [")
    with pytest.raises(ConfigError, match="not YAML or JSON"):
        PriceTable(path)
