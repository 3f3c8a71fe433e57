"""Accounts: who may open one, and what a self-registered account may do at first."""

from __future__ import annotations

from typing import Literal

from pydantic import field_validator

from ferryman.config.base import Model

#: The permission that lets an account's requests use one upstream's shared key pool
#: (`pool:openrouter`); `pool:*` grants every pool. Admins hold every permission.
POOL_PERMISSION = "pool:{upstream}"
ANY_POOL = "pool:*"


def pool_permission(upstream: str) -> str:
    return POOL_PERMISSION.format(upstream=upstream)


class Accounts(Model):
    """Self-service accounts (`POST /api/v1/auth/register`)."""

    registration: Literal["open", "closed"] = "closed"
    """`open` lets anyone who can reach the gateway make an account;
    `FERRYMAN_REGISTRATION_ENABLED`, when set, overrides this."""
    permissions: tuple[str, ...] = ()
    """Permissions every self-registered account starts with. Empty by default: a new
    account spends no shared key pool until an admin grants it `pool:<upstream>`; list
    `pool:<upstream>` (or `pool:*`) here to let every new account spend it."""

    @field_validator("registration", mode="before")
    @classmethod
    def _yes_no(cls, value: object) -> object:
        if isinstance(value, bool):
            return "open" if value else "closed"
        return value

    @field_validator("permissions")
    @classmethod
    def _check_permissions(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for permission in value:
            if not permission or len(permission) > 100 or any(c.isspace() for c in permission):
                raise ValueError(f"{permission!r} is not a permission name such as pool:openrouter")
        return tuple(dict.fromkeys(value))

    def grants_pool(self, upstream: str) -> bool:
        """Does a self-registered account start with this upstream's shared pool?"""
        return bool({"*", ANY_POOL, pool_permission(upstream)} & set(self.permissions))
