"""Who is calling, once a credential has been verified."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ferryman.limits.allowance import NOTHING, Allowance

ROLES = ("admin", "user")

#: Granted to every credential of an admin: any permission a route may require.
ALL = "*"


@dataclass(frozen=True, slots=True)
class Identity:
    """A verified caller. `credential_id` names the key, pass, session or (for a JWT) the user."""

    kind: str
    user_id: str
    username: str
    role: str
    permissions: frozenset[str]
    credential_id: str
    scopes: frozenset[str] = frozenset()
    expires_at: datetime | None = None
    allowance: Allowance = NOTHING
    """The caps set on this credential itself (client keys)."""
    user_allowance: Allowance = NOTHING
    """The caps set on the whole account."""

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def has_permissions(self, required: tuple[str, ...]) -> bool:
        return self.is_admin or ALL in self.permissions or self.permissions.issuperset(required)

    def has_scopes(self, required: tuple[str, ...]) -> bool:
        return self.scopes.issuperset(required)
