"""`/api/v1/keys`: client API keys, each user's own (admins: anyone's)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field, WithJsonSchema

from ferryman.api.answers import answers
from ferryman.api.deps import AuthDep, CallerDep
from ferryman.api.schemas import AllowancePatch, IsoDateTime, KeyOut, NewKeyOut, Page
from ferryman.auth.api_keys import SCOPES
from ferryman.manage import keys

router = APIRouter(prefix="/keys", tags=["keys"])


Scope = Annotated[str, WithJsonSchema({"type": "string", "enum": list(SCOPES)})]


class KeyIn(BaseModel):
    name: Annotated[str, Field(min_length=1, max_length=100)]
    scopes: list[Scope] = Field(default_factory=lambda: ["proxy"], max_length=10)
    """`proxy` (the gateway's routes), `stats:read` (the stats API); an unknown one is
    refused with 400 `invalid_scope`."""
    expires_at: IsoDateTime | None = None
    user_id: str | None = None
    """Admins only: create the key for this user."""


class KeyPatch(AllowancePatch):
    """A key's name, state and scopes (its owner), its caps (`rpm`, `tpm`, `budget`:
    admins)."""

    name: Annotated[str | None, Field(min_length=1, max_length=100)] = None
    active: bool | None = None
    scopes: Annotated[list[Scope] | None, Field(min_length=1, max_length=10)] = None
    """Replaces the key's scopes (at once, on every instance; null or absent: unchanged);
    a revoked key's cannot change (409 `key_revoked`)."""


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
    expires: datetime | None = body.expires_at
    key, raw = await keys.create(auth, caller, body.name, tuple(body.scopes), expires, body.user_id)
    return NewKeyOut(**KeyOut.of(key).model_dump(), key=raw)


@router.get("")
async def list_keys(
    caller: CallerDep,
    auth: AuthDep,
    user_id: Annotated[str | None, Query(description="admins: another user's keys")] = None,
    all_users: Annotated[bool, Query(alias="all", description="admins: every key")] = False,
    q: Annotated[str, Query(max_length=100, description="in the name or prefix")] = "",
    sort: Annotated[Literal["created", "name", "last_used"], Query()] = "created",
    order: Annotated[Literal["asc", "desc"], Query()] = "desc",
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    limit: Annotated[int | None, Query(ge=1, le=1000, description="unset: every key")] = None,
) -> Page[KeyOut]:
    query = keys.KeyQuery(
        user_id=user_id,
        all_users=all_users,
        text=q,
        sort=sort,
        descending=order == "desc",
        offset=offset,
        limit=limit,
    )
    found, total = await keys.page(auth, caller, query)
    return Page[KeyOut](items=[KeyOut.of(k) for k in found], total=total)


@router.get("/{key_id}")
async def get_key(key_id: str, caller: CallerDep, auth: AuthDep) -> KeyOut:
    return KeyOut.of(await keys.find(auth, caller, key_id))


@router.patch(
    "/{key_id}",
    responses=answers(
        {
            400: "`invalid_scope`",
            403: "`admin_required` (caps)",
            409: "`key_revoked`",
        }
    ),
)
async def update_key(key_id: str, body: KeyPatch, caller: CallerDep, auth: AuthDep) -> KeyOut:
    updated = await keys.change(
        auth,
        caller,
        key_id,
        name=body.name,
        active=body.active,
        scopes=tuple(body.scopes) if body.scopes is not None else None,
        caps=body.caps(),
    )
    return KeyOut.of(updated)


@router.delete("/{key_id}", status_code=204)
async def revoke_key(key_id: str, caller: CallerDep, auth: AuthDep) -> None:
    await keys.revoke(auth, caller, key_id)
