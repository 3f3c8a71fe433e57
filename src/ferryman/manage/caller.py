"""The verified caller of a management action, and the ownership rule."""

from __future__ import annotations

from dataclasses import dataclass

from ferryman.auth.identity import Identity
from ferryman.errors import NotFound


@dataclass(frozen=True)
class Caller:
    identity: Identity
    via: str  # "jwt" or "session"

    @property
    def user_id(self) -> str:
        return self.identity.user_id

    @property
    def is_admin(self) -> bool:
        return self.identity.is_admin


def owned_by(caller: Caller, owner_id: str, missing: NotFound) -> None:
    """Raise `missing` (the same error an unknown id gets, so nothing leaks) unless the
    caller owns the thing or is an admin."""
    if owner_id != caller.user_id and not caller.is_admin:
        raise missing
