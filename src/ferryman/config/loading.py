"""Reading the gateway file, and turning every mistake in it into a readable message."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ferryman.config.defaults import default_gateway
from ferryman.config.gateway import Gateway
from ferryman.config.interpolate import expand
from ferryman.config.messages import friendly, location
from ferryman.config.settings import Settings
from ferryman.errors import ConfigError


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses duplicate keys instead of keeping the last one."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    mapping: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in mapping:
            mark = key_node.start_mark
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", mark)
        mapping[key] = loader.construct_object(value_node, deep=True)
    return mapping


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _messages(exc: ValidationError) -> list[str]:
    lines: list[str] = []
    for error in exc.errors(include_url=False):
        loc = location(tuple(error["loc"]))
        message = friendly(error)
        if (error["type"] == "value_error" and "\n" in message) or (not loc and ": " in message):
            # Cross-field checks already name their fields, one per line.
            base = f"{loc}." if loc else ""
            lines.extend(f"{base}{line}" for line in message.splitlines())
            continue
        lines.append(f"{loc or '(top level)'}: {message}")
    return lines


def parse_gateway(data: object, *, source: str) -> Gateway:
    """Validate already-parsed YAML data; `source` names it in the error."""
    if data is None:
        raise ConfigError(f"{source}: the file is empty")
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping with upstreams and routes")
    try:
        return Gateway.model_validate(data)
    except ValidationError as exc:
        lines = _messages(exc)
        noun = "error" if len(lines) == 1 else "errors"
        body = "\n".join(f"  {line}" for line in lines)
        raise ConfigError(f"{source}: {len(lines)} {noun}\n{body}") from None


def load_gateway_file(path: Path) -> Gateway:
    """Read and validate a gateway YAML file, or raise ConfigError saying what is wrong."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read ({exc})") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ConfigError(f"{where}: invalid YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    return parse_gateway(expand(data, str(path)), source=str(path))


def load_gateway(settings: Settings) -> Gateway:
    """The gateway for these settings: the named file, or the built-in default."""
    if settings.config is None:
        return default_gateway(settings.openrouter_url)
    return load_gateway_file(settings.config)


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment (and `.env`), or ConfigError naming the variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for error in exc.errors(include_url=False):
            name = "FERRYMAN_" + "_".join(str(p) for p in error["loc"][:1]).upper()
            lines.append(f"  {name}: {friendly(error)}")
        raise ConfigError("invalid settings\n" + "\n".join(lines)) from None
