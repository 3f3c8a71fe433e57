"""`/api/v1/upstream-keys`: provider keys in the encrypted pool.

Admins manage the shared pool of every upstream; a user manages the keys they added for
their own traffic (at most `max_upstream_keys_per_user`). The key itself is accepted
once, validated with the provider, sealed, and never returned: every view is masked.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, SecretStr, Strict, WithJsonSchema

from ferryman.api.answers import answers
from ferryman.api.deps import CallerDep
from ferryman.api.schemas import WHOLE
from ferryman.errors import ServiceUnavailable
from ferryman.manage import upstream_keys
from ferryman.upstreams.service import MAX_LENGTH, MIN_LENGTH, KeyView, UpstreamKeys

router = APIRouter(prefix="/upstream-keys", tags=["upstream keys"])


def get_service(request: Request) -> UpstreamKeys:
    service: UpstreamKeys | None = getattr(request.app.state, "upstream_keys", None)
    if service is None:
        raise ServiceUnavailable("the gateway is starting", code="starting")
    return service


#: What `check_secret` takes: 8 to 512 printable ASCII characters (spaces around trimmed).
_SECRET_SCHEMA = {
    "type": "string",
    "format": "password",
    "writeOnly": True,
    "pattern": rf"^\s*[!-~]{{{MIN_LENGTH},{MAX_LENGTH}}}\s*$",
}


class UpstreamKeyIn(BaseModel):
    # Strict: `"validate": "no"` is a mistake to point out, not a truthy string.
    model_config = ConfigDict(extra="forbid", strict=True)

    upstream: Annotated[str, Field(min_length=1, max_length=64)]
    name: Annotated[str, Field(min_length=1, max_length=100)]
    key: Annotated[SecretStr, WithJsonSchema(_SECRET_SCHEMA)]
    """The provider key; validated with the provider, then sealed and never shown again."""
    shared: bool | None = None
    """Admins: into the upstream's shared pool (the default for admins); users may only
    add their own keys."""
    weight: Annotated[int, Strict(), Field(ge=1, le=1000), WHOLE] = 1
    validate_key: bool = Field(default=True, alias="validate")
    """Ask the provider whether the key works before storing it."""


class UpstreamKeyPatch(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    name: Annotated[str | None, Field(min_length=1, max_length=100)] = None
    enabled: bool | None = None
    weight: Annotated[int, Strict(), Field(ge=1, le=1000), WHOLE] | None = None
    reset_health: bool = False
    """Mark the key healthy again (after fixing what made it invalid or out of credit)."""


class KeyUsage(BaseModel):
    requests: int
    failures: int
    provider_usage: float | None
    limit: float | None
    limit_remaining: float | None
    credits_total: float | None
    credits_used: float | None
    synced_at: datetime | None


class UpstreamKeyOut(BaseModel):
    id: str
    upstream: str
    owner_id: str | None
    shared: bool
    name: str
    masked: str
    weight: int
    enabled: bool
    state: str
    cooling_until: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    last_checked_at: datetime | None
    validated_at: datetime | None
    last_used_at: datetime | None
    usage: KeyUsage
    master_key_id: str
    created_at: datetime

    @classmethod
    def of(cls, view: KeyView) -> UpstreamKeyOut:
        row = view.row
        return cls(
            id=row.id,
            upstream=row.upstream,
            owner_id=row.owner_id,
            shared=row.owner_id is None,
            name=row.name,
            masked=row.masked,
            weight=row.weight,
            enabled=row.enabled,
            state=view.state,
            cooling_until=view.cooling_until,
            last_error=view.last_error,
            last_error_at=row.last_error_at,
            last_checked_at=row.last_checked_at,
            validated_at=row.validated_at,
            last_used_at=row.last_used_at,
            usage=KeyUsage(
                requests=row.request_count,
                failures=row.failure_count,
                provider_usage=row.usage,
                limit=row.credit_limit,
                limit_remaining=row.limit_remaining,
                credits_total=row.credits_total,
                credits_used=row.credits_used,
                synced_at=row.synced_at,
            ),
            master_key_id=row.master_key_id,
            created_at=row.created_at,
        )


class UpstreamKeyList(BaseModel):
    items: list[UpstreamKeyOut]
    total: int


class CheckOut(BaseModel):
    key: UpstreamKeyOut
    result: str
    message: str


async def _out(service: UpstreamKeys, key_id: str) -> UpstreamKeyOut:
    await service.keyring.flush()
    return UpstreamKeyOut.of(service.view(await service.get(key_id)))


@router.post(
    "",
    status_code=201,
    responses=answers(
        {
            400: "`invalid_upstream_key` (the provider refused it), `unknown_upstream`",
            409: "`upstream_key_limit_reached`",
            502: "`validation_unavailable`: the provider could not be asked",
        }
    ),
)
async def add_key(body: UpstreamKeyIn, caller: CallerDep, request: Request) -> UpstreamKeyOut:
    service = get_service(request)
    row = await upstream_keys.add(
        service,
        caller,
        upstream=body.upstream,
        name=body.name,
        secret=body.key.get_secret_value(),
        shared=body.shared,
        weight=body.weight,
        validate=body.validate_key,
    )
    return UpstreamKeyOut.of(service.view(row))


@router.get("")
async def list_keys(caller: CallerDep, request: Request) -> UpstreamKeyList:
    """Admins see every key; a user sees the keys they added."""
    service = get_service(request)
    views = await upstream_keys.listing(service, caller)
    return UpstreamKeyList(items=[UpstreamKeyOut.of(v) for v in views], total=len(views))


@router.get("/{key_id}")
async def get_key(key_id: str, caller: CallerDep, request: Request) -> UpstreamKeyOut:
    service = get_service(request)
    await upstream_keys.find(service, caller, key_id)
    return await _out(service, key_id)


@router.patch("/{key_id}")
async def update_key(
    key_id: str, body: UpstreamKeyPatch, caller: CallerDep, request: Request
) -> UpstreamKeyOut:
    service = get_service(request)
    values: dict[str, Any] = {
        name: value
        for name, value in (("name", body.name), ("enabled", body.enabled), ("weight", body.weight))
        if value is not None
    }
    if body.reset_health:
        values["reset_health"] = True
    await upstream_keys.change(service, caller, key_id, **values)
    return await _out(service, key_id)


@router.delete("/{key_id}", status_code=204)
async def delete_key(key_id: str, caller: CallerDep, request: Request) -> None:
    await upstream_keys.delete(get_service(request), caller, key_id)


@router.post(
    "/{key_id}/check",
    responses=answers(
        {
            400: "`unknown_upstream`, `no_probe`",
            502: "`validation_unavailable`: the provider could not be asked",
        }
    ),
)
async def check_key(key_id: str, caller: CallerDep, request: Request) -> CheckOut:
    """Probe the key with its provider now; a success restores it to the pool."""
    service = get_service(request)
    probe = await upstream_keys.check(service, caller, key_id)
    return CheckOut(
        key=await _out(service, key_id), result=probe.state.value, message=probe.message
    )
