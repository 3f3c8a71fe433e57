"""`/api/v1/keys`: client API keys, each user's own (admins: anyone's)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field, WithJsonSchema

from ferryman.api.answers import answers
from ferryman.api.deps import AuthDep, CallerDep, owned_by
from ferryman.api.schemas import AllowancePatch, IsoDateTime, KeyOut, NewKeyOut, Page
from ferryman.auth.api_keys import SCOPES
from ferryman.errors import Conflict, Forbidden, NotFound
from ferryman.store import api_keys, users

router = APIRouter(prefix="/keys", tags=["keys"])


class KeyIn(BaseModel):
    name: Annotated[str, Field(min_length=1, max_length=100)]
    scopes: list[Annotated[str, WithJsonSchema({"type": "string", "enum": list(SCOPES)})]] = Field(
        default_factory=lambda: ["proxy"], max_length=10
    )
    """`proxy` (the gateway's routes), `stats:read` (the stats API); an unknown one is
    refused with 400 `invalid_scope`."""
    expires_at: IsoDateTime | None = None
    user_id: str | None = None
    """Admins only: create the key for this user."""


class KeyPatch(AllowancePatch):
    """A key's name and state (its owner), its caps (`rpm`, `tpm`, `budget`: admins)."""

    name: Annotated[str | None, Field(min_length=1, max_length=100)] = None
    active: bool | None = None


async def _key(auth: AuthDep, caller: CallerDep, key_id: str) -> api_keys.ApiKey:
    missing = NotFound("no such key", code="key_not_found")
    key = await api_keys.get(auth.db, key_id)
    if key is None:
        raise missing
    owned_by(caller, key.user_id, missing)
    return key


@router.post(
    "",
    status_code=201,
    responses=answers(
        {
            400: "`invalid_scope`, `invalid_expiry` (in the past)",
            404: "`user_not_found` (`user_id`)",
            409: "`key_limit_reached`",
        }
    ),
)
async def create_key(body: KeyIn, caller: CallerDep, auth: AuthDep) -> NewKeyOut:
    owner = caller.user_id
    if body.user_id is not None and body.user_id != caller.user_id:
        if not caller.is_admin:
            raise Forbidden("only admins create keys for others", code="admin_required")
        if await users.get(auth.db, body.user_id) is None:
            raise NotFound("no such user", code="user_not_found")
        owner = body.user_id
    expires: datetime | None = body.expires_at
    key, raw = await auth.api_keys.create(owner, body.name, tuple(body.scopes), expires)
    return NewKeyOut(**KeyOut.of(key).model_dump(), key=raw)


@router.get("")
async def list_keys(
    caller: CallerDep,
    auth: AuthDep,
    user_id: Annotated[str | None, Query(description="admins: another user's keys")] = None,
    all_users: Annotated[bool, Query(alias="all", description="admins: every key")] = False,
) -> Page[KeyOut]:
    owner: str | None = caller.user_id
    if user_id is not None or all_users:
        if not caller.is_admin:
            raise Forbidden("only admins list others' keys", code="admin_required")
        owner = None if all_users else user_id
    keys = await api_keys.for_user(auth.db, owner)
    return Page[KeyOut](items=[KeyOut.of(k) for k in keys], total=len(keys))


@router.get("/{key_id}")
async def get_key(key_id: str, caller: CallerDep, auth: AuthDep) -> KeyOut:
    return KeyOut.of(await _key(auth, caller, key_id))


@router.patch("/{key_id}", responses=answers({409: "`key_revoked`"}))
async def update_key(key_id: str, body: KeyPatch, caller: CallerDep, auth: AuthDep) -> KeyOut:
    key = await _key(auth, caller, key_id)
    if key.revoked_at is not None and body.active:
        raise Conflict("a revoked key cannot be reactivated", code="key_revoked")
    caps = body.caps()
    if caps and not caller.is_admin:
        raise Forbidden("only admins set a key's rates and budget", code="admin_required")
    updated = await auth.api_keys.update(key_id, name=body.name, active=body.active, caps=caps)
    if updated is None:
        raise NotFound("no such key", code="key_not_found")
    return KeyOut.of(updated)


@router.delete("/{key_id}", status_code=204)
async def revoke_key(key_id: str, caller: CallerDep, auth: AuthDep) -> None:
    await _key(auth, caller, key_id)
    await auth.api_keys.revoke(key_id)
