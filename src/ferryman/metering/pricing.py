"""The price table: what a model's tokens cost, per million, input and output.

A YAML or JSON file (`models: {openai/gpt-4o-mini: {input: 0.15, output: 0.60}}`),
reloaded when it changes on disk (checked at most every `check_every` seconds); a file
that stops being valid keeps the last good table and is logged. A provider's own cost
(OpenRouter's `usage.cost`) wins over the table; a model in neither has no known cost.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import structlog
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ferryman.errors import ConfigError
from ferryman.metering.extract import Usage

log = structlog.get_logger("ferryman.pricing")

PER = 1_000_000


class Price(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    input: Annotated[float, Field(ge=0)]
    """Per million prompt tokens."""
    output: Annotated[float, Field(ge=0)]
    """Per million completion tokens."""


class PriceFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    currency: str = "USD"
    models: dict[str, Price] = Field(default_factory=dict)


def read_prices(path: Path) -> PriceFile:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the price table: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not YAML or JSON: {exc}") from None
    try:
        return PriceFile.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}" for error in exc.errors()
        )
        raise ConfigError(f"{path}: {problems}") from None


class PriceTable:
    def __init__(self, path: Path | None = None, *, check_every: float = 5.0) -> None:
        self.path = path
        self.check_every = check_every
        self.prices = PriceFile()
        self._rates: dict[str, tuple[float, float]] = {}
        self._mtime: float | None = None
        self._checked = 0.0
        if path is not None:
            self._use(read_prices(path))  # a bad file at start-up is an error
            self._mtime = path.stat().st_mtime

    def _use(self, prices: PriceFile) -> None:
        self.prices = prices
        #: Input and output per million tokens, by model: what pricing a row looks up.
        self._rates = {m: (p.input, p.output) for m, p in prices.models.items()}

    def refresh(self) -> bool:
        """Reload if the file changed (at most every `check_every` s); True if reloaded."""
        if self.path is None:
            return False
        now = time.monotonic()
        if now - self._checked < self.check_every:
            return False
        self._checked = now
        try:
            mtime = self.path.stat().st_mtime
        except OSError as exc:
            log.warning("price_table_unreadable", path=str(self.path), error=str(exc))
            return False
        if mtime == self._mtime:
            return False
        try:
            prices = read_prices(self.path)
        except ConfigError as exc:
            log.warning("price_table_invalid", error=str(exc), kept="the last good table")
            self._mtime = mtime
            return False
        self._use(prices)
        self._mtime = mtime
        log.info("price_table_reloaded", path=str(self.path), models=len(prices.models))
        return True

    def cost(self, usage: Usage) -> float | None:
        """The provider's cost if it gave one, else the table's; None when unknown."""
        if usage.cost is not None:
            return usage.cost
        return self.table_cost(usage.model, usage.prompt_tokens, usage.completion_tokens)

    def table_cost(
        self, model: str | None, prompt: int | None, completion: int | None
    ) -> float | None:
        """What the table says these tokens of this model cost; None when unknown."""
        if model is None or (prompt is None and completion is None):
            return None
        rates = self._rates.get(model)
        if rates is None:
            return None
        return ((prompt or 0) * rates[0] + (completion or 0) * rates[1]) / PER
