"""What every section of the gateway file shares: the strict base model and the checks
of names, header names, hosts and path prefixes.

Every model is frozen and refuses unknown fields, so a typo in the YAML is an error with
the path of the field rather than a setting silently ignored. A single value where a
list is expected (`auth: api_key`) is taken as a list of one: that is what the writer
meant, and YAML makes the slip easy.
"""

from __future__ import annotations

import re
import types
import typing
from typing import Any, ClassVar, get_args, get_origin

from pydantic import BaseModel, ConfigDict, model_validator

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 token
HOST = re.compile(r"^(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")


def _is_tuple(annotation: Any) -> bool:
    """Is this field a tuple (or an optional tuple)?"""
    origin = get_origin(annotation)
    if origin is tuple:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_is_tuple(arg) for arg in get_args(annotation) if arg is not type(None))
    if origin is typing.Annotated:
        return _is_tuple(get_args(annotation)[0])
    return False


class Model(BaseModel):
    """A section of the gateway file: frozen, strict about unknown fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    _list_fields: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls._list_fields = frozenset(
            name for name, field in cls.model_fields.items() if _is_tuple(field.annotation)
        )

    @model_validator(mode="before")
    @classmethod
    def _scalar_as_list(cls, data: Any) -> Any:
        if isinstance(data, dict) and cls._list_fields:
            wrapped = {
                name: [value]
                for name, value in data.items()
                if name in cls._list_fields and isinstance(value, str | int | float)
            }
            if wrapped:
                return {**data, **wrapped}
        return data


def header_name(value: str) -> str:
    if not TOKEN.match(value):
        raise ValueError("must be a valid HTTP header name")
    return value


def normalise_prefix(value: str, *, what: str = "") -> str:
    """Check a configured path prefix and drop a trailing slash (`/v1/` → `/v1`)."""
    subject = f"{what} " if what else ""
    if not value.startswith("/"):
        raise ValueError(f"{subject}must start with '/'")
    if any(c in value for c in "?#%\\") or any(ord(c) < 0x21 or ord(c) == 0x7F for c in value):
        raise ValueError(f"{subject}must be a plain path: no '?', '#', '%', '\\' or spaces")
    if "//" in value:
        raise ValueError(f"{subject}must not contain '//'")
    if any(segment in (".", "..") for segment in value.split("/")):
        raise ValueError(f"{subject}must not contain '.' or '..' segments")
    return value.rstrip("/") or "/"
