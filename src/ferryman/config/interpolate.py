"""Environment variables in the gateway file: `${VAR}` and `${VAR:-default}`.

Only string values are expanded (never keys), once, after the YAML is parsed: a value
read from the environment is not itself expanded again, and YAML syntax in it stays
text. `$${` writes a literal `${`. A variable that is unset (or empty, for the `:-`
form) and has no default is an error naming it and where it is used, so a file never
runs with a hole in it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from ferryman.errors import ConfigError

_REFERENCE = re.compile(r"\$(\$)?\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand(data: Any, source: str, environ: Mapping[str, str] | None = None) -> Any:
    """`data` with every reference in its strings replaced; ConfigError listing each
    missing variable with the place it is used."""
    env = os.environ if environ is None else environ
    missing: list[str] = []
    out = _walk(data, (), env, missing)
    if missing:
        noun = "variable is" if len(missing) == 1 else "variables are"
        body = "\n".join(f"  {line}" for line in missing)
        raise ConfigError(f"{source}: {len(missing)} environment {noun} not set\n{body}")
    return out


def _walk(value: Any, where: tuple[str, ...], env: Mapping[str, str], missing: list[str]) -> Any:
    if isinstance(value, str):
        return _expand(value, where, env, missing) if "${" in value else value
    if isinstance(value, dict):
        return {k: _walk(v, (*where, str(k)), env, missing) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v, (*where, str(i)), env, missing) for i, v in enumerate(value)]
    return value


def _expand(text: str, where: tuple[str, ...], env: Mapping[str, str], missing: list[str]) -> str:
    def replace(match: re.Match[str]) -> str:
        escaped, name, default = match.group(1), match.group(2), match.group(3)
        if escaped:
            return match.group(0)[1:]  # `$${X}` → `${X}`
        value = env.get(name)
        if default is not None:
            return value if value else default
        if value is None:
            missing.append(f"{'.'.join(where) or '(top level)'}: ${{{name}}} ({name} is not set)")
            return ""
        return value

    return _REFERENCE.sub(replace, text)
