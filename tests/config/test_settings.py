"""Process settings read from the environment: the list-valued ones."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import ValidationError

from ferryman.config.settings import Settings


def from_env(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    for name, value in env.items():
        monkeypatch.setenv(f"FERRYMAN_{name.upper()}", value)
    return Settings(_env_file=None)  # type: ignore[call-arg]


def test_pass_prices_are_read_per_duration(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = from_env(monkeypatch, access_pass_prices="1:0.50, 24:7.25,720:100")
    assert settings.access_pass_prices == {1: Decimal("0.50"), 24: Decimal("7.25"), 720: 100}
    assert settings.pass_price_micros(24) == 7_250_000
    assert settings.pass_price_micros(12) == 0  # not listed: free


@pytest.mark.parametrize("value", ["24", "24:-1", "24:0.0000001", "x:1", "24:ten"])
def test_a_malformed_price_list_is_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    with pytest.raises(ValidationError, match="access_pass_prices"):
        from_env(monkeypatch, access_pass_prices=value)
