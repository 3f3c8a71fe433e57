"""What every section of the gateway file shares: the strict base model and the checks
of names, header names, hosts and path prefixes.

Every model is frozen and refuses unknown fields, so a typo in the YAML is an error with
the path of the field rather than a setting silently ignored. A single value where a
list is expected (`auth: api_key`) is taken as a list of one: that is what the writer
meant, and YAML makes the slip easy.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 token
HOST = re.compile(r"^(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")


class Model(BaseModel):
    """A section of the gateway file: frozen, strict about unknown fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)


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
