"""The console's upstream keys page: add a provider key (validated with the provider,
sealed, never shown again), each key's health with its reason, cooldown and next
probe, its synced usage and credit; test now, disable or enable, mark healthy, delete.
Admins manage every shared pool; a user the keys they added. Every action goes through
`manage.upstream_keys`, as the API's do."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ferryman.console.pages import list_router
from ferryman.console.render import page, redirect
from ferryman.console.session import Visitor, check_csrf, form, visitor
from ferryman.errors import BadRequest, GatewayError, ServiceUnavailable
from ferryman.manage import upstream_keys
from ferryman.manage.caller import Caller
from ferryman.upstreams.service import UpstreamKeys


def upstream_keys_router(path: str) -> APIRouter:
    return list_router(path + "/upstream-keys", _listing, _act, create="add")


def _service(request: Request) -> UpstreamKeys:
    service: UpstreamKeys | None = getattr(request.app.state, "upstream_keys", None)
    if service is None:
        raise ServiceUnavailable("the gateway is starting", code="starting")
    return service


async def _act(request: Request, key_id: str | None, action: str) -> Response:
    who = await visitor(request)
    if who is None:
        return redirect(request, "/login")
    caller = Caller(who.identity, "session")
    note = None
    try:
        service = _service(request)
        fields = await form(request)
        check_csrf(fields.get("csrf"), who.csrf)
        if action == "add":
            name, secret = fields.get("name", "").strip(), fields.get("key", "").strip()
            if not name or len(name) > 100 or not secret:
                raise BadRequest("a key needs a name and the key itself", code="invalid_body")
            shared = fields.get("shared") == "1" if caller.is_admin else False
            await upstream_keys.add(
                service, caller, upstream=fields.get("upstream", ""), name=name,
                secret=secret, shared=shared,
            )  # fmt: skip
            note = f"Key “{name}” added."
        elif key_id is not None and action == "check":
            probe = await upstream_keys.check(service, caller, key_id)
            note = f"Checked: {probe.state.value.replace('_', ' ')}. {probe.message}".strip()
        elif key_id is not None and action in ("disable", "enable"):
            await upstream_keys.change(service, caller, key_id, enabled=action == "enable")
        elif key_id is not None and action == "reset":
            await upstream_keys.change(service, caller, key_id, reset_health=True)
        elif key_id is not None and action == "delete":
            await upstream_keys.delete(service, caller, key_id)
        else:
            return Response(status_code=404)
    except GatewayError as error:
        return await _listing(request, who, error=error)
    if note is not None:
        return await _listing(request, who, note=note)
    return redirect(request, "/upstream-keys")


async def _listing(
    request: Request, who: Visitor, *, error: GatewayError | None = None, note: str | None = None
) -> Response:
    caller = Caller(who.identity, "session")
    service = _service(request)
    views = await upstream_keys.listing(service, caller)
    now = datetime.now(UTC)
    rows = []
    for view in views:
        pool = service.keyring.pools.get(view.row.upstream)
        interval = pool.spec.probe_interval if pool is not None else 0
        checked = view.row.last_checked_at
        probe = checked + timedelta(seconds=interval) if checked and interval else None
        rows.append((view, probe if probe is None or probe > now else now))
    return page(
        request, "upstream_keys.html", error.status if error is not None else 200,
        who=who.identity, csrf=who.csrf, current="upstream-keys", rows=rows,
        upstreams=sorted(service.keyring.pools), own_allowed=service.per_user_limit > 0,
        error=error, note=note,
    )  # fmt: skip
