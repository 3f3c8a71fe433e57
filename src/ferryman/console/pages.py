"""The shape every console list page shares: GET shows the list, POST to the page makes
a new object, POST to `/{id}/{action}` acts on one."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ferryman.console.render import redirect
from ferryman.console.session import Visitor, visitor

Listing = Callable[[Request, Visitor], Awaitable[Response]]
Act = Callable[[Request, str | None, str], Awaitable[Response]]


def list_router(prefix: str, listing: Listing, act: Act, create: str | None) -> APIRouter:
    """`create`: the action a POST to the page itself is (None: there is none)."""
    router = APIRouter(prefix=prefix, include_in_schema=False)

    @router.get("")
    async def show(request: Request) -> Response:
        who = await visitor(request)
        if who is None:
            return redirect(request, "/login")
        return await listing(request, who)

    if create is not None:
        made = create

        @router.post("")
        async def new(request: Request) -> Response:
            return await act(request, None, made)

    @router.post("/{object_id}/{action}")
    async def one(request: Request, object_id: str, action: str) -> Response:
        return await act(request, object_id, action)

    return router
