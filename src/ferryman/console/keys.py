"""The console's client keys page: search, sort and page on the server; create (the key
shown once), rename, disable or enable, revoke. Every action goes through
`manage.keys`, as the API's do."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ferryman.auth.api_keys import SCOPES
from ferryman.console import key_detail
from ferryman.console.pages import list_router
from ferryman.console.render import page, redirect
from ferryman.console.session import Visitor, auth_of, check_csrf, form, visitor
from ferryman.errors import BadRequest, GatewayError
from ferryman.manage import keys
from ferryman.manage.caller import Caller
from ferryman.store import users
from ferryman.store.api_keys import ApiKey

PAGE_SIZE = 50
SORTS = ("created", "name", "last_used")


def keys_router(path: str) -> APIRouter:
    router = list_router(path + "/keys", _listing, _act, create="create")
    router.add_api_route("/{key_id}", key_detail.show, methods=["GET"])
    return router


async def _act(request: Request, key_id: str | None, action: str) -> Response:
    who = await visitor(request)
    if who is None:
        return redirect(request, "/login")
    if key_id is not None and action in ("scopes", "limits"):
        return await key_detail.act(request, who, key_id, action)
    auth = auth_of(request)
    caller = Caller(who.identity, "session")
    created: tuple[ApiKey, str] | None = None
    fields: dict[str, str] = {}
    try:
        fields = await form(request)
        check_csrf(fields.get("csrf"), who.csrf)
        name = fields.get("name", "").strip()
        if action == "create":
            scopes = tuple(s for s in SCOPES if fields.get("scope_" + s)) or ("proxy",)
            if not name or len(name) > 100:
                raise BadRequest("a key needs a name (at most 100 characters)", code="invalid_name")
            created = await keys.create(auth, caller, name, scopes, _expiry(fields))
        elif key_id is not None and action == "rename":
            if not name or len(name) > 100:
                raise BadRequest("a key needs a name (at most 100 characters)", code="invalid_name")
            await keys.change(auth, caller, key_id, name=name)
        elif key_id is not None and action in ("disable", "enable"):
            await keys.change(auth, caller, key_id, active=action == "enable")
        elif key_id is not None and action == "revoke":
            await keys.revoke(auth, caller, key_id)
        else:
            return Response(status_code=404)
    except GatewayError as error:
        if key_id is not None and fields.get("back") == "key":
            return await key_detail.page_of(request, who, key_id, error=error)
        return await _listing(request, who, error=error)
    if created is not None:
        return await _listing(request, who, created=created, status=201)
    if key_id is not None and fields.get("back") == "key":
        return redirect(request, f"/keys/{key_id}?saved={action}")
    back = request.headers.get("referer", "")
    return redirect(request, "/keys" + (back[back.index("?") :] if "?" in back else ""))


def _expiry(fields: dict[str, str]) -> datetime | None:
    text = fields.get("expires", "").strip()
    if not text:
        return None
    try:
        return datetime.fromisoformat(text).replace(tzinfo=UTC)
    except ValueError:
        raise BadRequest("the expiry is not a date", code="invalid_expiry") from None


async def _listing(
    request: Request,
    who: Visitor,
    *,
    error: GatewayError | None = None,
    created: tuple[ApiKey, str] | None = None,
    status: int | None = None,
) -> Response:
    auth = auth_of(request)
    caller = Caller(who.identity, "session")
    args = request.query_params
    sort = args.get("sort", "created") if args.get("sort") in SORTS else "created"
    descending = args.get("order", "desc") != "asc"
    every = caller.is_admin and args.get("all") == "1"
    try:
        number = max(1, int(args.get("page", "1")))
    except ValueError:
        number = 1
    text = args.get("q", "")[:100]
    query = keys.KeyQuery(
        all_users=every, text=text, sort=sort, descending=descending,
        offset=(number - 1) * PAGE_SIZE, limit=PAGE_SIZE,
    )  # fmt: skip
    found, total = await keys.page(auth, caller, query)
    owners = await users.names(auth.db, (k.user_id for k in found)) if every else {}
    pages = max(1, math.ceil(total / PAGE_SIZE))

    def link(**change: str) -> str:
        current = {"q": text, "sort": sort, "order": "desc" if descending else "asc",
                   "page": str(number), "all": "1" if every else ""}  # fmt: skip
        current.update(change)
        return "?" + urlencode({k: v for k, v in current.items() if v})

    now = datetime.now(UTC)
    rows = [(k, keys.state(k, now), owners.get(k.user_id, "")) for k in found]
    code = status or (error.status if error is not None else 200)
    return page(
        request, "keys.html", code, who=who.identity, csrf=who.csrf, current="keys",
        rows=rows, total=total, number=number, pages=pages, text=text, sort=sort,
        descending=descending, every=every, link=link, error=error, created=created,
        scopes=SCOPES,
    )  # fmt: skip
