"""Accounts, for admins (the API's `/admin/users` and the console's users page)."""

from __future__ import annotations

from collections.abc import Mapping

from ferryman.auth.services import Auth
from ferryman.errors import BadRequest, Forbidden, NotFound
from ferryman.manage.caller import Caller
from ferryman.store import users
from ferryman.store.users import User


def require_admin(caller: Caller) -> None:
    if not caller.is_admin:
        raise Forbidden("this needs an admin account", code="admin_required")


async def page(
    auth: Auth, caller: Caller, *, text: str = "", offset: int = 0, limit: int = 100
) -> tuple[list[User], int]:
    require_admin(caller)
    return await users.page(auth.db, offset=offset, limit=limit, text=text)


async def change(
    auth: Auth,
    caller: Caller,
    user_id: str,
    *,
    is_active: bool | None = None,
    role: str | None = None,
    permissions: tuple[str, ...] | None = None,
    caps: Mapping[str, object] | None = None,
) -> User:
    """Disable or enable an account (at once), or change its role, permissions, caps."""
    require_admin(caller)
    if user_id == caller.user_id and (is_active is False or role == "user"):
        raise BadRequest("an admin cannot disable or demote themselves", code="self_lockout")
    user = await users.get(auth.db, user_id)
    if user is None:
        raise NotFound("no such user", code="user_not_found")
    if is_active is not None:
        user = await auth.users.set_active(user_id, is_active)
    if role is not None or permissions is not None or caps:
        user = await auth.users.set_access(user_id, role=role, permissions=permissions, caps=caps)
    if user is None:
        raise NotFound("no such user", code="user_not_found")
    return user


async def reset_password(auth: Auth, caller: Caller, user_id: str) -> tuple[User, str]:
    """A new random password for the account, shown once; its sessions end."""
    require_admin(caller)
    if user_id == caller.user_id:
        raise BadRequest("change your own password on your profile", code="self_reset")
    done = await auth.users.reset_password(user_id)
    if done is None:
        raise NotFound("no such user", code="user_not_found")
    return done
