"""The console's passes page: the credit balance and its ledger, buying a pass (its
price shown; the pass itself shown once), the passes with their status, revoke and
refund; admins may list everyone's. Every action goes through `manage.passes`."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ferryman.console.pages import list_router
from ferryman.console.render import page, redirect
from ferryman.console.session import Visitor, auth_of, check_csrf, form, visitor
from ferryman.errors import BadRequest, GatewayError
from ferryman.manage import passes as manage_passes
from ferryman.manage.caller import Caller
from ferryman.store import users
from ferryman.store.credits import MICROS
from ferryman.store.passes import AccessPass

LEDGER = 20


def passes_router(path: str) -> APIRouter:
    return list_router(path + "/passes", _listing, _act, create="buy")


async def _act(request: Request, pass_id: str | None, action: str) -> Response:
    who = await visitor(request)
    if who is None:
        return redirect(request, "/login")
    auth = auth_of(request)
    caller = Caller(who.identity, "session")
    bought: tuple[AccessPass, str] | None = None
    note = None
    try:
        fields = await form(request)
        check_csrf(fields.get("csrf"), who.csrf)
        if action == "buy":
            try:
                hours = int(fields.get("duration_hours", ""))
            except ValueError:
                raise BadRequest("choose a duration", code="invalid_duration") from None
            bought = await manage_passes.buy(auth, caller, hours)
        elif pass_id is not None and action == "revoke":
            await manage_passes.revoke(auth, caller, pass_id)
        elif pass_id is not None and action == "refund":
            refunded, _ = await manage_passes.refund(auth, caller, pass_id)
            note = f"Refunded {refunded / MICROS:.2f}; the pass is revoked."
        else:
            return Response(status_code=404)
    except GatewayError as error:
        return await _listing(request, who, error=error)
    if bought is not None or note is not None:
        return await _listing(request, who, bought=bought, note=note, status=201 if bought else 200)
    return redirect(request, "/passes" + ("?all=1" if request.query_params.get("all") else ""))


async def _listing(
    request: Request,
    who: Visitor,
    *,
    error: GatewayError | None = None,
    bought: tuple[AccessPass, str] | None = None,
    note: str | None = None,
    status: int | None = None,
) -> Response:
    auth = auth_of(request)
    caller = Caller(who.identity, "session")
    everyone = caller.is_admin and request.query_params.get("all") == "1"
    records = await manage_passes.listing(auth, caller, everyone=everyone)
    _, balance, ledger = await manage_passes.balance(auth, caller, limit=LEDGER)
    owners = await users.names(auth.db, (r.user_id for r in records)) if everyone else {}
    now = auth.clock.now()
    settings = auth.settings
    offers = [(h, settings.pass_price_micros(h) / MICROS) for h in settings.access_pass_durations]
    rows = [(r, r.state(now), owners.get(r.user_id, "")) for r in records]
    return page(
        request, "passes.html", status or (error.status if error is not None else 200),
        who=who.identity, csrf=who.csrf, current="passes", rows=rows, everyone=everyone,
        balance=balance / MICROS, ledger=ledger, micros=MICROS, offers=offers,
        bought=bought, note=note, error=error,
    )  # fmt: skip
