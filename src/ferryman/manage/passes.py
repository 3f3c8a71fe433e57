"""Access passes and the credits that buy them: who may buy, see, revoke and refund
which (the API's `/tokens` and `/credits`, and the console's passes page)."""

from __future__ import annotations

from ferryman.auth.services import Auth
from ferryman.errors import Forbidden, NotFound
from ferryman.manage.caller import Caller, owned_by
from ferryman.store import credits, passes
from ferryman.store.credits import Movement
from ferryman.store.passes import AccessPass


async def find(auth: Auth, caller: Caller, pass_id: str) -> AccessPass:
    """The pass, if the caller may see it; 404 alike for unknown and others' passes."""
    missing = NotFound("no such access token", code="token_not_found")
    record = await passes.get(auth.db, pass_id)
    if record is None:
        raise missing
    owned_by(caller, record.user_id, missing)
    return record


async def listing(auth: Auth, caller: Caller, *, everyone: bool = False) -> list[AccessPass]:
    if everyone and not caller.is_admin:
        raise Forbidden("only admins list others' passes", code="admin_required")
    return await passes.for_user(auth.db, None if everyone else caller.user_id)


async def buy(auth: Auth, caller: Caller, duration_hours: int) -> tuple[AccessPass, str]:
    """A pass for the caller (paid from their credits when passes have prices)."""
    return await auth.passes.purchase(caller.user_id, duration_hours)


async def revoke(auth: Auth, caller: Caller, pass_id: str) -> AccessPass:
    await find(auth, caller, pass_id)
    record = await auth.passes.revoke(pass_id)
    if record is None:
        raise NotFound("no such access token", code="token_not_found")
    return record


async def refund(auth: Auth, caller: Caller, pass_id: str) -> tuple[int, int]:
    """Refund a pass never activated (once; it is revoked too): (refunded, balance) in
    micro-units."""
    await find(auth, caller, pass_id)
    return await auth.passes.refund(pass_id)


async def balance(
    auth: Auth, caller: Caller, user_id: str | None = None, limit: int = 100
) -> tuple[str, int, list[Movement]]:
    """(whose, balance in micro-units, newest movements): the caller's, or for admins
    another user's."""
    owner = caller.user_id
    if user_id is not None and user_id != caller.user_id:
        if not caller.is_admin:
            raise Forbidden("only admins see others' credits", code="admin_required")
        owner = user_id
    total = await credits.balance(auth.db, owner)
    return owner, total, await credits.movements(auth.db, owner, limit)
