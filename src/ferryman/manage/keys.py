"""Client API keys: who may create, see, change and revoke which (the API's `/keys` and
the console's keys page)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from ferryman.auth.services import Auth
from ferryman.errors import Conflict, Forbidden, NotFound
from ferryman.manage.caller import Caller, owned_by
from ferryman.store import api_keys, users
from ferryman.store.api_keys import ApiKey


@dataclass(frozen=True)
class KeyQuery:
    """Which keys, in which order, which page."""

    user_id: str | None = None
    """Admins: another user's keys."""
    all_users: bool = False
    """Admins: every key."""
    text: str = ""
    sort: str = "created"
    descending: bool = True
    offset: int = 0
    limit: int | None = None
    """None: every match (the API's unpaged answer)."""


async def create(
    auth: Auth,
    caller: Caller,
    name: str,
    scopes: tuple[str, ...],
    expires_at: datetime | None,
    user_id: str | None = None,
) -> tuple[ApiKey, str]:
    """A new key (the caller's, or for admins anyone's) and its secret, shown once."""
    owner = caller.user_id
    if user_id is not None and user_id != caller.user_id:
        if not caller.is_admin:
            raise Forbidden("only admins create keys for others", code="admin_required")
        if await users.get(auth.db, user_id) is None:
            raise NotFound("no such user", code="user_not_found")
        owner = user_id
    return await auth.api_keys.create(owner, name, scopes, expires_at)


async def page(auth: Auth, caller: Caller, query: KeyQuery) -> tuple[list[ApiKey], int]:
    owner: str | None = caller.user_id
    if query.user_id is not None or query.all_users:
        if not caller.is_admin:
            raise Forbidden("only admins list others' keys", code="admin_required")
        owner = None if query.all_users else query.user_id
    if query.limit is None and not query.text and query.sort == "created" and query.descending:
        keys = await api_keys.for_user(auth.db, owner)
        return keys, len(keys)
    return await api_keys.search(
        auth.db,
        owner,
        text=query.text,
        sort=query.sort,
        descending=query.descending,
        offset=query.offset,
        limit=query.limit if query.limit is not None else 1_000_000,
    )


def state(key: ApiKey, now: datetime) -> str:
    """`active`, `disabled`, `expired` or `revoked` (the last that applies)."""
    if key.revoked_at is not None:
        return "revoked"
    if key.expires_at is not None and key.expires_at <= now:
        return "expired"
    return "active" if key.is_active else "disabled"


async def find(auth: Auth, caller: Caller, key_id: str) -> ApiKey:
    """The key, if the caller may see it; 404 alike for unknown and others' keys."""
    missing = NotFound("no such key", code="key_not_found")
    key = await api_keys.get(auth.db, key_id)
    if key is None:
        raise missing
    owned_by(caller, key.user_id, missing)
    return key


async def change(
    auth: Auth,
    caller: Caller,
    key_id: str,
    *,
    name: str | None = None,
    active: bool | None = None,
    scopes: tuple[str, ...] | None = None,
    caps: Mapping[str, object] | None = None,
) -> ApiKey:
    """Its owner renames it, turns it off or on and sets its scopes; admins also set its
    caps (requests and tokens a minute, budget)."""
    key = await find(auth, caller, key_id)
    if key.revoked_at is not None and (active or scopes is not None):
        raise Conflict("a revoked key cannot be reactivated or changed", code="key_revoked")
    if caps and not caller.is_admin:
        raise Forbidden("only admins set a key's rates and budget", code="admin_required")
    updated = await auth.api_keys.update(key_id, name=name, active=active, scopes=scopes, caps=caps)
    if updated is None:
        raise NotFound("no such key", code="key_not_found")
    return updated


async def revoke(auth: Auth, caller: Caller, key_id: str) -> None:
    await find(auth, caller, key_id)
    await auth.api_keys.revoke(key_id)
