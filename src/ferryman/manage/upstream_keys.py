"""Upstream (provider) keys: admins manage every shared pool, a user the keys they added
for their own traffic (the API's `/upstream-keys` and the console's page)."""

from __future__ import annotations

from typing import Any

from ferryman.errors import Forbidden, NotFound
from ferryman.manage.caller import Caller, owned_by
from ferryman.store.upstream_keys import UpstreamKeyRow
from ferryman.upstreams.providers import Probe
from ferryman.upstreams.service import KeyView, UpstreamKeys


async def add(
    service: UpstreamKeys,
    caller: Caller,
    *,
    upstream: str,
    name: str,
    secret: str,
    shared: bool | None = None,
    weight: int = 1,
    validate: bool = True,
) -> UpstreamKeyRow:
    """Add a key (validated with the provider unless told not to), sealed at once."""
    shared = caller.is_admin if shared is None else shared
    if shared and not caller.is_admin:
        raise Forbidden("only admins add keys to the shared pool", code="admin_required")
    if not shared and not caller.is_admin and service.per_user_limit == 0:
        raise Forbidden("this gateway does not take users' own keys", code="admin_required")
    return await service.create(
        upstream=upstream,
        name=name,
        secret=secret,
        owner_id=None if shared else caller.user_id,
        weight=weight,
        validate=validate,
    )


async def listing(service: UpstreamKeys, caller: Caller) -> list[KeyView]:
    """Admins see every key; a user sees the keys they added."""
    return await service.listing(owner_id=caller.user_id, everyone=caller.is_admin)


async def find(service: UpstreamKeys, caller: Caller, key_id: str) -> UpstreamKeyRow:
    """The key, if the caller may manage it; 404 alike for unknown and others' keys."""
    missing = NotFound("no such upstream key", code="upstream_key_not_found")
    try:
        row = await service.get(key_id)
    except NotFound:
        raise missing from None
    if row.owner_id is None:
        if not caller.is_admin:
            raise missing
    else:
        owned_by(caller, row.owner_id, missing)
    return row


async def change(service: UpstreamKeys, caller: Caller, key_id: str, **values: Any) -> None:
    """Rename, enable or disable, reweigh, or (`reset_health`) mark healthy again."""
    await find(service, caller, key_id)
    if values:
        await service.change(key_id, **values)


async def delete(service: UpstreamKeys, caller: Caller, key_id: str) -> None:
    await find(service, caller, key_id)
    await service.delete(key_id)


async def check(service: UpstreamKeys, caller: Caller, key_id: str) -> Probe:
    """Probe the key with its provider now; a success restores it to the pool."""
    await find(service, caller, key_id)
    return await service.check(key_id)
